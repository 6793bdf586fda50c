"""The image kernel (numba): one image per loop iteration, its own random stream per image.

Random numbers: every image gets a 64-bit seed drawn from ``chunk.rng("atoms")`` (PCG64) and runs
a SplitMix64 stream from it inside the kernel (Steele, Lea & Flood 2014; the generator behind
Java's SplittableRandom, passes BigCrush). Images therefore depend only on (run seed, chunk,
position in the chunk), and drawing a variable number of numbers per image (retries, blob growth)
costs nothing to pre-plan. Uniforms take the top 53 bits; ``randint(n)`` scales a uniform (bias
below 2**-40 for the n < 4096 used here).

Per image: draw the object count; per object draw a family (kind / sub-kind), a size group, a
template and a colour 1-9, then try up to ``max_attempts`` random positions (blobs: random seed
cells, grown anew each attempt). A placed object paints its colour into ``images``, its index
(1, 2, ...) into ``masks`` and its kind into ``kinds``; an object that never fits is dropped.
"""

from __future__ import annotations

import numpy as np

from hpcgen.generators.atoms.params import EMPTY_KIND, N_COLOURS, AtomsParams
from hpcgen.generators.atoms.shapes import build_catalogue
from hpcgen.kernel_cache import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_TWO_M53 = 1.0 / 9007199254740992.0


