"""verify's own geometry: lit fractions recomputed without the generator's ray casting.

``hpcgen verify`` must not trust :mod:`.raycast` and :mod:`.lit` to check their own output, so
this module recomputes lit fractions by a different method and shares no code with them:

- **shadows by projection, not by rays.** For a receiving triangle R facing the sun s and any
  other triangle O, the part of O in front of R's plane (clipped there, Sutherland-Hodgman) is
  projected along s onto that plane. It is a convex polygon: exactly the set of points of R whose
  ray towards the sun hits O. A point of R is in shadow when it lies inside one of these
  polygons (a 2-D point-in-convex-polygon test), and we also know how far it is from the nearest
  polygon edge;
- **the definition's points, built independently.** The file states its definition (attributes
  ``convention`` and ``level`` of ``lit_fractions``): the centroids of the 4^L sub-triangles of
  midpoint subdivision, each weighing its area ("area"), or one centroid per triangle counted
  over the sun-facing triangles ("lcas"). We build those centroids by recursive midpoint
  subdivision, not by the generator's closed-form grid;
- **own normals and tracking turns** (Rodrigues on vectors), from the triangles stored in the
  file (``model_triangles``, body frame at rest) and the model's tracking axes.

The result for a face is an interval [lo, hi]: ``lo`` counts the points that are lit beyond
doubt, ``hi`` adds the undecided ones. A point is undecided when it is within
``EDGE_TOLERANCE * model size / (n . s)`` of a shadow-polygon edge (the generator casts in
Embree's float32 coordinates; an error e across the sun direction moves a shadow edge on R by
e / (n . s)), and a whole triangle is undecided when it grazes the sun (|n . s| <= GRAZING), where
the sign of n . s rests on the last bits of the arithmetic. A stored value outside
[lo - tol, hi + tol] is wrong (tol: the storage dtype's rounding). On the bundled model at level
3 about 0.2 % of the values get an interval wider than a point (without tracking; with tracking
the panels' side edges graze the sun by construction).

Only pairs (receiver, triangle) whose bounding boxes overlap as seen from the sun, with part of
the triangle sunward of the receiver, are clipped (:meth:`Recaster._candidates`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: |n . s| at or below this: the triangle grazes the sun and its facing is undecided
GRAZING = 1e-9
#: a point within this fraction of the model size (bounding-box diagonal) of a shadow edge, seen
#: along the sun, is undecided. The generator's rays live in Embree's float32 coordinates, the
#: model scaled to ~100 units: vertex and origin rounding (each 0.5 ulp of 100 = 3.8e-8 of the
#: size) and the float32 direction (6e-8 rad over at most the size) move a hit by ~1.4e-7 of the
#: size; this band is 7 times that: 33 um on the 33 m Intelsat model, far below any cell (the
#: smallest there: 0.8 mm, the 0.1 m panel edges at level 7)
EDGE_TOLERANCE = 1e-6
#: point-edge pairs per vectorised step (bounds the temporaries to ~100 MB at level 7)
PAIR_POINTS = 1 << 21


def centroid_barycentrics(level: int) -> np.ndarray:
    """Barycentric weights (4^level, 3) of the centroids of the sub-triangles that ``level``
    rounds of midpoint subdivision cut a triangle into (every sub-triangle has area A / 4^level).

    Built by subdividing the corner triangle (identity matrix) recursively.
    """
    tris = np.eye(3)[None]  # (n, 3 corners, 3 barycentric weights)
    for _ in range(level):
        a, b, c = tris[:, 0], tris[:, 1], tris[:, 2]
        ab, bc, ca = (a + b) / 2, (b + c) / 2, (c + a) / 2
        tris = np.concatenate(
            [
                np.stack([a, ab, ca], axis=1),
                np.stack([ab, b, bc], axis=1),
                np.stack([ca, bc, c], axis=1),
                np.stack([ab, bc, ca], axis=1),
            ]
        )
    return tris.mean(axis=1)


def unit_normals(tris: np.ndarray) -> np.ndarray:
    """Outward unit normals (..., 3) of triangles (..., 3, 3) (counter-clockwise = outward)."""
    n = np.cross(tris[..., 1, :] - tris[..., 0, :], tris[..., 2, :] - tris[..., 0, :])
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def turn(v: np.ndarray, axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rodrigues: vectors v (n, ..., 3) turned by angle (n,) rad about the unit axis (3,)."""
    shape = (len(angle),) + (1,) * (v.ndim - 1)
    c, s = np.cos(angle).reshape(shape), np.sin(angle).reshape(shape)
    along = (v @ axis)[..., None] * axis
    return v * c + np.cross(axis, v) * s + along * (1 - c)


