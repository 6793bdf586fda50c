"""Physical constants of the tracks generator (verify takes its own from scipy.constants)."""

from __future__ import annotations

#: bending constant: curvature [1/mm] = C_LIGHT * B [T] * q/p [1/MeV] (c in units that make it
#: so: 0.299792458 GeV / (T m) = 0.299792458 MeV / (T mm)). Public prior art used 2.99792458e-4
#: with q/p in 1/MeV, bending tracks 1000x too little.
C_LIGHT = 0.299792458
