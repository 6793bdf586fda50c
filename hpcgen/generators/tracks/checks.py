"""Streaming physics sanity checks for a tracks file (``hpcgen verify``)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from hpcgen.generators.base import CheckResult, Verifier

X_MAX = 10_000.0  # mm: |x_f| beyond this left any LHCb detector long ago
TX_MAX = 1.0


class TracksVerifier(Verifier):
    """Finite values, P > 0, |x_f| < 10 m, |tx_f| < 1, and opposite charges bend opposite ways.

    Bending is measured against the straight line: b = x_f - (x + tx dz), so the symmetric spread
    of initial slopes does not hide the sign.
    """

    def __init__(self) -> None:
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
        ax, atx = np.abs(Y[finite, 0]), np.abs(Y[finite, 2])
        self.x_out += int((ax >= X_MAX).sum())
        self.tx_out += int((atx >= TX_MAX).sum())
        if ax.size:
            self.max_abs_x = max(self.max_abs_x, float(ax.max()))
            self.max_abs_tx = max(self.max_abs_tx, float(atx.max()))
        Xf, Yf = X[finite], Y[finite]
        bend = Yf[:, 0] - (Xf[:, 0] + Xf[:, 2] * Xf[:, 5])
        for q in (1, -1):
            sel = np.sign(Xf[:, 4]) == q
            self.bend_sum[q] += float(bend[sel].sum())
            self.bend_n[q] += int(sel.sum())

    def results(self) -> list[CheckResult]:
        out = [
            CheckResult("all values finite", self.nonfinite == 0, f"{self.nonfinite} bad rows",
                        f"of {self.n}"),
            CheckResult("P > 0", self.p_nonpos == 0, f"{self.p_nonpos} rows"),
            CheckResult("|x_f| < 10000 mm", self.x_out == 0, f"max {self.max_abs_x:.1f} mm",
                        f"{self.x_out} rows outside"),
            CheckResult("|tx_f| < 1", self.tx_out == 0, f"max {self.max_abs_tx:.4f}",
                        f"{self.tx_out} rows outside"),
        ]
        if self.bend_n[1] and self.bend_n[-1]:
            mp = self.bend_sum[1] / self.bend_n[1]
            mn = self.bend_sum[-1] / self.bend_n[-1]
            out.append(CheckResult("charges bend opposite ways in x", mp * mn < 0,
                                   f"mean bend q+ {mp:+.2f} mm, q- {mn:+.2f} mm"))
        else:
            out.append(CheckResult("charges bend opposite ways in x", True,
                                   "skipped: only one charge sign in the file"))
        return out