@dataclass(frozen=True)
class Tracker:
    """A sun-tracking part, body frame: it turns about ``axis`` through ``pivot`` so that
    ``normal`` (perpendicular to the axis) points at the sun's projection on the plane normal to
    the axis, the angle clipped to ``limits`` (rad) when given."""

    triangles: np.ndarray  # indices of its triangles in the model's triangle list
    pivot: np.ndarray
    axis: np.ndarray
    normal: np.ndarray
    limits: tuple[float, float] | None

    def angles(self, sun: np.ndarray) -> np.ndarray:
        """Turn angles (n,) rad for sun vectors (n, 3)."""
        side = np.cross(self.axis, self.normal)  # normal turned by +90 degrees
        angle = np.arctan2(sun @ side, sun @ self.normal)
        if self.limits is not None:
            angle = np.clip(angle, *self.limits)
        return angle


def trackers_of(model: object, tri_component: np.ndarray, tracking: bool) -> list[Tracker]:
    """The tracking parts of a model (``Model`` of :mod:`.model`: components with rotation,
    position and tracking axis/normal/limits), in the body frame."""
    if not tracking:
        return []
    out = []
    for k, comp in enumerate(model.components):  # type: ignore[attr-defined]
        if comp.tracking_axis is None:
            continue
        axis = comp.rotation @ comp.tracking_axis
        normal = comp.rotation @ comp.tracking_normal
        out.append(
            Tracker(
                np.flatnonzero(tri_component == k),
                np.asarray(comp.position, dtype=np.float64),
                axis / np.linalg.norm(axis),
                normal / np.linalg.norm(normal),
                comp.tracking_limits,
            )
        )
    return out


def turned_triangles(rest: np.ndarray, trackers: Sequence[Tracker], sun: np.ndarray) -> np.ndarray:
    """Triangles (n, T, 3, 3) for sun vectors (n, 3): the rest pose with tracking parts turned."""
    out = np.broadcast_to(rest, (len(sun), *rest.shape)).copy()
    for t in trackers:
        rel = rest[t.triangles] - t.pivot
        out[:, t.triangles] = turn(rel[None], t.axis, t.angles(sun)) + t.pivot
    return out


def turned_normals(normals: np.ndarray, trackers: Sequence[Tracker], sun: np.ndarray) -> np.ndarray:
    """Triangle normals (n, T, 3) for sun vectors (n, 3), tracking parts turned."""
    out = np.broadcast_to(normals, (len(sun), *normals.shape)).copy()
    for t in trackers:
        out[:, t.triangles] = turn(normals[t.triangles][None], t.axis, t.angles(sun))
    return out