@njit(cache=True, inline="always")
def _next_u64(state: np.ndarray) -> np.uint64:
    s = state[0] + _GOLDEN
    state[0] = s
    z = (s ^ (s >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@njit(cache=True, inline="always")
def _uniform(state: np.ndarray) -> float:
    return float(_next_u64(state) >> _S11) * _TWO_M53


@njit(cache=True, inline="always")
def _randint(state: np.ndarray, n: int) -> int:
    """Uniform integer in [0, n), n >= 1."""
    k = int(_uniform(state) * n)
    return k if k < n else n - 1


@njit(cache=True, nogil=True)
def _grow_blob(state, size, g, blocked, inblob, seen, stamp, oy, ox, fy, fx, fw, weight) -> bool:
    """Grow a 4-connected blob of ``size`` cells from a random seed cell into free cells.

    Each step adds one frontier cell (a free 4-neighbour of the blob), drawn with weight
    ``weight`` if it has >= 2 of its 4 neighbours in the blob, else 1. Fails when the seed cell is
    taken or the frontier runs out. Cells go to oy/ox[:size]. ``stamp`` is a 1-element counter
    that marks blob and frontier membership in ``inblob``/``seen`` without clearing them.
    """
    y = _randint(state, g)
    x = _randint(state, g)
    if blocked[y, x]:
        return False
    stamp[0] += 1
    mine = stamp[0]
    inblob[y, x] = mine
    oy[0] = y
    ox[0] = x
    n = 1
    while n < size:
        stamp[0] += 1
        step = stamp[0]
        nf = 0
        total = 0.0
        for k in range(n):
            for d in range(4):
                yy = oy[k] + (d == 0) - (d == 1)
                xx = ox[k] + (d == 2) - (d == 3)
                if yy < 0 or yy >= g or xx < 0 or xx >= g:
                    continue
                if blocked[yy, xx] or inblob[yy, xx] == mine or seen[yy, xx] == step:
                    continue
                seen[yy, xx] = step
                nb = 0
                for e in range(4):
                    ny = yy + (e == 0) - (e == 1)
                    nx = xx + (e == 2) - (e == 3)
                    if 0 <= ny < g and 0 <= nx < g and inblob[ny, nx] == mine:
                        nb += 1
                w = weight if nb >= 2 else 1.0
                fy[nf] = yy
                fx[nf] = xx
                fw[nf] = w
                total += w
                nf += 1
        if nf == 0:
            return False
        u = _uniform(state) * total
        j = 0
        acc = fw[0]
        while acc <= u and j < nf - 1:
            j += 1
            acc += fw[j]
        inblob[fy[j], fx[j]] = mine
        oy[n] = fy[j]
        ox[n] = fx[j]
        n += 1
    return True


@njit(cache=True, nogil=True)
def render(
    seeds,
    g,
    min_objects,
    max_objects,
    max_attempts,
    separation,
    blob_weight,
    family_cum,
    family_kind,
    family_group,
    group_size,
    group_tpl,
    tpl_h,
    tpl_w,
    tpl_cell,
    cell_y,
    cell_x,
    images,
    masks,
    labels,
    kinds,
) -> None:
    """Fill images/masks (n, g, g), labels (n,) and kinds (n, max_objects) for n seeds.

    ``images``, ``masks`` must be zero and ``kinds`` EMPTY_KIND on entry. Tables: see
    :class:`hpcgen.generators.atoms.shapes.Catalogue`.
    """
    n_img = seeds.shape[0]
    n_fam = family_cum.shape[0]
    max_cells = 0
    for s in range(group_size.shape[0]):
        max_cells = max(max_cells, group_size[s])
    state = np.zeros(1, np.uint64)
    stamp = np.zeros(1, np.int64)
    blocked = np.zeros((g, g), np.uint8)
    inblob = np.zeros((g, g), np.int64)
    seen = np.zeros((g, g), np.int64)
    oy = np.empty(max_cells, np.int64)
    ox = np.empty(max_cells, np.int64)
    fy = np.empty(4 * max_cells, np.int64)
    fx = np.empty(4 * max_cells, np.int64)
    fw = np.empty(4 * max_cells, np.float64)
    for i in range(n_img):
        state[0] = seeds[i]
        blocked[:, :] = 0
        n_target = min_objects + _randint(state, max_objects - min_objects + 1)
        placed = 0
        for _ in range(n_target):
            u = _uniform(state)
            f = 0
            while f < n_fam - 1 and u >= family_cum[f]:
                f += 1
            grp = family_group[f] + _randint(state, family_group[f + 1] - family_group[f])
            size = group_size[grp]
            n_tpl = group_tpl[grp + 1] - group_tpl[grp]
            t = group_tpl[grp] + _randint(state, n_tpl) if n_tpl > 0 else -1
            colour = 1 + _randint(state, N_COLOURS)
            ok = False
            for _attempt in range(max_attempts):
                if t < 0:
                    ok = _grow_blob(
                        state,
                        size,
                        g,
                        blocked,
                        inblob,
                        seen,
                        stamp,
                        oy,
                        ox,
                        fy,
                        fx,
                        fw,
                        blob_weight,
                    )
                else:
                    y0 = _randint(state, g - tpl_h[t] + 1)
                    x0 = _randint(state, g - tpl_w[t] + 1)
                    ok = True
                    k = 0
                    for c in range(tpl_cell[t], tpl_cell[t + 1]):
                        y = y0 + cell_y[c]
                        x = x0 + cell_x[c]
                        if blocked[y, x]:
                            ok = False
                            break
                        oy[k] = y
                        ox[k] = x
                        k += 1
                if ok:
                    break
            if not ok:
                continue  # the image keeps what could be placed
            kinds[i, placed] = family_kind[f]
            placed += 1
            for c in range(size):
                y = oy[c]
                x = ox[c]
                images[i, y, x] = colour
                masks[i, y, x] = placed
                if separation == 0:
                    blocked[y, x] = 1
                else:  # block the 8-neighbourhood too: later objects cannot touch this one
                    for yy in range(max(y - 1, 0), min(y + 2, g)):
                        for xx in range(max(x - 1, 0), min(x + 2, g)):
                            blocked[yy, xx] = 1
        labels[i] = placed


def render_images(params: AtomsParams, seeds: np.ndarray) -> dict[str, np.ndarray]:
    """Images, labels, masks, kinds for one seed per image (uint64 array)."""
    n, g = len(seeds), params.grid_size
    out = {
        "images": np.zeros((n, g, g), np.uint8),
        "labels": np.zeros(n, np.uint8),
        "masks": np.zeros((n, g, g), np.uint8),
        "kinds": np.full((n, params.max_objects), EMPTY_KIND, np.uint8),
    }
    render(
        np.ascontiguousarray(seeds, dtype=np.uint64),
        g,
        params.min_objects,
        params.max_objects,
        params.max_attempts,
        params.separation,
        float(params.blob_weight),
        *build_catalogue(params).kernel_tables(),
        out["images"],
        out["masks"],
        out["labels"],
        out["kinds"],
    )
    return out
