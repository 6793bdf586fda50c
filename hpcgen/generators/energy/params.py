"""Parameters of the energy generator: a domain preset plus optional per-run overrides.

Energy maps are dimensionless: every base pattern is divided by its mean, so a map of H x W pixels
carries a total energy of H * W (mean 1 per pixel) and every conserving perturbation keeps it.
Lengths are in pixels, angles in degrees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hpcgen.generators.base import require

Domain = Literal[
    "plasma_physics",
    "fluid_dynamics",
    "astrophysics",
    "turbulent_radiative_layer",
    "active_matter",
]
Pattern = Literal["turbulent", "laminar", "vortex", "random"]
PatternVariation = Literal["per_trajectory", "source"]

DOMAINS: tuple[str, ...] = Domain.__args__
PATTERNS: tuple[str, ...] = Pattern.__args__
PATTERN_VARIATIONS: tuple[str, ...] = PatternVariation.__args__

#: translation bound of the source workflow: roll by up to +-5 pixels per axis and step
DEFAULT_TRANSLATION_PX = 5


@dataclass(frozen=True)
class Preset:
    """The physics of one domain: base pattern and per-step perturbation strengths.

    rotation_max_deg: each step rotates by an angle drawn uniformly in [-max, +max] degrees.
    noise_sigma: additive noise N(0, noise_sigma * mean energy), then clipped at 0.
    blur_sigma: Gaussian "thermal" blur standard deviation in pixels (0: no blur).
    translation_max_px: each step rolls by integers drawn uniformly in [-max, +max] per axis.
    """

    pattern: str
    rotation_max_deg: float
    noise_sigma: float
    blur_sigma: float
    translation_max_px: int


#: the five domains of the source workflow
PRESETS: dict[str, Preset] = {
    "plasma_physics": Preset("turbulent", 360.0, 0.15, 3.0, DEFAULT_TRANSLATION_PX),
    "fluid_dynamics": Preset("vortex", 180.0, 0.10, 2.0, DEFAULT_TRANSLATION_PX),
    "astrophysics": Preset("turbulent", 360.0, 0.20, 4.0, 0),
    "turbulent_radiative_layer": Preset("turbulent", 90.0, 0.12, 2.5, DEFAULT_TRANSLATION_PX),
    "active_matter": Preset("vortex", 360.0, 0.08, 1.5, DEFAULT_TRANSLATION_PX),
}

#: simulation parameters written as The Well's root attributes and constant scalars (all numbers)
SIMULATION_PARAMETERS = (
    "rotation_max_deg",
    "noise_sigma",
    "blur_sigma",
    "translation_max_px",
    "scaling_max",
)


def valid_shape(height: int, width: int) -> bool:
    """Maps are square or have aspect ratio 2:3 (either orientation)."""
    return height == width or 2 * width == 3 * height or 2 * height == 3 * width


@dataclass(frozen=True)
class EnergyParams:
    """One run = one domain = one file of ``n_samples`` trajectories of ``n_steps`` frames.

    domain: preset name (see PRESETS); the fields below left at None take the preset's value.
    n_steps: frames per trajectory including the initial base pattern, 2..10000.
    height, width: map size in pixels, 8..8192, square or 2:3 / 3:2.
    pattern, rotation_max_deg (0..360), noise_sigma (0..10), blur_sigma (0..min(H, W)/4 px),
    translation_max_px (0..min(H, W)/2): overrides of the preset.
    pattern_variation: "per_trajectory" (default) draws the shape of the analytic patterns
    (vortex: centre, width, arm count, phase; laminar: wave numbers, phases) for each trajectory
    within ``patterns.PARAMETER_RANGES``; "source" keeps the source workflow's exact pattern, so
    every trajectory of a vortex or laminar domain starts from the same frame. turbulent and
    random frames differ per trajectory either way.
    scaling_max: each step multiplies the energy by U(1 - s, 1 + s); 0 (default) disables it.
    drift_tolerance: when the total energy of a frame differs from the initial one by more than
    this fraction it is rescaled back and counted (default 0.05, the source's 5 %), in (0, 1).
    """

    domain: Domain = "plasma_physics"
    n_steps: int = 10
    height: int = 256
    width: int = 256
    pattern: Pattern | None = None
    pattern_variation: PatternVariation = "per_trajectory"
    rotation_max_deg: float | None = None
    noise_sigma: float | None = None
    blur_sigma: float | None = None
    translation_max_px: int | None = None
    scaling_max: float = 0.0
    drift_tolerance: float = 0.05

    def __post_init__(self) -> None:
        require(self.domain in PRESETS, f"domain must be one of {', '.join(DOMAINS)}")
        require(2 <= self.n_steps <= 10_000, f"n_steps must be in 2..10000, got {self.n_steps}")
        for name in ("height", "width"):
            v = getattr(self, name)
            require(8 <= v <= 8192, f"{name} must be in 8..8192 pixels, got {v}")
        require(
            valid_shape(self.height, self.width),
            f"maps must be square or 2:3, got {self.height} x {self.width}",
        )
        require(
            self.pattern is None or self.pattern in PATTERNS,
            f"pattern must be one of {', '.join(PATTERNS)}",
        )
        require(
            self.pattern_variation in PATTERN_VARIATIONS,
            f"pattern_variation must be one of {', '.join(PATTERN_VARIATIONS)}, "
            f"got {self.pattern_variation!r}",
        )
        p = self.preset
        side = min(self.height, self.width)
        require(
            0.0 <= p.rotation_max_deg <= 360.0,
            f"rotation_max_deg must be in 0..360, got {p.rotation_max_deg}",
        )
        require(0.0 <= p.noise_sigma <= 10.0, f"noise_sigma must be in 0..10, got {p.noise_sigma}")
        require(
            0.0 <= p.blur_sigma <= side / 4,
            f"blur_sigma must be in 0..{side / 4:g} pixels (a quarter of the map), "
            f"got {p.blur_sigma}",
        )
        require(
            0 <= p.translation_max_px <= side // 2,
            f"translation_max_px must be in 0..{side // 2}, got {p.translation_max_px}",
        )
        require(
            0.0 <= self.scaling_max <= 0.5, f"scaling_max must be in 0..0.5, got {self.scaling_max}"
        )
        require(
            0.0 < self.drift_tolerance < 1.0,
            f"drift_tolerance must be in (0, 1), got {self.drift_tolerance}",
        )

    @property
    def preset(self) -> Preset:
        """The domain preset with this run's overrides applied."""
        base = PRESETS[self.domain]

        def pick(name: str) -> object:
            v = getattr(self, name)
            return getattr(base, name) if v is None else v

        return Preset(
            pattern=str(pick("pattern")),
            rotation_max_deg=float(pick("rotation_max_deg")),
            noise_sigma=float(pick("noise_sigma")),
            blur_sigma=float(pick("blur_sigma")),
            translation_max_px=int(pick("translation_max_px")),
        )

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    def simulation_parameters(self) -> dict[str, float]:
        """The numeric parameters that define this dataset (The Well's simulation_parameters)."""
        p = self.preset
        return {
            "rotation_max_deg": p.rotation_max_deg,
            "noise_sigma": p.noise_sigma,
            "blur_sigma": p.blur_sigma,
            "translation_max_px": float(p.translation_max_px),
            "scaling_max": self.scaling_max,
        }
