"""Streaming physics checks for a tracks file (``hpcgen verify``).

Verify is a third party: what it judges with comes from ``independent.py`` (the bending constant
from scipy.constants, the equations of motion from the Lorentz force, the field from the
parameters or the parsed map grid, scipy's DOP853), never from the generator's constants.py,
stepper or kernels. Where a check runs the generator's own kernel (closed form, bending power,
reproduce, reverse) it judges that kernel against the independent constant, or only its
determinism.

Every row (streamed, bounded memory): the seed workflow's checks (finite, P > 0, |x_f| < 10 m,
|tx_f| < 1, opposite bending), |q/p| P 1000 = 1, the turn of the unit direction against q/p and
the field (exact for the Gaussian and uniform models; for a map along a cubic through the stored
ends, on tracks the field turns by at most TURN_GATE), a bound from the field, the status counts,
the OUT_OF_ACCEPTANCE flag exactly on the rows whose stored Y lies outside the acceptance box,
and no map-only flag without a map. The unit direction u of a track turns at a rate C |q/p| |B|
per unit path length, so |u_x(z1) - u_x(z0)| <= C |q/p| max(N0, N1) * integral |B| dz
(N = sqrt(1+tx^2+ty^2), ds = N dz; N is monotonic along a path through a one-signed dipole).

Why ``|tx_f| < 1`` is applied only to tracks the field cannot bend that far: with the correct
constant a 2 GeV track through the LHCb dipole gains ~0.58 in u_x between z = 3 and 9 m, so about
1 % of the seed's own default sample (p >= 2 GeV, |tx| <= 0.3) legitimately ends with |tx_f| > 1.
The seed's bound held only under its 1000x unit error. ``|x_f| < 10 m`` is exempt the same way
for tracks the field could carry that far (per-track z_start and dz up to 10 m make it possible).
The seed's bounds hold verbatim on the rows a trainer gets: ``--only-ok`` with an acceptance cut.

A sample of SAMPLE_ROWS rows spread over the whole file (the rows with the smallest hashed row
index: deterministic, independent of chunking) is propagated again by the independent reference
(DOP853) and must match the stored Y within the file's accuracy limit; a 1 % corruption escapes
a sample of 500 with probability 0.99^500 < 0.007. Another FLAG_ROWS flagged rows and the sample
check the LEFT_VOLUME and SLOPE flags against the reference path.

Probe tracks through the generator's own (CPU) kernel, judged with the independent constant:

- closed form: in a uniform field B = (0, By, 0) the direction turns about y at a constant rate per
  path length, so u_x is linear in z for any ty (helix_uniform_by); probes must match it within
  the integrator's accuracy limit;
- bending power: a 10 GeV track along the axis through the whole field changes u_x by
  -C (q/p) * integral By dz on the axis (about 0.133 for the LHCb dipole);
- reproduce and reverse (the sample's rows): the kernel gives the stored Y again (determinism,
  not correctness), and propagated back from z_end reaches X again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from hpcgen.generators.base import CheckResult, Verifier
from hpcgen.generators.tracks.fields import (
    ABORTED,
    LEFT_VOLUME,
    MASKED_CELL,
    OUT_OF_ACCEPTANCE,
    SLOPE,
    STATUS_NAMES,
    Field,
    UniformField,
)
from hpcgen.generators.tracks.independent import (
    ATOL_MM,
    BENDING_CONSTANT,
    FLAG_ATOL_MM,
    FLAG_RTOL,
    RTOL,
    SLOPE_CAP,
    SLOPE_LEVER_MM,
    Reference,
    ReferenceField,
    Sample,
    propagate,
    unit_x_y,
)

X_MAX = 10_000.0  # mm: |x_f| beyond this left any LHCb detector long ago
TX_MAX = 1.0
#: rows re-propagated by the independent reference, spread over the file: a 1 % corruption
#: escapes with probability 0.99^500 < 0.007 (459 rows would give 0.01)
SAMPLE_ROWS = 500
#: rows with a LEFT_VOLUME or SLOPE flag whose flags are checked against the reference path
FLAG_ROWS = 100
SAMPLE_SEED = 20260119
#: the map's turn check judges tracks the field can turn by at most this (rad: C |q/p| N
#: integral |B| dz): there the cubic through the stored ends is within ~15 % of the true
#: turn (measured on five configurations down to 0.5 GeV), and the check allows 50 %
TURN_GATE = 0.1
TURN_REL = 0.5
TURN_MIN = 1e-3  # rad: smaller predicted turns are not judged on a map
BEND_P_MEV = 10_000.0  # the bending-power probe: 10 GeV
BEND_REL = 0.05  # its limit: the map's off-axis field changes the kick by ~1 %; 1000x is obvious

#: (state (n, 5), z0 (n,), z1 (n,)) -> (Y (n, 4), status (n,), n_steps (n,)), host arrays
PropagateFn = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[Any, Any, Any]]


def outside_acceptance(Y: np.ndarray, box: tuple[float, ...]) -> np.ndarray:
    """Bool (n,): rows of Y (x, y, tx, ty at z_end) with |Y[:, i]| >= box[i] for some i (mm, mm,
    1, 1). NaN rows (stopped tracks) are not outside: they carry their own flag."""
    Y = np.asarray(Y)
    with np.errstate(invalid="ignore"):
        return (np.abs(Y[:, :4]) >= np.asarray(box, dtype=np.float64)).any(axis=1)


def helix_uniform_by(state: np.ndarray, dz: np.ndarray, by: float) -> np.ndarray:
    """Exact (x, y, tx, ty) after dz (mm, either sign) in a uniform field (0, by, 0) (T).

    du/ds = kappa u x B with kappa = C q/p: u_y is constant and (u_x, u_z) rotates at the rate
    kappa by per path length s, which makes u_x = u_x0 - kappa by dz linear in z; then
    x = x0 + (u_z - u_z0) / (kappa by) and y = y0 + u_y s with s = (phi0 - phi) / (kappa by),
    phi = atan2(u_x, u_z). Valid while the track does not turn past u_z = 0 (|u_x| < rho)."""
    x0, y0, tx0, ty0, qop = (state[:, i] for i in range(5))
    n0 = np.sqrt(1 + tx0**2 + ty0**2)
    ux0, uy, uz0 = tx0 / n0, ty0 / n0, 1 / n0
    k = BENDING_CONSTANT * qop * by
    ux = ux0 - k * dz
    uz = np.sqrt(1 - uy**2 - ux**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        small = np.abs(k) < 1e-15
        x = np.where(small, x0 + tx0 * dz, x0 + (uz - uz0) / np.where(small, 1, k))
        s = np.where(
            small,
            n0 * dz,
            (np.arctan2(ux0, uz0) - np.arctan2(ux, uz)) / np.where(small, 1, k),
        )
    return np.stack([x, y0 + uy * s, ux / uz, uy / uz], axis=1)


class TracksVerifier(Verifier):
    """Row checks streamed over the file, probe-track checks at the end (module docstring)."""

    def __init__(
        self,
        field: Field,
        propagate: PropagateFn | None = None,
        make_uniform: Callable[[UniformField], PropagateFn] | None = None,
        accuracy_mm: float = 0.01,
        field_accuracy_mm: float | None = None,
        dz_values: tuple[float, ...] = (6000.0,),
        float_dtype: str = "float64",
        acceptance: tuple[float, ...] = (),
        reference: ReferenceField | None = None,
        max_slope: float = 10.0,
        longest_step_mm: float = 1000.0,
        sample_rows: int = SAMPLE_ROWS,
        flag_rows: int = FLAG_ROWS,
        rel_tolerance: float = 0.0,
    ) -> None:
        """``reference``: the independent field (none: the independent checks are skipped);
        ``max_slope`` and ``longest_step_mm``: the file's slope stop and its longest step (what
        a flag may legitimately miss between two field evaluations); ``rel_tolerance``: the
        adaptive integrator's relative tolerance on slope changes (0 for a fixed step), which
        widens the limits of strongly turning tracks (``limits``)."""
        self.field = field
        self.propagate = propagate
        self.make_uniform = make_uniform
        self.accuracy_mm = accuracy_mm
        self.field_accuracy_mm = field_accuracy_mm if field_accuracy_mm is not None else accuracy_mm
        self.dz_values = dz_values
        self.acceptance = acceptance
        self.acceptance_mismatch = 0
        self.eps = float(np.finfo(np.dtype(float_dtype)).eps)
        self.over_bound = 0
        self.exempt = 0
        self.x_exempt = 0
        self.worst_ratio = 0.0
        self.n = 0
        self.nonfinite = 0
        self.inconsistent = 0
        self.p_nonpos = 0
        self.x_out = 0
        self.tx_out = 0
        self.max_abs_x = 0.0
        self.max_abs_tx = 0.0
        self.bend_sum = {1: 0.0, -1: 0.0}
        self.bend_n = {1: 0, -1: 0}
        self.flag_counts = {bit: 0 for bit in STATUS_NAMES}
        self.n_ok = 0
        self.has_status = True
        self.steps_sum = 0
        self.steps_max = 0
        self.reference = reference
        self.rel_tolerance = rel_tolerance
        self.max_slope = max_slope
        self.longest_step_mm = longest_step_mm
        self.sample = Sample(sample_rows, SAMPLE_SEED)
        self.flagged = Sample(flag_rows, SAMPLE_SEED + 1)
        self.qop_p_bad = 0
        self.turn_bad = 0
        self.turn_judged = 0
        self.turn_worst = 0.0
        self.map_flags_without_map = 0

    def update(self, data: Mapping[str, np.ndarray], start: int) -> None:
        X, Y, P, Z = (np.asarray(data[k], dtype=np.float64) for k in ("X", "Y", "P", "Z"))
        n = len(P)
        self.n += n
        if "status" in data:
            status = np.asarray(data["status"]).astype(np.uint8)
            steps = np.asarray(data["n_steps"]).astype(np.int64)
            self.steps_sum += int(steps.sum())
            self.steps_max = max(self.steps_max, int(steps.max())) if n else self.steps_max
        else:  # a file written before the status dataset existed
            self.has_status = False
            status = np.zeros(n, np.uint8)
        for bit in self.flag_counts:
            self.flag_counts[bit] += int(((status & bit) != 0).sum())
        flagged_out = (status & OUT_OF_ACCEPTANCE) != 0
        if self.acceptance:  # the flag is set exactly on the stored Y outside the box
            self.acceptance_mismatch += int(
                (flagged_out != outside_acceptance(Y, self.acceptance)).sum()
            )
        else:
            self.acceptance_mismatch += int(flagged_out.sum())
        self.n_ok += int((status == 0).sum())
        aborted = (status & ABORTED) != 0
        y_finite = np.isfinite(Y).all(1)
        in_finite = np.isfinite(X).all(1) & np.isfinite(P) & np.isfinite(Z).all(1)
        self.nonfinite += int((~in_finite | (~aborted & ~y_finite)).sum())
        self.inconsistent += int((aborted & ~np.isnan(Y).all(1)).sum())
        finite = in_finite & y_finite & ~aborted
        self.p_nonpos += int((P[finite] <= 0).sum())
        Xf, Yf, Zf = X[finite], Y[finite], Z[finite]
        n0 = np.sqrt(1 + Xf[:, 2] ** 2 + Xf[:, 3] ** 2)
        n1 = np.sqrt(1 + Yf[:, 2] ** 2 + Yf[:, 3] ** 2)
        turn = np.abs(Yf[:, 2] / n1 - Xf[:, 2] / n0)
        bound = (
            BENDING_CONSTANT
            * np.abs(Xf[:, 4])
            * np.maximum(n0, n1)
            * self.field.abs_integral(Zf[:, 0], Zf[:, 1])
        )
        # allowance: the integrator's slope accuracy (a track that hardly meets the field can
        # exceed its tiny bound by that much: bs32 at 1 um per step turns 1e-7 too far)
        self.over_bound += int((turn > 1.001 * bound + self.slope_limit).sum())
        if turn.size:
            self.worst_ratio = max(self.worst_ratio, float((turn / (bound + 1e-300)).max()))
        # tracks the field could turn past |u_x| = 1/sqrt(2) (|tx| = 1 when ty = 0) are exempt
        can_reach = np.abs(Xf[:, 2] / n0) + bound >= 1 / np.sqrt(2)
        self.exempt += int(can_reach.sum())
        ax, atx = np.abs(Yf[:, 0]), np.abs(Yf[:, 2])
        # |x_f| < X_MAX likewise only where the field cannot carry the track that far: every
        # component of u moves by at most `bound`, so |tx| <= a / sqrt(1 - a^2 - b^2) on the way
        # (a, b: |u_x0|, |u_y0| + bound) and |x_f| <= |x0| + |dz| max|tx|. Per-track z_start and
        # dz up to 10 m let a 2 GeV track bent outward pass 10 m legitimately.
        a = np.abs(Xf[:, 2] / n0) + bound
        b = np.abs(Xf[:, 3] / n0) + bound
        room = 1.0 - a * a - b * b
        with np.errstate(divide="ignore", invalid="ignore"):
            reach = np.abs(Xf[:, 0]) + np.abs(Zf[:, 1] - Zf[:, 0]) * a / np.sqrt(room)
        far = (room <= 0) | (reach >= X_MAX)
        self.x_exempt += int(far.sum())
        self.x_out += int((ax[~far] >= X_MAX).sum())
        self.tx_out += int((atx[~can_reach] >= TX_MAX).sum())
        if ax.size:
            self.max_abs_x = max(self.max_abs_x, float(ax.max()))
            self.max_abs_tx = max(self.max_abs_tx, float(atx.max()))
        bend = Yf[:, 0] - (Xf[:, 0] + Xf[:, 2] * Xf[:, 5])
        for q in (1, -1):
            sel = np.sign(Xf[:, 4]) == q
            self.bend_sum[q] += float(bend[sel].sum())
            self.bend_n[q] += int(sel.sum())
        # q/p and P are two stores of one momentum: |q/p| P 1000 = 1 to the dtype's rounding
        pos = in_finite & (P > 0)
        with np.errstate(over="ignore"):
            prod = np.abs(X[pos, 4]) * P[pos] * 1000.0
        self.qop_p_bad += int((np.abs(prod - 1.0) > 8 * self.eps).sum())
        index = start + np.arange(n)
        rows = {"X": X, "Y": Y, "Z": Z, "status": status}
        # rows whose stored Y is a full propagation (the acceptance flag is set afterwards)
        plain = in_finite & y_finite & ((status & ~np.uint8(OUT_OF_ACCEPTANCE)) == 0)
        self.sample.offer(index[plain], {k: v[plain] for k, v in rows.items()})
        if self.reference is None:
            return
        marked = in_finite & ((status & (LEFT_VOLUME | SLOPE)) != 0)
        self.flagged.offer(index[marked], {k: v[marked] for k, v in rows.items()})
        self._turn(X, Y, Z, status, finite, bound)
        if self.reference.kind != "map":  # no volume to leave, no cells to mask
            self.map_flags_without_map += int(((status & (LEFT_VOLUME | MASKED_CELL)) != 0).sum())

    def _turn(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        Z: np.ndarray,
        status: np.ndarray,
        finite: np.ndarray,
        bound: np.ndarray,
    ) -> None:
        """The change of (u_x, u_y) of every row against what q/p and the field imply
        (ReferenceField.predicted_turn): exact models within the slope limit; a map, on the tracks
        the field turns by at most TURN_GATE, within TURN_REL of the prediction."""
        ref = self.reference
        keep = finite & ((status & (LEFT_VOLUME | MASKED_CELL)) == 0)
        gate = np.zeros(len(X), bool)
        gate[finite] = bound <= TURN_GATE
        if not ref.exact_turn:
            keep &= gate
        Xk, Yk, Zk = X[keep], Y[keep], Z[keep]
        if not len(Xk):
            return
        pred = ref.predicted_turn(Xk, Yk, Zk)
        got = unit_x_y(Yk[:, 2:4]) - unit_x_y(Xk[:, 2:4])
        dev = np.abs(got - pred).max(axis=1)
        if ref.exact_turn:
            # the slope limit, what a position error moves in a uniform field, and rounding
            turn = np.abs(Yk[:, 2:4] - Xk[:, 2:4]).max(axis=1)
            pos_lim, slope_lim = self.limits(Zk[:, 1] - Zk[:, 0], turn)
            kb = BENDING_CONSTANT * np.abs(Xk[:, 4]) * float(np.abs(ref.b).max())
            tol = slope_lim + kb * pos_lim + 16 * self.eps
        else:
            mag = np.hypot(pred[:, 0], pred[:, 1])
            judged = mag >= TURN_MIN
            dev, mag = dev[judged], mag[judged]
            tol = TURN_REL * mag
        self.turn_judged += len(dev)
        self.turn_bad += int((dev > tol).sum())
        if len(dev):
            self.turn_worst = max(self.turn_worst, float((dev / tol).max()))

    @property
    def slope_limit(self) -> float:
        """What verify allows on a slope of a track that hardly turns: the position limit over
        SLOPE_LEVER_MM."""
        return self.field_accuracy_mm / SLOPE_LEVER_MM

    def limits(self, dz: np.ndarray, turn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position limit mm, slope limit) per track of length dz (mm) whose slopes change by
        ``turn`` (max of |tx1 - tx0|, |ty1 - ty0|): the file's accuracy limit, plus what the
        adaptive step control allows to build up. Each step keeps its slope error within
        tol/h + rel_tolerance |change of tx over the step|; summed over a track the second part
        is rel_tolerance times the whole turn, and it acts over a lever arm up to |dz|. A slope
        error over SLOPE_LEVER_MM counts as a position error. Measured on every row of Gaussian,
        uniform and map files down to 1 GeV (four integrators, tracks up to max_slope): the
        generator stays within a quarter of these."""
        grow = self.rel_tolerance * np.asarray(turn)
        pos = self.field_accuracy_mm + grow * np.abs(dz)
        return pos, pos / SLOPE_LEVER_MM + grow

    # --- results -------------------------------------------------------------------------------
    def results(self) -> list[CheckResult]:
        out = [
            CheckResult(
                "all values finite",
                self.nonfinite == 0,
                f"{self.nonfinite} bad rows",
                f"of {self.n}; Y of stopped tracks is NaN by design",
            ),
            CheckResult("P > 0", self.p_nonpos == 0, f"{self.p_nonpos} rows"),
            CheckResult(
                "|q/p| P = 1/1000 (every row)",
                self.qop_p_bad == 0,
                f"{self.qop_p_bad} rows off",
                f"within {8 * self.eps:.1g} relative (P in GeV, q/p in 1/MeV)",
            ),
            CheckResult(
                "|x_f| < 10000 mm (where the field cannot carry the track further)",
                self.x_out == 0,
                f"max {self.max_abs_x:.1f} mm",
                f"{self.x_out} rows outside; {self.x_exempt} tracks the field can carry that far "
                "exempt",
            ),
            CheckResult(
                "|tx_f| < 1 (where the field cannot bend further)",
                self.tx_out == 0,
                f"{self.tx_out} rows outside",
                f"max |tx_f| {self.max_abs_tx:.4f}; {self.exempt} low-p tracks exempt",
            ),
            CheckResult(
                "bending within the field's bound",
                self.over_bound == 0,
                f"{self.over_bound} rows over",
                f"largest turn / bound = {self.worst_ratio:.3f}",
            ),
        ]
        if self.bend_n[1] and self.bend_n[-1]:
            mp = self.bend_sum[1] / self.bend_n[1]
            mn = self.bend_sum[-1] / self.bend_n[-1]
            out.append(
                CheckResult(
                    "charges bend opposite ways in x",
                    mp * mn < 0,
                    f"mean bend q+ {mp:+.2f} mm, q- {mn:+.2f} mm",
                )
            )
        else:
            out.append(
                CheckResult(
                    "charges bend opposite ways in x",
                    True,
                    "skipped: only one charge sign in the file",
                )
            )
        out += self._status_results()
        if self.reference is not None:
            out += self._independent_results()
        if self.propagate is not None:
            out += self._probe_results()
        return out

    def _independent_results(self) -> list[CheckResult]:
        ref = self.reference
        if ref.exact_turn:
            how = (
                f"exact for the {ref.kind} field; limit {self.slope_limit:g} on u_x, u_y"
                + (f" + {self.rel_tolerance:g} x turn" if self.rel_tolerance else "")
                + f" (C = {BENDING_CONSTANT:.9g} from scipy.constants)"
            )
        else:
            how = (
                f"along a cubic through the stored ends, tracks the field turns by <= "
                f"{TURN_GATE:g} rad with a predicted turn >= {TURN_MIN:g}; limit {TURN_REL:.0%}"
            )
        out = [
            CheckResult(
                "turn of every row matches q/p and the field",
                self.turn_bad == 0,
                f"{self.turn_bad} of {self.turn_judged} rows off",
                f"worst {self.turn_worst:.2g} x limit; {how}",
            )
        ]
        if ref.kind != "map":
            out.append(
                CheckResult(
                    "no map flags without a map",
                    self.map_flags_without_map == 0,
                    f"{self.map_flags_without_map} rows",
                    f"the {ref.kind} field has no volume to leave and no masked cells",
                )
            )
        return out + self._repropagation_results()

    def _repropagation_results(self) -> list[CheckResult]:
        """The sample against the independent reference; the flags of the sample and of the
        flagged rows against the reference path (the flagged rows at a loose tolerance: their
        flags are judged with a margin of millimetres, and a track leaving the map meets a
        step in the field that a tight tolerance pays for)."""
        sample, flagged = self.sample, self.flagged
        margin = max(2.0, 10 * self.field_accuracy_mm)
        ref = self.reference
        out = []
        refs, parts = [], []
        for rows, rtol, atol in ((sample, RTOL, ATOL_MM), (flagged, FLAG_RTOL, FLAG_ATOL_MM)):
            if not len(rows):
                continue
            X, Z = rows.get("X"), rows.get("Z")
            r = propagate(ref, X[:, :5], Z[:, 0], Z[:, 1], self.max_slope, margin, rtol, atol)
            if r.failed:
                return [
                    CheckResult(
                        "independent re-propagation (DOP853)",
                        False,
                        "the reference integration failed",
                        r.failed,
                    )
                ]
            refs.append(r)
            parts.append(rows)
        if len(sample):
            out.append(self._compare(sample, refs[0]))
        else:
            out.append(CheckResult("independent re-propagation (DOP853)", True, "no rows to judge"))
        bad = sum(
            self._flag_disagreements(r, rows.get("Z"), rows.get("status"), margin)
            for r, rows in zip(refs, parts)
        )
        out.append(
            CheckResult(
                "status flags agree with the independent path",
                bad == 0,
                f"{bad} of {len(sample) + len(flagged)} rows disagree",
                f"slope limit {self.max_slope:g} (the reference stops at {SLOPE_CAP:g}x)"
                + (f"; left field volume beyond {margin:g} mm" if ref.kind == "map" else "")
                + f"; {len(flagged)} flagged rows; masked-cell and step-limit flags not judged",
            )
        )
        return out

    def _compare(self, sample: Sample, r: Reference) -> CheckResult:
        """Stored Y of the sample against the reference within the file's accuracy limit."""
        X, Y, Z = sample.get("X"), sample.get("Y"), sample.get("Z")
        ok = ~r.frozen
        dpos = np.abs(r.Y[:, :2] - Y[:, :2])
        dslope = np.abs(r.Y[:, 2:] - Y[:, 2:])
        turn = np.abs(r.Y[:, 2:4] - X[:, 2:4]).max(axis=1)
        pos_lim, slope_lim = self.limits(Z[:, 1] - Z[:, 0], np.nan_to_num(turn))
        lim_pos = pos_lim[:, None] + 4 * self.eps * np.abs(Y[:, :2])
        lim_slope = slope_lim[:, None] + 4 * self.eps * np.abs(Y[:, 2:])
        ratio = np.maximum(dpos / lim_pos, dslope / lim_slope).max(axis=1, initial=0.0)
        off = ok & (ratio > 1.0)
        worst = float(ratio[ok].max(initial=0.0))
        first = sample.get("index")[off][:3].tolist()
        return CheckResult(
            "independent re-propagation (DOP853)",
            not off.any(),
            f"{int(off.sum())} of {int(ok.sum())} rows off; worst {worst:.2g} x limit",
            f"max |dx|,|dy| {float(dpos[ok].max(initial=0.0)):.2e} mm, "
            f"|dtx|,|dty| {float(dslope[ok].max(initial=0.0)):.1e}; limit "
            f"{self.field_accuracy_mm:g} mm, {self.slope_limit:g} on slopes"
            + (f" + {self.rel_tolerance:g} x turn (x |dz| on x, y)" if self.rel_tolerance else "")
            + f"; rows spread over the file, rtol {RTOL:g}"
            + (f"; first rows off: {first}" if first else ""),
        )

    def _flag_disagreements(
        self, r: Reference, Z: np.ndarray, status: np.ndarray, margin: float
    ) -> int:
        """Rows whose SLOPE or LEFT_VOLUME flag contradicts the reference path. Between two
        field evaluations a flag can be missed, so only clear cases count: a SLOPE track must
        reach 0.9 max_slope, an unflagged one must not reach SLOPE_CAP x max_slope; a track that
        ends more than ``margin`` outside the map or spends longer than the file's longest step
        there must be flagged LEFT_VOLUME, one that stays ``margin`` inside must not."""
        slope = (status & SLOPE) != 0
        bad = (slope & ~r.frozen & (r.max_slope < 0.9 * self.max_slope)) | (~slope & r.frozen)
        if self.reference.kind == "map":
            judged = (status & ABORTED) == 0  # a stopped track never saw the rest of its path
            left = (status & LEFT_VOLUME) != 0
            z_out = self.reference.z_outside(Z[:, 0], Z[:, 1])
            must = (z_out > 1e-6) | (r.end_out > margin) | (r.out_length >= self.longest_step_mm)
            never = (z_out <= 0) & (r.max_out < -margin)
            bad |= judged & ((left & never) | (~left & must))
        return int(bad.sum())

    def _status_results(self) -> list[CheckResult]:
        if not self.has_status:
            return [CheckResult("track status", True, "no status dataset in this file")]
        flags = ", ".join(f"{STATUS_NAMES[b]} {c}" for b, c in self.flag_counts.items())
        mean = self.steps_sum / self.n if self.n else 0.0
        return [
            CheckResult(
                "track status (counts)",
                True,
                f"ok {self.n_ok} of {self.n}",
                f"{flags}; steps per track mean {mean:.1f}, max {self.steps_max}",
            ),
            CheckResult(
                "stopped tracks have Y = NaN, others not",
                self.inconsistent == 0,
                f"{self.inconsistent} inconsistent rows",
            ),
            CheckResult(
                "out-of-acceptance flag matches Y at z_end",
                self.acceptance_mismatch == 0,
                f"{self.acceptance_mismatch} rows disagree",
                f"box |x|, |y|, |tx|, |ty| < {list(self.acceptance)}"
                if self.acceptance
                else "no acceptance cut: no row may carry the flag",
            ),
        ]

    def _probe_results(self) -> list[CheckResult]:
        out = [self._closed_form(), self._bending_power()]
        if len(self.sample):
            out += self._reproduce_and_reverse()
        return out

    def _closed_form(self) -> CheckResult:
        by = -1.0
        rng = np.random.default_rng(20260119)
        rows, dzs = [], []
        for dz in self.dz_values:
            if dz == 0:
                continue
            # momentum low enough to bend, high enough not to turn past |u_x| = 0.5
            p_low = BENDING_CONSTANT * abs(by) * abs(dz) / 0.5
            for p in (max(2000.0, p_low), max(5000.0, p_low), 20_000.0, 100_000.0):
                for q in (1.0, -1.0):
                    rows.append(
                        [
                            rng.uniform(-1000, 1000),
                            rng.uniform(-1000, 1000),
                            rng.uniform(-0.2, 0.2),
                            rng.uniform(-0.25, 0.25),
                            q / p,
                        ]
                    )
                    dzs.append(dz)
        state, dz = np.array(rows), np.array(dzs)
        z0 = np.full(len(dz), 1000.0)
        prop = self.make_uniform(UniformField(0.0, by, 0.0))
        got, status, _ = prop(state, z0, z0 + dz)
        exact = helix_uniform_by(state, dz, by)
        err = float(np.abs(got[:, :2] - exact[:, :2]).max())
        ok = bool(np.all(status == 0)) and err <= self.accuracy_mm
        return CheckResult(
            "uniform field: closed-form helix (any ty)",
            ok,
            f"max |dx|,|dy| {err:.2e} mm",
            f"{len(dz)} probes, limit {self.accuracy_mm:g} mm",
        )

    def _bending_power(self) -> CheckResult:
        ext = self.field.z_extent()
        z0, z1 = ext if ext is not None else (0.0, max(abs(d) for d in self.dz_values))
        qop = 1.0 / BEND_P_MEV
        state = np.array([[0.0, 0.0, 0.0, 0.0, qop]])
        got, status, _ = self.propagate(state, np.array([z0]), np.array([z1]))
        tx1, ty1 = got[0, 2], got[0, 3]
        ux = tx1 / np.sqrt(1 + tx1**2 + ty1**2)
        predicted = -BENDING_CONSTANT * qop * self.field.axis_integral(z0, z1)
        ok = (
            int(status[0]) & ABORTED == 0
            and bool(np.isfinite(ux))
            and abs(ux - predicted) <= BEND_REL * max(abs(predicted), 1e-9)
        )
        return CheckResult(
            "bending power: 10 GeV through the field",
            ok,
            f"delta u_x {ux:+.4f}",
            f"on-axis integral of By predicts {predicted:+.4f} (limit {BEND_REL:.0%}); "
            f"z {z0:.0f} -> {z1:.0f} mm",
        )

    def _reproduce_and_reverse(self) -> list[CheckResult]:
        X, Y, Z = (self.sample.get(k) for k in ("X", "Y", "Z"))
        fwd, st1, _ = self.propagate(X[:, :5], Z[:, 0], Z[:, 1])
        rtol = max(1e-9, 4 * self.eps)
        dpos = np.abs(fwd[:, :2] - Y[:, :2]) / (1e-6 + rtol * np.abs(Y[:, :2]))
        dslope = np.abs(fwd[:, 2:] - Y[:, 2:]) / (1e-9 + rtol * np.abs(Y[:, 2:]))
        worst = float(max(dpos.max(), dslope.max()))
        back_state = np.column_stack([fwd, X[:, 4]])
        back, st2, _ = self.propagate(back_state, Z[:, 1], Z[:, 0])
        ok_tracks = (st1 == 0) & (st2 == 0)
        derr = float(np.abs(back[ok_tracks, :2] - X[ok_tracks, :2]).max(initial=0.0))
        limit = 2 * self.field_accuracy_mm
        return [
            CheckResult(
                "stored Y reproduces from stored X",
                worst <= 1.0,
                f"worst deviation {worst:.2g} x tolerance",
                f"{len(X)} rows of the sample through the generator's own kernel: determinism, "
                f"not correctness; tolerance 1e-6 mm / 1e-9 + {rtol:.1g} relative",
            ),
            CheckResult(
                "forward then backward returns to the start",
                bool(ok_tracks.all()) and derr <= limit,
                f"max |dx|,|dy| {derr:.2e} mm",
                f"{int(ok_tracks.sum())} of {len(X)} probes; limit {limit:g} mm",
            ),
        ]
