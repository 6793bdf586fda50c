"""Standard normal float32 pixel noise: numpy's own draws, faster (docs/benchmarks.md, "energy").

``rng.standard_normal(dtype=np.float32)`` spends most of its time calling the bit generator
through a function pointer once per 32-bit word. :func:`standard_normal_f32` takes the words in
bulk (``bit_generator.random_raw``) and runs the same ziggurat in a compiled loop, then hands
back the words it did not use. For a PCG64 generator the samples and the generator's state
afterwards are bit for bit what numpy gives (tests compare them), so trajectories, files and
their determinism across MPI ranks are unchanged; other bit generators take numpy's own path.

The ziggurat (Marsaglia & Tsang 2000) with numpy's float32 conventions: 256 layers of equal area
``V`` under f(x) = exp(-x^2 / 2), the base layer including the tail beyond ``R``. Each 32-bit word
w gives layer ``w & 0xff``, sign bit ``(w >> 8) & 1`` and 23-bit magnitude ``w >> 9``; a sample
inside the layer's rectangle core (~99 %) is returned at once, the rest go through the wedge test
(one more word) or, in layer 0, Marsaglia's tail method (two more words per try).
"""

from __future__ import annotations

import math
import sys

import numba as nb
import numpy as np

from hpcgen.kernel_cache import njit

#: right edge of the ziggurat's base layer (numpy's constant)
R = 3.6541528853610087963519472518
#: area of each layer: the base rectangle R f(R) plus the tail integral of f beyond R
V = R * math.exp(-0.5 * R * R) + math.sqrt(0.5 * math.pi) * math.erfc(R / math.sqrt(2.0))
#: 64-bit outputs drawn beyond one per two samples: the wedge and tail tests take ~1.3 % extra
#: words on average, so 1/16 (6 %) more plus a constant rarely runs short (then another round)
SPARE_FRACTION = 1 / 16
SPARE_OUTPUTS = 64


