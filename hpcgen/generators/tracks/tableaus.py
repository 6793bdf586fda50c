"""Runge-Kutta schemes as data (Butcher tableaus), as in LHCb's TrackRungeKuttaExtrapolator: one
stepping code, several tableaus.

``a`` (s x s, strictly lower triangular), ``b`` the weights of the solution that is propagated,
``bhat`` the embedded lower-order weights (error estimate = h * sum((b - bhat) k)), ``c`` the stage
nodes, ``order`` of ``bhat`` (q: the step factor exponents are -1/q to shrink and -1/(q+1) to grow,
Numerical Recipes' -1/4 and -1/5 for the 4(5) pairs).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class Tableau:
    name: str
    a: np.ndarray
    b: np.ndarray
    bhat: np.ndarray | None
    order: int  # order of the embedded solution (adaptive) or of b (fixed)

    @property
    def stages(self) -> int:
        return len(self.b)

    @cached_property  # the numpy reference reads c and e every step
    def c(self) -> np.ndarray:
        """Stage nodes: the row sums of ``a``, as the exact fractions they are (a float row sum
        can miss by an ulp: Dormand-Prince's last node would be 1 - 2e-16, not 1)."""
        return np.array([float(Fraction(r).limit_denominator(1000)) for r in self.a.sum(axis=1)])

    @property
    def adaptive(self) -> bool:
        return self.bhat is not None

    @cached_property
    def e(self) -> np.ndarray:
        """Error weights b - bhat (zeros for a fixed-step scheme)."""
        return self.b - self.bhat if self.bhat is not None else np.zeros_like(self.b)


def _lower(rows: list[list[float]]) -> np.ndarray:
    n = len(rows) + 1
    a = np.zeros((n, n))
    for i, r in enumerate(rows, start=1):
        a[i, : len(r)] = r
    return a


RK4 = Tableau(
    "rk4",
    _lower([[0.5], [0.0, 0.5], [0.0, 0.0, 1.0]]),
    np.array([1 / 6, 1 / 3, 1 / 3, 1 / 6]),
    None,
    4,
)

#: Cash & Karp, ACM TOMS 16 (1990) 201: 5th-order solution propagated, 4th-order embedded
CASH_KARP = Tableau(
    "cashkarp",
    _lower(
        [
            [1 / 5],
            [3 / 40, 9 / 40],
            [3 / 10, -9 / 10, 6 / 5],
            [-11 / 54, 5 / 2, -70 / 27, 35 / 27],
            [1631 / 55296, 175 / 512, 575 / 13824, 44275 / 110592, 253 / 4096],
        ]
    ),
    np.array([37 / 378, 0.0, 250 / 621, 125 / 594, 0.0, 512 / 1771]),
    np.array([2825 / 27648, 0.0, 18575 / 48384, 13525 / 55296, 277 / 14336, 1 / 4]),
    4,
)

#: Dormand & Prince, J. Comp. Appl. Math. 6 (1980) 19: 5(4), first stage same as last
DORMAND_PRINCE = Tableau(
    "dopri5",
    _lower(
        [
            [1 / 5],
            [3 / 40, 9 / 40],
            [44 / 45, -56 / 15, 32 / 9],
            [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
            [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
            [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
        ]
    ),
    np.array([35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0]),
    np.array([5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40]),
    4,
)

#: Bogacki & Shampine, Appl. Math. Lett. 2 (1989) 321: 3(2)
BOGACKI_SHAMPINE = Tableau(
    "bs32",
    _lower([[1 / 2], [0.0, 3 / 4], [2 / 9, 1 / 3, 4 / 9]]),
    np.array([2 / 9, 1 / 3, 4 / 9, 0.0]),
    np.array([7 / 24, 1 / 4, 1 / 3, 1 / 8]),
    2,
)

TABLEAUS = {t.name: t for t in (RK4, CASH_KARP, DORMAND_PRINCE, BOGACKI_SHAMPINE)}
