"""Training-side reader of energy files: the operations of the source workflow's atlas loader
(windows of consecutive frames at scale 64/128/256, gradients, entropy, per-domain statistics),
streaming from the HDF5 files with plain serial h5py reads.

    atlas = EnergyAtlas("runs/")                  # a directory, one file or a list of files
    for batch in atlas.windows("plasma_physics", window=2, scale=128, batch_size=16,
                               gradients=True):
        x, y = batch["energy"][:, 0], batch["energy"][:, 1]      # E(t) -> E(t+1)
    atlas.stats("plasma_physics")                 # {"mean": ..., "variance": ..., ...}

Only the trajectories of one block are in memory at a time (``block`` trajectories per read). Any
file in The Well's layout with a ``t0_fields/energy`` dataset and a ``domain`` root attribute is
read (files written by ``hpcgen run`` with the energy generator).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from hpcgen.errors import UserError
from hpcgen.generators.energy import maps, well
from hpcgen.generators.energy.maps import entropy, gradients, pyramid, rescale

__all__ = [
    "EnergyAtlas",
    "EnergyFile",
    "RunningStats",
    "entropy",
    "file_stats",
    "gradients",
    "pyramid",
    "rescale",
]

HDF5_SUFFIXES = (".h5", ".hdf5")


@dataclass(frozen=True)
class EnergyFile:
    path: Path
    domain: str
    n_trajectories: int
    n_steps: int
    shape: tuple[int, int]


def open_energy_file(path: Path) -> EnergyFile | None:
    """Describe ``path`` if it is an energy file, else None (not HDF5, or another layout)."""
    try:
        with h5py.File(path, "r") as h5:
            if well.ENERGY not in h5 or "domain" not in h5.attrs:
                return None
            d = h5[well.ENERGY]
            return EnergyFile(
                path, str(h5.attrs["domain"]), d.shape[0], d.shape[1], (d.shape[2], d.shape[3])
            )
    except OSError:
        return None


def find_files(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """HDF5 files under a directory (recursive, sorted), or the given file(s)."""
    if isinstance(source, (str, Path)):
        p = Path(source)
        if p.is_dir():
            return sorted(f for f in p.rglob("*") if f.suffix in HDF5_SUFFIXES and f.is_file())
        if not p.is_file():
            raise UserError(f"no such file or directory: {p}")
        return [p]
    return [Path(s) for s in source]


class RunningStats:
    """Mean and variance of a stream of values, merged block by block (Chan et al.), float64."""

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0

    def add(self, values: np.ndarray) -> None:
        v = np.asarray(values, np.float64).ravel()
        if v.size == 0:
            return
        m = v.mean()
        self.merge(v.size, float(m), float(((v - m) ** 2).sum()))

    def merge(self, n: int, mean: float, m2: float) -> None:
        if n == 0:
            return
        total = self.n + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta**2 * self.n * n / total
        self.n = total

    def merge_stats(self, other: RunningStats) -> None:
        self.merge(other.n, other.mean, other.m2)

    @property
    def variance(self) -> float:
        return self.m2 / self.n if self.n else float("nan")


@dataclass
class DomainStats:
    """Pixel statistics and per-frame entropy of everything read for one domain."""

    pixels: RunningStats
    entropy: RunningStats
    n_trajectories: int = 0

    def as_dict(self) -> dict[str, float | int]:
        return {
            "n_trajectories": self.n_trajectories,
            "n_frames": self.entropy.n,
            "mean": self.pixels.mean,
            "variance": self.pixels.variance,
            "entropy_mean": self.entropy.mean,
            "entropy_variance": self.entropy.variance,
        }


def file_stats(path: Path, block: int = 8) -> DomainStats:
    """Stream one energy file: pixel mean/variance and entropy statistics over all frames."""
    st = DomainStats(RunningStats(), RunningStats())
    with h5py.File(path, "r") as h5:
        d = h5[well.ENERGY]
        for a in range(0, d.shape[0], block):
            e = d[a : a + block]
            st.pixels.add(e)
            st.entropy.add(maps.entropy(e))
            st.n_trajectories += e.shape[0]
    return st


class EnergyAtlas:
    """Energy files grouped by domain; windows, pyramids, gradients and statistics on demand."""

    def __init__(self, source: str | Path | Sequence[str | Path], block: int = 8) -> None:
        self.block = block
        self.files: dict[str, list[EnergyFile]] = {}
        for p in find_files(source):
            info = open_energy_file(p)
            if info is not None:
                self.files.setdefault(info.domain, []).append(info)
        if not self.files:
            raise UserError(f"no energy files in {source}")

    @property
    def domains(self) -> list[str]:
        return sorted(self.files)

    def _files(self, domain: str) -> list[EnergyFile]:
        if domain not in self.files:
            raise UserError(f"no files for domain {domain!r} (have: {', '.join(self.domains)})")
        return self.files[domain]

    def n_trajectories(self, domain: str) -> int:
        return sum(f.n_trajectories for f in self._files(domain))

    def trajectories(self, domain: str) -> Iterator[np.ndarray]:
        """Every trajectory (T, H, W) of a domain, file by file, ``block`` at a time."""
        for f in self._files(domain):
            with h5py.File(f.path, "r") as h5:
                d = h5[well.ENERGY]
                for a in range(0, f.n_trajectories, self.block):
                    yield from d[a : a + self.block]

    def window(
        self, domain: str, trajectory: int, t0: int, length: int = 2, scale: int | None = None
    ) -> np.ndarray:
        """Frames t0 .. t0 + length - 1 of one trajectory (index over the domain's files), at
        pyramid level ``scale`` (map height; None: full resolution)."""
        for f in self._files(domain):
            if trajectory < f.n_trajectories:
                if not (0 <= t0 and t0 + length <= f.n_steps):
                    raise UserError(f"window {t0}..{t0 + length - 1} outside 0..{f.n_steps - 1}")
                with h5py.File(f.path, "r") as h5:
                    frames = h5[well.ENERGY][trajectory, t0 : t0 + length]
                return frames if scale is None else rescale(frames, scale)
            trajectory -= f.n_trajectories
        raise UserError(
            f"trajectory out of range: domain {domain!r} has {self.n_trajectories(domain)}"
        )

    def windows(
        self,
        domain: str,
        window: int = 2,
        stride: int = 1,
        scale: int | None = None,
        batch_size: int = 32,
        gradients: bool = False,
    ) -> Iterator[dict[str, np.ndarray]]:
        """Batches of windows of ``window`` consecutive frames (every start t0 = 0, stride, ...
        of every trajectory), optionally at pyramid level ``scale`` (bicubic, energy renormalised
        per frame). Each batch: "energy" (b, window, h, w) float32, "entropy" (b, window) and,
        with ``gradients``, "grad_x", "grad_y", "grad_mag" of the same shape as "energy"."""
        if window < 1 or stride < 1 or batch_size < 1:
            raise UserError("window, stride and batch_size must be >= 1")
        pending: list[np.ndarray] = []
        for traj in self.trajectories(domain):
            if scale is not None:
                traj = rescale(traj, scale)
            for t0 in range(0, traj.shape[0] - window + 1, stride):
                pending.append(traj[t0 : t0 + window])
                if len(pending) == batch_size:
                    yield _batch(pending, gradients)
                    pending = []
        if pending:
            yield _batch(pending, gradients)

    def stats(self, domain: str) -> dict[str, float | int]:
        """Per-domain statistics over all its files: pixel mean and variance, entropy."""
        total = DomainStats(RunningStats(), RunningStats())
        for f in self._files(domain):
            st = file_stats(f.path, self.block)
            total.pixels.merge_stats(st.pixels)
            total.entropy.merge_stats(st.entropy)
            total.n_trajectories += st.n_trajectories
        return total.as_dict()


def _batch(windows: list[np.ndarray], with_gradients: bool) -> dict[str, np.ndarray]:
    e = np.stack(windows).astype(np.float32, copy=False)
    out = {"energy": e, "entropy": maps.entropy(e)}
    if with_gradients:
        out["grad_x"], out["grad_y"], out["grad_mag"] = gradients(e)
    return out