def ziggurat_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ki int32, wi float32, fi float32), 256 entries each, in numpy's float32 layout.

    Layer edges x_255 = R > x_254 > ... > x_1 follow from equal areas,
    x_{i-1} = sqrt(-2 ln(V / x_i + f(x_i))); wi[i] = x_i / 2^23 scales a 23-bit magnitude to the
    layer width, ki[i] = round(2^23 x_{i-1} / x_i) bounds the magnitudes inside the core (ki[1] = 0:
    the top layer has none), fi[i] = f(x_i). Layer 0 stands for the base: width V / f(R), core
    fraction R f(R) / V, fi[0] = f(0) = 1.
    """
    scale = 2.0**23
    x = np.zeros(256)
    x[255] = R
    for i in range(255, 1, -1):
        x[i - 1] = math.sqrt(-2.0 * math.log(V / x[i] + math.exp(-0.5 * x[i] ** 2)))
    ki = np.empty(256, np.int32)
    ki[0] = round(R * math.exp(-0.5 * R * R) / V * scale)
    ki[1] = 0
    ki[2:] = np.round(x[1:255] / x[2:] * scale).astype(np.int32)
    wi = (x / scale).astype(np.float32)
    wi[0] = np.float32(V / math.exp(-0.5 * R * R) / scale)
    fi = np.exp(-0.5 * x * x).astype(np.float32)  # fi[0] = f(0) = 1
    return ki, wi, fi


_KI, _WI, _FI = ziggurat_tables()
_R32 = np.float32(R)
_INV_R32 = np.float32(1.0 / R)


@nb.njit(inline="always")
def _unit(w: np.int32) -> np.float32:
    """Uniform float32 in [0, 1) from the top 24 bits of a word (numpy's next_float)."""
    return np.float32((w >> np.int32(8)) & np.int32(0xFFFFFF)) * np.float32(1.0 / 16777216.0)


@njit(cache=True, nogil=True)
def _ziggurat_fill(
    words: np.ndarray, out: np.ndarray, ki: np.ndarray, wi: np.ndarray, fi: np.ndarray
) -> tuple[int, int]:
    """Fill the 1-D float32 ``out`` from the 32-bit ``words`` (int32 view, stream order) as numpy's
    float32 ziggurat does. Returns (samples written, words used); stops early, between samples,
    when a sample might need more words than are left.

    Integer arithmetic in int32 (the magnitude has 23 bits) keeps the conversions cheap; the sign
    is applied as a factor +-1 (exact) because a branch on a random bit mispredicts half the time.
    Not fastmath: the wedge and tail tests must round as numpy's C code does."""
    n = out.shape[0]
    nw = words.shape[0]
    pos = 0
    i = 0
    while i < n and pos + 3 <= nw:
        start = pos
        r = words[pos]
        pos += 1
        idx = r & np.int32(0xFF)
        rabs = (r >> np.int32(9)) & np.int32(0x7FFFFF)
        sign = np.float32(1.0) - np.float32(2.0) * np.float32((r >> np.int32(8)) & np.int32(1))
        x = np.float32(rabs) * wi[idx] * sign
        if rabs < ki[idx]:  # inside the layer's core rectangle
            out[i] = x
            i += 1
        elif idx == 0:  # base layer beyond the core: the tail x > R, drawn by Marsaglia's method
            while True:
                if pos + 2 > nw:
                    return i, start  # out of words mid-sample: redo this sample next round
                xx = _INV_R32 * np.float32(-math.log1p(-_unit(words[pos])))
                yy = np.float32(-math.log1p(-_unit(words[pos + 1])))
                pos += 2
                if yy + yy > xx * xx:
                    tail_sign = np.float32(1 - 2 * ((rabs >> np.int32(8)) & np.int32(1)))
                    out[i] = (_R32 + xx) * tail_sign
                    i += 1
                    break
        else:  # wedge between this layer's core and the curve: accept under f
            y = (fi[idx - 1] - fi[idx]) * _unit(words[pos]) + fi[idx]  # float32, as numpy
            pos += 1
            if y < math.exp(-0.5 * np.float64(x) * np.float64(x)):  # f(x) in float64, as numpy
                out[i] = x
                i += 1
    return i, pos


def standard_normal_f32(rng: np.random.Generator, out: np.ndarray) -> np.ndarray:
    """Fill the C-contiguous float32 array ``out`` with N(0, 1) samples from ``rng`` and return it.

    For a PCG64 generator: the values, and the generator's state afterwards, are those of
    ``rng.standard_normal(dtype=np.float32, out=out)``. numpy serves 32-bit words from 64-bit
    outputs low half first and keeps an unused high half for the next call (``has_uint32``); here
    that half is re-drawn by stepping the generator back one output, and an odd final word is left
    buffered the same way. Other bit generators: numpy's own call.
    """
    bg = rng.bit_generator
    if type(bg) is not np.random.PCG64 or sys.byteorder != "little":
        return rng.standard_normal(dtype=np.float32, out=out)
    flat = out.reshape(-1)  # a view (C-contiguous): the kernel writes into out
    done = 0
    spare = SPARE_OUTPUTS
    while done < flat.size:
        skip = bg.state["has_uint32"]
        if skip:
            bg.advance(-1)  # the buffered word is the high half of the previous output: redraw it
        left = flat.size - done
        # two samples per output, plus spares, plus one: a sample's first test needs 3 words
        n_raw = (left + 1) // 2 + int(left * SPARE_FRACTION) + spare + 1
        raw = bg.random_raw(n_raw)
        # little-endian: the int32 view lists each output's low half, then its high half
        written, used = _ziggurat_fill(raw.view(np.int32)[skip:], flat[done:], _KI, _WI, _FI)
        done += written
        if written == 0:  # one sample's tail tests needed more words than there were: more next
            spare = 2 * spare + 2
        consumed = skip + used  # 32-bit words of raw taken, counting a re-drawn low half
        bg.advance((consumed + 1) // 2 - n_raw)  # give back the unused outputs (clears the buffer)
        if consumed % 2:  # numpy would keep the last output's high half for the next call
            state = bg.state
            state["has_uint32"] = 1
            state["uinteger"] = int(raw[consumed // 2] >> np.uint64(32))
            bg.state = state
    return out
