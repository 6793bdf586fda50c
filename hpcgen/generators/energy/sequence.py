"""Trajectories: a base pattern evolved by ``n_steps - 1`` perturbation steps.

Bookkeeping of the total energy (the source workflow's rules):

- each conserving perturbation (rotation, blur, translation, noise) ends by renormalising to the
  declared total ``ref``: frame 0's total, times the scale factors applied since;
- scaling (off unless ``scaling_max`` > 0) multiplies the map and ``ref`` by the drawn factor;
- if ``ref`` then differs from the initial total by more than ``drift_tolerance`` (5 %), the frame
  is rescaled to the initial total (from its exact float64 sum), ``ref`` is reset and the step is
  flagged in ``rescaled``.

``ref`` is the declared total, not the measured total of the previous frame: renormalising to the
measured total would let each step's float32 rounding (about 1e-7) random-walk over a trajectory
(up to 1.8e-6 after 1000 steps, measured), while this way every stored frame stays within a few
float32 roundings (6e-8 measured) of the total that ``hpcgen verify`` recomputes from the stored
scale factors and rescale flags (frame 0's H * W, times the factors since the last rescale). The
drift rule decides on the declared total too, so the flags follow from the stored factors alone.

The random draws live outside: per-step angles, shifts and factors come from ``sample()`` (they are
stored in the file), pixel noise from the trajectory's own generator, in step order.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from hpcgen.generators.energy import kernels, maps, normal
from hpcgen.generators.energy.params import Preset


@dataclass
class Trajectory:
    """frames (T, H, W) float32; entropy (T,) nats; rescaled (T,) bool (drift > tolerance)."""

    frames: np.ndarray
    entropy: np.ndarray
    rescaled: np.ndarray


def draw_noise(
    rng: np.random.Generator,
    shape: tuple[int, ...],
    preset: Preset,
    out: np.ndarray | None = None,
) -> Any:
    """Standard normal float32 pixel noise for one step (None when the preset has no noise),
    into ``out`` when given: ``rng.standard_normal(shape, dtype=np.float32)``'s values, drawn
    faster (normal.standard_normal_f32)."""
    if preset.noise_sigma <= 0:
        return None
    if out is None:
        out = np.empty(shape, np.float32)
    return normal.standard_normal_f32(rng, out)


def evolve(
    base: np.ndarray,
    angles_deg: np.ndarray,
    shifts: np.ndarray,
    scales: np.ndarray,
    rng: np.random.Generator,
    preset: Preset,
    drift_tolerance: float,
    method: str = "fast",
    stepper: kernels.FastStepper | None = None,
    out: np.ndarray | None = None,
) -> Trajectory:
    """Evolve ``base`` (H, W) through len(angles_deg) frames (entry 0 of the per-step arrays
    belongs to frame 0 and is not used). ``method``: "fast" (numba + FFT) or "reference" (plain
    scipy.ndimage). Pass a ``stepper`` to reuse buffers across trajectories of one shape, and
    ``out`` (T, H, W) float32 to write the frames in place."""
    n_steps = len(angles_deg)
    shape = base.shape
    frames = np.empty((n_steps, *shape), np.float32) if out is None else out
    rescaled = np.zeros(n_steps, bool)
    ent = np.empty(n_steps)
    frames[0] = base
    ent[0] = float(maps.entropy(frames[0]))
    ref0 = float(base.sum(dtype=np.float64))
    ref = ref0
    if method == "fast" and stepper is None:
        stepper = kernels.FastStepper(shape, preset.blur_sigma)
    rotate = preset.rotation_max_deg > 0
    noise_buffer = np.empty(shape, np.float32)
    for t in range(1, n_steps):
        noise = draw_noise(rng, shape, preset, noise_buffer)
        amp = preset.noise_sigma * ref / base.size  # sigma * mean energy
        angle = float(angles_deg[t]) if rotate else None
        shift = (int(shifts[t, 0]), int(shifts[t, 1]))
        x = frames[t]
        if method == "fast":
            assert stepper is not None
            stepper.step(frames[t - 1], angle, shift, noise, amp, ref, out=x)
        elif method == "reference":
            x[...] = kernels.step_reference(
                frames[t - 1], angle, preset.blur_sigma, shift, noise, amp, ref
            )
        else:
            raise ValueError(f"unknown method {method!r}")
        if scales[t] != 1.0:
            x *= np.float32(scales[t])
            ref *= float(np.float32(scales[t]))
        # the entropy before the drift rule: rescaling the whole map leaves it unchanged
        if method == "fast":
            ent[t] = kernels.total_and_entropy(x)[1]  # its total has float32 row sums: unused
        else:
            ent[t] = float(maps.entropy(x))
        if abs(ref / ref0 - 1.0) > drift_tolerance:
            x *= np.float32(ref0 / float(x.sum(dtype=np.float64)))
            ref = ref0
            rescaled[t] = True
    return Trajectory(frames, ent, rescaled)


def evolve_batch(
    bases: np.ndarray,
    angles_deg: np.ndarray,
    shifts: np.ndarray,
    scales: np.ndarray,
    rngs: list[np.random.Generator],
    preset: Preset,
    drift_tolerance: float,
    xp: ModuleType,
    ndimage: ModuleType,
) -> tuple[Any, Any, Any]:
    """The same evolution for a batch of trajectories at once, written against an array module:
    cupy + cupyx.scipy.ndimage on a GPU, numpy + scipy.ndimage on the CPU (how it is tested).

    bases (B, H, W) host float32; per-step arrays (B, T[, 2]) host; ``rngs`` one generator per
    trajectory, drawn on the host in the same order as :func:`evolve`. Returns device arrays
    frames (B, T, H, W) float32, entropy (B, T) float64, rescaled (B, T) bool.
    """
    n_traj, n_steps = angles_deg.shape
    h, w = bases.shape[-2:]
    f32 = xp.float32
    frames = xp.empty((n_traj, n_steps, h, w), f32)
    rescaled = np.zeros((n_traj, n_steps), bool)
    x = xp.asarray(bases, dtype=f32)
    frames[:, 0] = x
    ref0 = xp.sum(x, axis=(1, 2), dtype=xp.float64)
    ref = ref0.copy()
    transfer = (
        xp.asarray(kernels.gaussian_transfer((h, w), preset.blur_sigma))
        if preset.blur_sigma > 0
        else None
    )

    def renorm(a: Any, target: Any) -> Any:
        factor = target / xp.sum(a, axis=(1, 2), dtype=xp.float64)
        return (a * factor.astype(f32)[:, None, None]).astype(f32)

    for t in range(1, n_steps):
        noise_host = [draw_noise(g, (h, w), preset) for g in rngs]
        if preset.rotation_max_deg > 0:
            x = xp.stack(
                [
                    ndimage.rotate(
                        x[b],
                        float(angles_deg[b, t]),
                        reshape=False,
                        order=3,
                        mode="grid-wrap",
                        output=f32,
                    )
                    for b in range(n_traj)
                ]
            )
            x = renorm(xp.maximum(x, 0), ref)
        if transfer is not None:
            spec = xp.fft.rfft2(x) * transfer
            x = renorm(xp.maximum(xp.fft.irfft2(spec, s=(h, w)).astype(f32), 0), ref)
        x = xp.stack(
            [xp.roll(x[b], tuple(int(s) for s in shifts[b, t]), axis=(0, 1)) for b in range(n_traj)]
        )
        if preset.noise_sigma > 0:
            noise = xp.asarray(np.stack(noise_host))
            amp = (preset.noise_sigma * ref / (h * w)).astype(f32)
            x = renorm(xp.maximum(x + amp[:, None, None] * noise, 0), ref)
        factor = xp.asarray(scales[:, t], dtype=f32)
        x = x * factor[:, None, None]
        ref = ref * factor.astype(xp.float64)  # the declared total, as in evolve
        drift = xp.abs(ref / ref0 - 1.0) > drift_tolerance
        total = xp.sum(x, axis=(1, 2), dtype=xp.float64)
        x = xp.where(drift[:, None, None], x * (ref0 / total).astype(f32)[:, None, None], x)
        ref = xp.where(drift, ref0, ref)
        rescaled[:, t] = _to_host(drift)
        frames[:, t] = x
    return frames, entropy_xp(frames, xp), rescaled


def entropy_xp(e: Any, xp: ModuleType) -> Any:
    """maps.entropy for numpy or cupy arrays."""
    s = xp.sum(e, axis=(-2, -1), dtype=xp.float64)
    elne = xp.sum(e * xp.log(xp.maximum(e, 1e-30)), axis=(-2, -1), dtype=xp.float64)
    return xp.log(s) - elne / s


def _to_host(a: Any) -> np.ndarray:
    return a.get() if hasattr(a, "get") else np.asarray(a)
