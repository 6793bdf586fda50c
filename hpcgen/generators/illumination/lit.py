"""Lit fractions of every face for a batch of sun directions, by ray casting.

Definition (convention "area", the default): each face triangle is cut into 4^L congruent
sub-triangles (midpoint subdivision at level L; a quad is 2 triangles, so 2*4^L); a sub-triangle
is lit when its triangle faces the sun (n . s > 0) and the ray from its centroid, started
``RAY_OFFSET`` off the surface along the normal, towards the sun hits nothing. The lit fraction is
the lit area over the face area (0 when the face is turned away; exactly 1 when every
sub-triangle is lit).

Convention "lcas" (the seed workflow): level 0, one ray per triangle, lit fraction = lit triangles
/ sun-facing triangles of the face (0 when none faces the sun; the seed wrote 1.0 there).

Rays are cast in large batches: all sun vectors of a batch x all centroids of all sun-facing
triangles go to the caster in one call. Centroids of one level-0 triangle are consecutive, so a
ray batch is built from (sample, triangle) pairs by block copies, and lit counts come back by
reshaping, without per-ray Python work.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from hpcgen.generators.illumination.model import (
    Model,
    tracking_rotations,
    triangle_areas,
    triangle_normals,
)
from hpcgen.generators.illumination.raycast import RAY_OFFSET, make_caster
from hpcgen.kernel_cache import njit

#: rays per caster call (bounds memory: ~30 bytes per ray, whatever the chunk size)
RAYS_PER_BATCH = 1 << 20


def subdivision_uv(level: int) -> np.ndarray:
    """Barycentric (u, v) of the centroids of the 4^level sub-triangles of a triangle.

    The sub-triangles of the regular grid with n = 2^level divisions per edge: "up" triangles
    (i, j), (i+1, j), (i, j+1) for i + j <= n - 1 and "down" triangles for i + j <= n - 2. All
    have area A / 4^level. Point = A + u (B - A) + v (C - A).
    """
    n = 2**level
    i, j = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    up = (i + j <= n - 1).ravel()
    down = (i + j <= n - 2).ravel()
    i, j = i.ravel(), j.ravel()
    uv_up = np.stack([(3 * i[up] + 1), (3 * j[up] + 1)], axis=1) / (3 * n)
    uv_down = np.stack([(3 * i[down] + 2), (3 * j[down] + 2)], axis=1) / (3 * n)
    return np.concatenate([uv_up, uv_down])


@njit(cache=True, nogil=True)
def _fill_rays(origin_tri, sun, cs, ts, origins, dirs):  # numba kernel: types at call time
    """Rays of (sample, triangle) pairs: the K origins of triangle ts[p], direction sun[cs[p]]."""
    K = origin_tri.shape[1]
    r = 0
    for p in range(len(cs)):
        t, c = ts[p], cs[p]
        sx, sy, sz = sun[c, 0], sun[c, 1], sun[c, 2]
        for k in range(K):
            origins[r, 0] = origin_tri[t, k, 0]
            origins[r, 1] = origin_tri[t, k, 1]
            origins[r, 2] = origin_tri[t, k, 2]
            dirs[r, 0] = sx
            dirs[r, 1] = sy
            dirs[r, 2] = sz
            r += 1


def _to_host(a: Any) -> np.ndarray:
    return a.get() if hasattr(a, "get") else np.asarray(a)


class LitCalculator:
    """Lit fractions (n, F) of a model's faces for sun vectors (n, 3), on one backend.

    ``backend``: "embree" (CPU) or "brute" (numpy/cupy array code on ``xp``). ``tracking``: turn
    the model's tracking components towards each sun vector before casting.
    """

    def __init__(
        self,
        model: Model,
        level: int = 3,
        convention: str = "area",
        tracking: bool = False,
        backend: str = "embree",
        xp: ModuleType = np,
    ) -> None:
        if backend == "embree" and xp is not np:
            raise ValueError("the embree backend runs on the CPU (numpy)")
        self.model = model
        self.convention = convention
        self.level = 0 if convention == "lcas" else level
        self.backend = backend
        self.xp = xp
        self.K = 4**self.level
        self.n_faces = len(model.faces)
        tris, face, comp = [], [], []
        for i, f in enumerate(model.faces):
            tris.append(f.triangles)
            face += [i] * len(f.triangles)
            comp += [f.component] * len(f.triangles)
        self.tri_local = np.concatenate(tris)  # (T, 3, 3) component frames
        self.tri_face = np.array(face)
        self.tri_comp = np.array(comp)
        T = len(self.tri_local)
        uv = subdivision_uv(self.level)
        a, b, c = (self.tri_local[:, k] for k in range(3))
        pts = a[:, None] + uv[None, :, :1] * (b - a)[:, None] + uv[None, :, 1:] * (c - a)[:, None]
        self.normal_local = triangle_normals(self.tri_local)  # (T, 3)
        # ray origins just off the surface, component frame (T, K, 3)
        self.offset = RAY_OFFSET * model.scale
        self.origin_local = pts + self.offset * self.normal_local[:, None, :]
        # face membership and area weights of each sub-triangle of triangle t
        ind = np.zeros((T, self.n_faces))
        ind[np.arange(T), self.tri_face] = 1.0
        self.ind = ind
        area_t = triangle_areas(self.tri_local)
        # weight of one sub-triangle of triangle t in its face's lit fraction
        self.w_tri = area_t / self.K / model.face_areas[self.tri_face]
        self.points_per_face = ind.sum(axis=0) * self.K
        self.face_start = np.flatnonzero(np.diff(self.tri_face, prepend=-1))

        self.tracking = [k for k, cp in enumerate(model.components) if tracking and cp.can_track]
        moving = np.isin(self.tri_comp, self.tracking)
        self.static_tris = np.flatnonzero(~moving)
        # body frame at rest (valid for the static triangles)
        rot = np.stack([cp.rotation for cp in model.components])[self.tri_comp]  # (T, 3, 3)
        pos = np.stack([cp.position for cp in model.components])[self.tri_comp]  # (T, 3)
        self.normal_body = np.einsum("tij,tj->ti", rot, self.normal_local)
        self.origin_body = np.einsum("tij,tkj->tki", rot, self.origin_local) + pos[:, None, :]
        tri_body = np.einsum("tvj,tij->tvi", self.tri_local, rot) + pos[:, None, :]
        self.static_caster = (
            make_caster(backend, tri_body[self.static_tris], xp) if len(self.static_tris) else None
        )
        self.track_casters = {
            k: make_caster(backend, self.tri_local[self.tri_comp == k], xp) for k in self.tracking
        }
        if not self.tracking:
            # everything is static: keep the ray origins in the caster's own frame and dtype
            self.origin_prepared = self.static_caster.prepare(
                self.origin_body.reshape(-1, 3)
            ).reshape(T, self.K, 3)
            self.normal_body_xp = xp.asarray(self.normal_body)
        self._buf: tuple[Any, Any] | None = None
        self.rays_cast = 0

    # --- public -----------------------------------------------------------------------------------
    def __call__(self, sun: np.ndarray) -> np.ndarray:
        """Lit fractions (n, F) float64 for unit sun vectors (n, 3) in the body frame."""
        sun = np.asarray(sun, dtype=np.float64)
        n = len(sun)
        out = np.empty((n, self.n_faces))
        pts = max(1, len(self.tri_local) * self.K)
        per = max(1, (2 * RAYS_PER_BATCH) // pts)  # about half the triangles face the sun
        if self.tracking:
            per = max(1, per // 4)
        for a in range(0, n, per):
            s = sun[a : a + per]
            out[a : a + per] = self._tracking_batch(s) if self.tracking else self._static_batch(s)
        return out

    # --- batches ----------------------------------------------------------------------------------
    def _static_batch(self, sun: np.ndarray) -> np.ndarray:
        xp, K = self.xp, self.K
        s = xp.asarray(sun)
        facing = (s @ self.normal_body_xp.T) > 0  # (b, T)
        cs, ts = xp.nonzero(facing)
        n_pairs = len(cs)
        origins, dirs = self._buffers(n_pairs * K)
        if xp is np:  # one compiled pass writes both arrays (half the time of two numpy copies)
            _fill_rays(self.origin_prepared, s.astype(dirs.dtype), cs, ts, origins, dirs)
        else:  # block copies: the K centroids of a triangle are consecutive
            xp.take(self.origin_prepared, ts, axis=0, out=origins.reshape(n_pairs, K, 3))
            dirs.reshape(n_pairs, K, 3)[...] = s.astype(dirs.dtype)[cs][:, None, :]
        hits = self.static_caster.occluded_prepared(origins, dirs)
        self.rays_cast += len(hits)
        n_lit = xp.zeros(facing.shape)
        n_lit[cs, ts] = K - hits.reshape(-1, K).sum(axis=1)
        return _to_host(self._fractions(xp, n_lit, facing))

    def _buffers(self, n: int) -> tuple[Any, Any]:
        """Reused ray buffers (origins, directions) of n rows: no page faults per batch."""
        if self._buf is None or len(self._buf[0]) < n:
            dtype = self.origin_prepared.dtype
            size = max(n, 2 * RAYS_PER_BATCH)
            self._buf = (self.xp.empty((size, 3), dtype), self.xp.empty((size, 3), dtype))
        return self._buf[0][:n], self._buf[1][:n]

    def _tracking_batch(self, sun: np.ndarray) -> np.ndarray:
        K, T = self.K, len(self.tri_local)
        b = len(sun)
        rots = {k: tracking_rotations(self.model.components[k], sun) for k in self.tracking}
        normals = np.broadcast_to(self.normal_body, (b, T, 3)).copy()
        for k, m in rots.items():
            sel = self.tri_comp == k
            normals[:, sel] = np.einsum("bij,tj->bti", m, self.normal_local[sel])
        facing = np.einsum("bti,bi->bt", normals, sun) > 0
        cs, ts = np.nonzero(facing)
        # body-frame ray origins per (sample, triangle) pair: (pairs, K, 3)
        origins = self.origin_body[ts]
        for k, m in rots.items():
            sel = self.tri_comp[ts] == k
            pos = self.model.components[k].position
            origins[sel] = np.einsum("pij,pkj->pki", m[cs[sel]], self.origin_local[ts[sel]]) + pos
        dirs = sun[cs]  # (pairs, 3)
        hit = np.zeros((len(cs), K), dtype=bool)
        if self.static_caster is not None:
            hit |= self._cast(self.static_caster, origins, dirs)
        for k, m in rots.items():
            pos = self.model.components[k].position
            mt = m[cs]  # rotations of the ray's sample; into component k's frame: M^T (x - pos)
            o_k = np.einsum("pji,pkj->pki", mt, origins - pos)
            d_k = np.einsum("pji,pj->pi", mt, dirs)
            hit |= self._cast(self.track_casters[k], o_k, d_k)
        self.rays_cast += hit.size
        n_lit = np.zeros(facing.shape)
        n_lit[cs, ts] = K - hit.sum(axis=1)
        return self._fractions(np, n_lit, facing)

    def _cast(self, caster: Any, origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        """Hits (pairs, K) for origins (pairs, K, 3) sharing one direction per pair."""
        K = self.K
        o = caster.prepare(origins.reshape(-1, 3))
        d = self.xp.repeat(self.xp.asarray(dirs).astype(o.dtype), K, axis=0)
        return _to_host(caster.occluded_prepared(o, d)).reshape(-1, K)

    def _fractions(self, xp: ModuleType, n_lit: Any, facing: Any) -> Any:
        """Per-face values (b, F) from lit sub-triangle counts per level-0 triangle (b, T)."""
        if xp is np:  # faces own consecutive triangles: segment sums, no BLAS call

            def per_face(a: Any) -> Any:
                return np.add.reduceat(a, self.face_start, axis=1)
        else:
            ind = xp.asarray(self.ind)

            def per_face(a: Any) -> Any:
                return a @ ind

        lit_points = per_face(n_lit)  # exact: integer counts in float64
        if self.convention == "lcas":
            n_facing = per_face(facing.astype(xp.float64))
            return xp.where(n_facing > 0, lit_points / xp.maximum(n_facing, 1), 0.0)
        frac = xp.clip(per_face(n_lit * xp.asarray(self.w_tri)[None, :]), 0.0, 1.0)
        # every sub-triangle lit: exactly 1 (the weighted sum may round to 1 - 1e-16)
        full = xp.asarray(self.points_per_face)[None, :]
        return xp.where(lit_points == full, 1.0, frac)