def body_triangles(model: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A model's triangles in the body frame at rest (T, 3, 3), with the face (T,) and the
    component (T,) of each: a component point p is at R p + t."""
    tris, face, comp = [], [], []
    for i, f in enumerate(model.faces):  # type: ignore[attr-defined]
        c = model.components[f.component]  # type: ignore[attr-defined]
        tris.append(np.einsum("ij,tvj->tvi", c.rotation, f.triangles) + c.position)
        face += [i] * len(f.triangles)
        comp += [f.component] * len(f.triangles)
    return np.concatenate(tris), np.array(face), np.array(comp)


def open_faces(
    rest: np.ndarray, tri_face: np.ndarray, n_faces: int, trackers: Sequence[Tracker]
) -> list[int]:
    """Faces that nothing can shadow: planar, with the whole rest of the model on or behind
    their plane (a ray leaving the face towards a sun it faces runs through empty space).

    A vertex of a tracking part sweeps a circle about the part's axis: its greatest height over
    a plane of unit normal m is the centre's height plus radius x sqrt(1 - (m . axis)^2). A face
    on a tracking part keeps its plane only when its normal is the axis.
    """
    size = float(np.linalg.norm(np.ptp(rest.reshape(-1, 3), axis=0))) or 1.0
    normals = unit_normals(rest)
    moving = np.full(len(rest), -1)
    for k, t in enumerate(trackers):
        moving[t.triangles] = k
    out = []
    for f in range(n_faces):
        own = tri_face == f
        m = normals[own][0]
        if not np.allclose(normals[own], m, rtol=0, atol=1e-9):
            continue
        p = rest[own][0, 0]
        mine = set(moving[own].tolist()) - {-1}
        if any(abs(abs(m @ trackers[k].axis) - 1) > 1e-9 for k in mine):
            continue
        highest = -np.inf
        for k in set(moving[~own].tolist()):
            verts = rest[~own & (moving == k)].reshape(-1, 3)
            if k == -1 or k in mine:  # still, or turning rigidly with the face about its normal
                h = (verts - p) @ m
            else:
                t = trackers[k]
                along = (verts - t.pivot) @ t.axis
                centre = t.pivot + along[:, None] * t.axis
                radius = np.linalg.norm(verts - centre, axis=1)
                h = (centre - p) @ m + radius * np.sqrt(max(0.0, 1 - (m @ t.axis) ** 2))
            highest = max(highest, float(h.max(initial=-np.inf)))
        if highest <= 1e-9 * size:
            out.append(f)
    return out


def _clip_and_project(
    occ: np.ndarray,
    origin: np.ndarray,
    n: np.ndarray,
    e1: np.ndarray,
    e2: np.ndarray,
    s: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Shadow polygons of triangles ``occ`` (M, 3, 3), each on its own plane through ``origin``
    (M, 3) with unit normal ``n`` (M, 3) and 2-D frame ``e1``, ``e2`` (M, 3), for the sun ``s``
    (3,) (n . s > 0).

    Each triangle is clipped to the open half-space n . (x - origin) > 0 (Sutherland-Hodgman,
    one plane: at most 4 vertices) and projected along s onto the plane. Returns vertices
    (M, 6, 2) and a validity mask (M, 6): for edge i -> i+1, slot 2i holds vertex i if it is in
    front and slot 2i+1 the crossing point if the edge crosses the plane, so the valid slots, in
    order, go round the polygon.
    """
    h = np.einsum("mvk,mk->mv", occ - origin[:, None], n)  # (M, 3) heights over the plane
    front = h > 0
    pts = np.zeros((len(occ), 6, 3))
    valid = np.zeros((len(occ), 6), bool)
    for i in range(3):
        j = (i + 1) % 3
        pts[:, 2 * i] = occ[:, i]
        valid[:, 2 * i] = front[:, i]
        cross = front[:, i] != front[:, j]
        t = h[:, i] / np.where(cross, h[:, i] - h[:, j], 1.0)
        pts[:, 2 * i + 1] = occ[:, i] + t[:, None] * (occ[:, j] - occ[:, i])
        valid[:, 2 * i + 1] = cross
    rel = pts - origin[:, None]
    height = np.einsum("msk,mk->ms", rel, n)
    rel = rel - (height / (n @ s)[:, None])[..., None] * s  # along s onto the plane
    return np.stack(
        [np.einsum("msk,mk->ms", rel, e1), np.einsum("msk,mk->ms", rel, e2)], axis=-1
    ), valid


def _signed_distances(
    points: np.ndarray, poly: np.ndarray, valid: np.ndarray, min_area2: float
) -> np.ndarray:
    """Signed distances (M, K) of 2-D points (M, K, 2) from convex polygons (M, 6, 2) whose
    vertices are the valid slots (M, 6), in order: the largest signed distance to the lines of
    the edges (positive outside). Inside a convex polygon that is minus the distance to its
    boundary; outside it is at most the distance to the polygon (exact beside an edge, less
    near a corner), so "farther than the band" is never claimed wrongly. A polygon of twice its
    area below ``min_area2`` (an occluder seen edge-on) contains nothing: there the value is
    the distance to its line."""
    order = np.argsort(~valid, axis=1, kind="stable")  # valid slots first, in their order
    a = np.take_along_axis(poly, order[..., None], axis=1)  # edge m: a[m] -> a[m + 1 mod k]
    k = valid.sum(axis=1)
    slot = np.arange(6)[None]
    nxt = np.where(slot + 1 < k[:, None], slot + 1, 0)
    ab = np.take_along_axis(a, nxt[..., None], axis=1) - a
    length = np.linalg.norm(ab, axis=-1)
    edge_ok = (slot < k[:, None]) & (length > 0)  # (M, 6); a repeated vertex is no edge
    # twice the signed area (+: counter-clockwise), by the shoelace formula
    area2 = np.where(edge_ok, a[..., 0] * ab[..., 1] - a[..., 1] * ab[..., 0], 0.0).sum(axis=1)
    u = ab / np.where(edge_ok, length, 1.0)[..., None]
    d = points[:, :, None, :] - a[:, None]  # (M, K, 6, 2)
    right = u[:, None, :, 1] * d[..., 0] - u[:, None, :, 0] * d[..., 1]  # + right of the edge
    solid = (np.abs(area2) > min_area2) & (k >= 3)
    # outside is the right of every edge of a counter-clockwise polygon
    out = np.where(solid[:, None, None], right * np.sign(area2)[:, None, None], np.abs(right))
    return np.where(edge_ok[:, None], out, -np.inf).max(axis=2)


class Recaster:
    """Bounds [lo, hi] on every face's lit fraction for one sun vector (see the module doc).

    ``rest``: the file's ``model_triangles`` (T, 3, 3), ``tri_face`` (T,) their face indices,
    ``trackers`` the tracking parts (none when the run did not track), ``offset`` the ray offset
    of the definition (m, the file's ``illumination_ray_offset_m``).
    """

    def __init__(
        self,
        rest: np.ndarray,
        tri_face: np.ndarray,
        n_faces: int,
        trackers: Sequence[Tracker],
        convention: str,
        level: int,
        offset: float,
    ) -> None:
        self.rest = np.asarray(rest, dtype=np.float64)
        self.tri_face = np.asarray(tri_face, dtype=np.int64)
        self.n_faces = n_faces
        self.trackers = list(trackers)
        self.convention = convention
        self.level = 0 if convention == "lcas" else level
        self.offset = float(offset)
        pts = self.rest.reshape(-1, 3)
        self.size = float(np.linalg.norm(pts.max(axis=0) - pts.min(axis=0))) or 1.0
        self.bary = centroid_barycentrics(self.level)  # (K, 3)
        area = 0.5 * np.linalg.norm(
            np.cross(self.rest[:, 1] - self.rest[:, 0], self.rest[:, 2] - self.rest[:, 0]), axis=1
        )
        face_area = np.bincount(self.tri_face, weights=area, minlength=n_faces)
        self.tri_weight = area / face_area[self.tri_face]  # "area": share of its face

    def bounds(self, sun: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) per face (F,) for one unit sun vector (3,)."""
        s = np.asarray(sun, dtype=np.float64)
        tris = turned_triangles(self.rest, self.trackers, s[None])[0]
        normals = unit_normals(tris)
        dots = normals @ s
        facing = dots > GRAZING
        grazing = np.abs(dots) <= GRAZING
        K = len(self.bary)
        lit_sure = np.zeros(len(tris))
        undecided = np.zeros(len(tris))
        if facing.any():
            r = np.flatnonzero(facing)
            lit_sure[r], undecided[r] = self._receivers(tris, r, normals[r], s, dots[r])
        undecided[grazing] = K
        F = self.n_faces
        if self.convention == "lcas":
            n_facing = np.bincount(self.tri_face, weights=facing, minlength=F)
            n_graze = np.bincount(self.tri_face, weights=grazing, minlength=F)
            sure = np.bincount(self.tri_face, weights=lit_sure, minlength=F)
            open_ = np.bincount(self.tri_face, weights=undecided * facing, minlength=F)
            denom = np.maximum(n_facing, 1)
            lo = np.where(n_facing > 0, sure / denom, 0.0)
            hi = np.where(n_facing > 0, (sure + open_) / denom, 0.0)
            # a grazing triangle may count as facing or not: the ratio is then open
            return np.where(n_graze > 0, 0.0, lo), np.where(n_graze > 0, 1.0, hi)
        w = self.tri_weight / K
        lo = np.bincount(self.tri_face, weights=w * lit_sure, minlength=F)
        hi = lo + np.bincount(self.tri_face, weights=w * undecided, minlength=F)
        return lo, hi

    def _receivers(
        self, tris: np.ndarray, r: np.ndarray, n: np.ndarray, s: np.ndarray, dots: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(lit beyond doubt, undecided) counts (R,) among the K points of each receiving
        triangle r (R,) with normals n (R, 3) facing the sun s (n . s = dots > 0)."""
        tri = tris[r]
        v0 = tri[:, 0]
        e1 = tri[:, 1] - v0
        e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
        e2 = np.cross(n, e1)
        # the points, in each plane's 2-D frame (R, K, 2); the definition's rays start
        # ``offset`` off the surface along n, which the 2-D frame does not see
        rel = np.einsum("kc,rci->rki", self.bary, tri) - v0[:, None]
        points = np.stack([np.einsum("rki,ri->rk", rel, e) for e in (e1, e2)], axis=-1)
        band = EDGE_TOLERANCE * self.size / dots  # (R,) in the receiving plane
        pr, po = self._candidates(tris, r, s, band)
        poly, valid = _clip_and_project(
            tris[po], v0[pr] + self.offset * n[pr], n[pr], e1[pr], e2[pr], s
        )
        # only polygons reaching their receiver's points (grown by the band) can matter
        lo = points.min(axis=1)[pr] - band[pr, None]
        hi = points.max(axis=1)[pr] + band[pr, None]
        top = np.where(valid[..., None], poly, -np.inf).max(axis=1)  # (M, 2)
        bottom = np.where(valid[..., None], poly, np.inf).min(axis=1)
        keep = (valid.sum(axis=1) >= 3) & ((top >= lo) & (bottom <= hi)).all(axis=1)
        pr, poly, valid = pr[keep], poly[keep], valid[keep]
        K = points.shape[1]
        dist = np.full((len(r), K), np.inf)
        min_area2 = 1e-12 * self.size * self.size
        step = max(1, PAIR_POINTS // (6 * K))  # (receiver, polygon) pairs per step
        for a in range(0, len(pr), step):
            i = pr[a : a + step]
            d = _signed_distances(points[i], poly[a : a + step], valid[a : a + step], min_area2)
            np.minimum.at(dist, i, d)
        lit = (dist > band[:, None]).sum(axis=1)
        undecided = (np.abs(dist) <= band[:, None]).sum(axis=1)
        return lit, undecided

    def _candidates(
        self, tris: np.ndarray, r: np.ndarray, s: np.ndarray, band: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(receiver position, triangle) pairs that can shadow: seen from the sun, the two
        bounding boxes overlap (the receiver's grown by its band: the view from the sun does
        not stretch distances in the receiving plane), and part of the triangle is sunward of
        part of the receiver. A point x shadows a point p only if x - p is along s, so the pairs
        left out cast nothing on the receiver's points or their bands."""
        u = np.cross(s, [1.0, 0.0, 0.0] if abs(s[0]) < 0.9 else [0.0, 1.0, 0.0])
        u /= np.linalg.norm(u)
        view = tris @ np.stack([u, np.cross(s, u)], axis=1)  # (T, 3, 2) across the sun
        vmin, vmax = view.min(axis=1), view.max(axis=1)
        depth = tris @ s  # towards the sun
        rmin, rmax = vmin[r] - band[:, None], vmax[r] + band[:, None]
        overlap = ((vmax[None] >= rmin[:, None]) & (vmin[None] <= rmax[:, None])).all(axis=2)
        sunward = depth.max(axis=1)[None] > depth[r].min(axis=1)[:, None]
        cand = overlap & sunward
        cand[np.arange(len(r)), r] = False  # a triangle lies in its own plane
        return np.nonzero(cand)
