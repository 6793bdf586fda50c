"""The energy generator: sequences of 2-D energy maps for next-frame surrogates.

One run = one domain preset = one file in The Well's layout (see :mod:`.well`). A sample is
one trajectory: a base pattern (frame 0) evolved by ``n_steps - 1`` perturbation steps (rotation,
thermal blur, translation, noise, optional scaling), energy renormalised after each perturbation.

Randomness: ``sample()`` draws, from the chunk's streams, the per-step rotation angles, shifts and
scaling factors (stored as The Well scalars), the shape parameters of the vortex and laminar
patterns (stored as per-trajectory scalars, see ``patterns.PATTERN_PARAMETERS``) and one 64-bit seed
per trajectory (stored as ``trajectory_seed``); ``compute()`` derives everything else from those
inputs -- the base pattern (from the stored shape parameters, or the turbulent and random pixels)
and the pixel noise come from ``np.random.Generator(PCG64(seed))``, drawn on the CPU in the same
order on every device. So the data depend only on (spec, chunk), never on the rank count.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hpcgen.generators.base import (
    CheckResult,
    Chunk,
    Device,
    Exporter,
    FieldSpec,
    FileView,
    Generator,
    StaticData,
    Verifier,
)
from hpcgen.generators.energy import kernels, patterns, well
from hpcgen.generators.energy.options import OPTIONS
from hpcgen.generators.energy.params import EnergyParams
from hpcgen.generators.energy.sequence import evolve, evolve_batch


class EnergyGenerator(Generator):
    name = "energy"
    Params = EnergyParams
    #: a 10 x 256 x 256 float32 trajectory is 2.6 MB: 8 per chunk is ~21 MB per collective write
    default_chunk_size: ClassVar[int] = 8
    cli_option_table = OPTIONS

    params: EnergyParams

    # --- contract ----------------------------------------------------------------------------
    def fields(self) -> list[FieldSpec]:
        return well.field_specs(self.params)

    def static_datasets(self) -> dict[str, StaticData]:
        return well.static_datasets(self.params)

    def root_attrs(self) -> dict[str, Any]:
        return well.root_attrs(self.params)

    def group_attrs(self, n_rows: int) -> dict[str, dict[str, Any]]:
        """Attributes of The Well's groups for a file of ``n_rows`` trajectories ("/": root).
        The engine creates missing groups (t1_fields, t2_fields) and sets these attributes."""
        return well.group_attrs(self.params, n_rows)

    def supports_device(self, kind: str) -> bool:
        if kind == "cpu":
            return True
        try:
            import cupy  # noqa: F401
            import cupyx.scipy.ndimage  # noqa: F401
        except ImportError:
            return False
        return True

    def sample(self, chunk: Chunk) -> dict[str, np.ndarray]:
        p = self.params
        pre = p.preset
        n, t = chunk.count, p.n_steps
        # streams keyed by the domain too: the five domains of one seed get different data
        angles = np.zeros((n, t), np.float32)
        if pre.rotation_max_deg > 0:
            r = pre.rotation_max_deg
            angles[:, 1:] = chunk.rng("rotation", p.domain).uniform(-r, r, (n, t - 1))
        shifts = np.zeros((n, t, 2), np.float32)
        if pre.translation_max_px > 0:
            m = pre.translation_max_px
            shifts[:, 1:] = chunk.rng("translation", p.domain).integers(-m, m + 1, (n, t - 1, 2))
        scales = np.ones((n, t), np.float32)
        if p.scaling_max > 0:
            s = p.scaling_max
            scales[:, 1:] = chunk.rng("scaling", p.domain).uniform(1 - s, 1 + s, (n, t - 1))
        seeds = chunk.rng("trajectory", p.domain).integers(0, 2**63, n, dtype=np.uint64)
        # a stream of its own: turbulent and random runs draw nothing here and keep their data
        if p.pattern_variation == "source":
            shape_params = patterns.source_parameters(pre.pattern, n)
        else:
            shape_params = patterns.draw_parameters(pre.pattern, n, chunk.rng("pattern", p.domain))
        return {
            well.SEED: seeds,
            "scalars/rotation_deg": angles,
            "scalars/shift_x": shifts[..., 0],
            "scalars/shift_y": shifts[..., 1],
            "scalars/scale_factor": scales,
            **{f"scalars/{k}": v for k, v in shape_params.items()},
        }

    def compute(
        self, inputs: Mapping[str, np.ndarray], chunk: Chunk, device: Device
    ) -> dict[str, np.ndarray]:
        p = self.params
        pre = p.preset
        seeds = np.asarray(inputs[well.SEED])
        angles = np.asarray(inputs["scalars/rotation_deg"], np.float64)
        shifts = np.stack(
            [np.asarray(inputs["scalars/shift_x"]), np.asarray(inputs["scalars/shift_y"])], -1
        ).astype(np.int64)
        scales = np.asarray(inputs["scalars/scale_factor"], np.float64)
        rngs = [np.random.Generator(np.random.PCG64(int(s))) for s in seeds]
        # the pattern from the stored (float32) shape parameters, so the file reproduces frame 0
        shape_params = {k: np.asarray(inputs[f"scalars/{k}"]) for k in well.pattern_scalars(p)}
        bases = np.stack(
            [
                patterns.base_pattern(
                    pre.pattern, p.shape, g, {k: v[i] for k, v in shape_params.items()}
                )
                for i, g in enumerate(rngs)
            ]
        )
        if device.kind == "gpu":
            import cupyx.scipy.ndimage as cndi

            frames, ent, rescaled = evolve_batch(
                bases, angles, shifts, scales, rngs, pre, p.drift_tolerance, device.xp, cndi
            )
            frames, ent = device.to_host(frames), device.to_host(ent)
        else:
            stepper = kernels.FastStepper(p.shape, pre.blur_sigma)
            frames = np.empty((len(seeds), p.n_steps, *p.shape), np.float32)
            ent = np.empty((len(seeds), p.n_steps))
            rescaled = np.empty((len(seeds), p.n_steps), bool)
            for i in range(len(seeds)):
                tr = evolve(
                    bases[i],
                    angles[i],
                    shifts[i],
                    scales[i],
                    rngs[i],
                    pre,
                    p.drift_tolerance,
                    stepper=stepper,
                    out=frames[i],
                )
                ent[i], rescaled[i] = tr.entropy, tr.rescaled
        return {
            well.ENERGY: frames.astype(np.float32, copy=False),
            "scalars/entropy": ent.astype(np.float32),
            "scalars/rescaled": rescaled.astype(np.float32),
        }

    def exporters(self) -> dict[str, Exporter]:
        from hpcgen.generators.energy.well_export import export_well_format

        return {"well": export_well_format}

    def verifier(self) -> Verifier:
        from hpcgen.generators.energy.checks import EnergyVerifier

        return EnergyVerifier(self.params)

    def file_checks(self, view: FileView) -> list[CheckResult]:
        """Checks on the whole file: The Well's layout, and whether its energy field is virtual."""
        from hpcgen.generators.energy.checks import layout_result, virtual_result

        return [layout_result(view), virtual_result(view)]

    def plot(self, view: FileView, out: Path, options: Mapping[str, Any]) -> None:
        from hpcgen.generators.energy.plot import plot_file

        plot_file(view, Path(out), options)
