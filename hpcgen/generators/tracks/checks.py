"""Streaming physics sanity checks for a tracks file (``hpcgen verify``).

The seed workflow's checks (finite, P > 0, |x_f| < 10 m, |tx_f| < 1, opposite bending) plus a
bound from the field: the unit direction u of a track turns at a rate C |q/p| |B| per unit path
length, so |u_x(z1) - u_x(z0)| <= C |q/p| max(N0, N1) * integral |B| dz (N = sqrt(1+tx^2+ty^2),
ds = N dz; N is monotonic along a path through a one-signed dipole). A 1000x bending-constant error
in either direction breaks this bound or the opposite-bending check.

Why ``|tx_f| < 1`` is applied only to tracks the field cannot bend that far: with the correct
constant a 2 GeV track through the LHCb dipole gains ~0.58 in u_x between z = 3 and 9 m, so about
1 % of the seed's own default sample (p >= 2 GeV, |tx| <= 0.3) legitimately ends with |tx_f| > 1.
The seed's bound held only under its 1000x unit error.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from hpcgen.generators.base import CheckResult, Verifier
from hpcgen.generators.tracks.fields import Field
from hpcgen.generators.tracks.rk4 import C_LIGHT

X_MAX = 10_000.0  # mm: |x_f| beyond this left any LHCb detector long ago
TX_MAX = 1.0


class TracksVerifier(Verifier):
    """Finite values, P > 0, |x_f| < 10 m, |tx_f| < 1, and opposite charges bend opposite ways.

    Bending is measured against the straight line: b = x_f - (x + tx dz), so the symmetric spread
    of initial slopes does not hide the sign.
    """

    def __init__(self, field: Field) -> None:
        self.field = field
        self.over_bound = 0
        self.exempt = 0
        self.worst_ratio = 0.0
        self.n = 0
        self.nonfinite = 0
        self.p_nonpos = 0
        self.x_out = 0
        self.tx_out = 0
        self.max_abs_x = 0.0
        self.max_abs_tx = 0.0
        self.bend_sum = {1: 0.0, -1: 0.0}
        self.bend_n = {1: 0, -1: 0}

    def update(self, data: Mapping[str, np.ndarray], start: int) -> None:
        X, Y, P = (np.asarray(data[k], dtype=np.float64) for k in ("X", "Y", "P"))
        self.n += len(P)
        finite = np.isfinite(X).all(1) & np.isfinite(Y).all(1) & np.isfinite(P)
        self.nonfinite += int((~finite).sum())
        self.p_nonpos += int((P[finite] <= 0).sum())
        Xf, Yf, Zf = X[finite], Y[finite], np.asarray(data["Z"], dtype=np.float64)[finite]
        n0 = np.sqrt(1 + Xf[:, 2] ** 2 + Xf[:, 3] ** 2)
        n1 = np.sqrt(1 + Yf[:, 2] ** 2 + Yf[:, 3] ** 2)
        turn = np.abs(Yf[:, 2] / n1 - Xf[:, 2] / n0)
        bound = (
            C_LIGHT
            * np.abs(Xf[:, 4])
            * np.maximum(n0, n1)
            * self.field.abs_integral(Zf[:, 0], Zf[:, 1])
        )
        self.over_bound += int((turn > 1.001 * bound + 1e-9).sum())
        if turn.size:
            self.worst_ratio = max(self.worst_ratio, float((turn / (bound + 1e-300)).max()))
        # tracks the field could turn past |u_x| = 1/sqrt(2) (|tx| = 1 when ty = 0) are exempt
        can_reach = np.abs(Xf[:, 2] / n0) + bound >= 1 / np.sqrt(2)
        self.exempt += int(can_reach.sum())
        ax, atx = np.abs(Yf[:, 0]), np.abs(Yf[:, 2])
        self.x_out += int((ax >= X_MAX).sum())
        self.tx_out += int((atx[~can_reach] >= TX_MAX).sum())
        if ax.size:
            self.max_abs_x = max(self.max_abs_x, float(ax.max()))
            self.max_abs_tx = max(self.max_abs_tx, float(atx.max()))
        bend = Yf[:, 0] - (Xf[:, 0] + Xf[:, 2] * Xf[:, 5])
        for q in (1, -1):
            sel = np.sign(Xf[:, 4]) == q
            self.bend_sum[q] += float(bend[sel].sum())
            self.bend_n[q] += int(sel.sum())

    def results(self) -> list[CheckResult]:
        out = [
            CheckResult(
                "all values finite",
                self.nonfinite == 0,
                f"{self.nonfinite} bad rows",
                f"of {self.n}",
            ),
            CheckResult("P > 0", self.p_nonpos == 0, f"{self.p_nonpos} rows"),
            CheckResult(
                "|x_f| < 10000 mm",
                self.x_out == 0,
                f"max {self.max_abs_x:.1f} mm",
                f"{self.x_out} rows outside",
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
        return out
