"""Occlusion ("does this ray hit anything?") queries against a fixed set of triangles.

Two backends answer the same question:

- :class:`EmbreeCaster` (CPU, the reference): Intel Embree through embreex, the library trimesh
  itself uses for ``mesh.ray`` when embreex is installed. We build the embreex scene the way
  trimesh's ``RayMeshIntersector`` does (vertices shifted to the bounding-box corner and scaled to
  ~100 units so that float32 keeps its precision) but keep our ray origins pre-transformed, so a
  chunk costs one gather and one ``OCCLUDED`` call per batch instead of trimesh's per-call float64
  copies, normalisation and rescaling (same answers, see the tests; the rates of both:
  docs/illumination.md, "Benchmarks").
- :class:`BruteCaster` (numpy or cupy): Moller-Trumbore against every triangle, in float64 array
  code that runs unchanged on the GPU. O(rays x triangles): meant for the small box-wing models
  (tens to a few thousand triangles) where a GPU sweeps all pairs faster than Embree's BVH walk.

Both take rays as (origin, unit direction) with hits counted for t > 0 only: callers start rays
just off the surface (see :data:`RAY_OFFSET`).
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

#: ray origins start this far (relative to the model's bounding-box diagonal) off the surface,
#: along the face normal: ~130 float32 ulps of Embree's scaled coordinates, far below any
#: geometric feature (0.3 mm on the 33 m Intelsat model)
RAY_OFFSET = 1e-5

#: Embree works in float32
_F32 = np.float32


class EmbreeCaster:
    """Embree occlusion queries on static triangles (T, 3, 3) (float64, any frame)."""

    def __init__(self, triangles: np.ndarray) -> None:
        from embreex import rtcore_scene
        from embreex.mesh_construction import TriangleMesh

        tris = np.asarray(triangles, dtype=np.float64).reshape(-1, 3, 3)
        pts = tris.reshape(-1, 3)
        self.origin = pts.min(axis=0)
        extent = float(np.linalg.norm(pts.max(axis=0) - self.origin)) or 1.0
        # same normalisation as trimesh's RayMeshIntersector (scale_to_box): ~100 units across
        self.scale = 100.0 / extent
        self.scene = rtcore_scene.EmbreeScene()
        self._mesh = TriangleMesh(self.scene, ((tris - self.origin) * self.scale).astype(_F32))

    def prepare(self, origins: np.ndarray) -> np.ndarray:
        """Origins (n, 3) in the caller's frame -> Embree's scaled float32 frame."""
        return ((np.asarray(origins, dtype=np.float64) - self.origin) * self.scale).astype(_F32)

    def occluded_prepared(self, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
        """Hit test for prepared (float32, scaled) origins and float32 unit directions."""
        if len(origins) == 0:
            return np.zeros(0, dtype=bool)
        return self.scene.run(origins, directions, query="OCCLUDED") != -1

    def occluded(self, origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
        """Hit test (n,) bool for rays in the caller's frame (directions: unit vectors)."""
        return self.occluded_prepared(
            self.prepare(origins), np.ascontiguousarray(directions, dtype=_F32)
        )


class BruteCaster:
    """Moller-Trumbore against every triangle, on ``xp`` (numpy or cupy), float64."""

    #: ray-triangle pairs per vectorised step (bounds the temporaries: ~40 bytes per pair)
    PAIRS_PER_STEP = 1 << 21

    def __init__(self, triangles: np.ndarray, xp: ModuleType = np) -> None:
        self.xp = xp
        tris = np.asarray(triangles, dtype=np.float64).reshape(-1, 3, 3)
        self.v0 = xp.asarray(tris[:, 0])
        self.e1 = xp.asarray(tris[:, 1] - tris[:, 0])
        self.e2 = xp.asarray(tris[:, 2] - tris[:, 0])
        # |det| below this is a ray parallel to the triangle plane: no hit
        size = float(np.linalg.norm(np.ptp(tris.reshape(-1, 3), axis=0))) or 1.0
        self.det_eps = 1e-12 * size * size

    def prepare(self, origins: Any) -> Any:
        return self.xp.asarray(origins, dtype=self.xp.float64)

    def occluded_prepared(self, origins: Any, directions: Any) -> Any:
        xp = self.xp
        n = len(origins)
        out = xp.zeros(n, dtype=bool)
        step = max(1, self.PAIRS_PER_STEP // max(1, len(self.v0)))
        for a in range(0, n, step):
            o = origins[a : a + step, None, :]
            d = xp.asarray(directions[a : a + step], dtype=xp.float64)[:, None, :]
            pvec = xp.cross(d, self.e2[None])
            det = (self.e1[None] * pvec).sum(-1)
            ok = xp.abs(det) > self.det_eps
            inv = 1.0 / xp.where(ok, det, 1.0)
            tvec = o - self.v0[None]
            u = (tvec * pvec).sum(-1) * inv
            qvec = xp.cross(tvec, self.e1[None])
            v = (d * qvec).sum(-1) * inv
            t = (self.e2[None] * qvec).sum(-1) * inv
            hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
            out[a : a + step] = hit.any(axis=1)
        return out

    def occluded(self, origins: Any, directions: Any) -> Any:
        return self.occluded_prepared(self.prepare(origins), directions)


def make_caster(backend: str, triangles: np.ndarray, xp: ModuleType = np) -> Any:
    if backend == "embree":
        return EmbreeCaster(triangles)
    if backend == "brute":
        return BruteCaster(triangles, xp)
    raise ValueError(f"unknown ray-casting backend {backend!r}")
