"""``protect``'s settings, and the noise settings they give for a generator."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from .common import MAX_PIXELS, RADIUS_LEVELS, Budget, ConfigError, OutputFormat, highpass_check


class Against(str, Enum):
    """What ``protect`` protects the photos against (``--against``)."""

    TRAINING = "training"          # models trained on them from scratch: the unlearnable noise (the default)
    RECOGNIZERS = "recognizers"    # pretrained face recognizers that enrol them: the cloak (faces/cloak.py)
    BOTH = "both"                  # the noise, then the cloak from it, within the same bound

    @property
    def noise(self) -> bool:
        return self is not Against.RECOGNIZERS

    @property
    def cloaks(self) -> bool:
        return self is not Against.TRAINING


class Color(str, Enum):
    """Which colours the noise may change (``--color``)."""

    RGB = "rgb"            # R, G and B each their own change (the default)
    LUMA = "luma"          # one change for R, G and B: brightness only, which grayscale conversion keeps


class Strength(str, Enum):
    """``--strength``: a named bundle of the settings that trade visibility for protection."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


@dataclass(frozen=True)
class StrengthLevel:
    """What one ``--strength`` sets (options given beside it win) and what it was measured to do."""

    budget: Budget
    highpass: int
    color: Color
    measured: str          # protection and visibility, measured (docs/results.md, "Strength")


#: The levels.  Protection: LFW-10 with ``--weights faces``, a victim trained from scratch at
#: 64 px (ratio of protected- to clean-trained accuracy, 136 test photos, 95% interval);
#: visibility: mean SSIM on 50 LFW photos and the 4 bundled ones (bench/results/photos.md).
STRENGTHS: dict[Strength, StrengthLevel] = {
    Strength.HIGH: StrengthLevel(Budget.UNIFORM, 0, Color.RGB,
                                 "faces 0.37 of clean [0.28-0.48]; SSIM 0.90 / 0.92, faint pink and green bands"),
    Strength.MEDIUM: StrengthLevel(Budget.TEXTURE, 0, Color.RGB,
                                   "faces 0.51 of clean [0.41-0.63]; SSIM 0.965 / 0.973, fainter bands"),
    Strength.LOW: StrengthLevel(Budget.TEXTURE, 16, Color.RGB,
                                "faces 0.74 of clean [0.63-0.86]; SSIM 0.96 / 0.97, no bands"),
}
#: The default level (rule: docs/protect.md, "Strength").
DEFAULT_STRENGTH = Strength.HIGH


class CloakObjective(str, Enum):
    """Where the cloak moves each photo's descriptor (``--cloak-objective``; faces/cloak.py)."""

    TARGET = "target"      # towards the folder's target centroid (Fawkes' choice; the default)
    AWAY = "away"          # away from the photo's own clean descriptor
    BOTH = "both"          # towards the target and away from its own descriptor, equally weighted


@dataclass(frozen=True)
class CloakConfig:
    """The cloak against recognizers (``--against recognizers|both``; :mod:`faces.cloak`):
    sign-PGD on the photo towards the person's target descriptor, through random site
    transforms."""

    steps: int = 20                            # PGD steps
    step_levels: float = 1.0                   # α: change per step, in levels
    eot_samples: int = 3                       # site transforms per step (the first: the photo as is)
    jpeg_chance: float = 0.5                   # a draw is re-encoded as JPEG ...
    jpeg_quality: tuple[float, float] = (75.0, 95.0)   # ... at a quality drawn from this range
    half_chance: float = 0.3                   # a draw is resized to half
    crop_chance: float = 0.3                   # a draw is cropped ...
    max_crop: float = 0.1                      # ... by up to this share of the side, per side
    objective: CloakObjective = CloakObjective.TARGET   # what the descriptor moves towards or away from


@dataclass
class ProtectConfig:
    """Options of ``protect``; radii in [0, 1] units, ``None`` = derived from the generator.

    The promised bound is the one exception: ``radius_levels`` is a whole number of levels,
    as given at the command line (the bound holds exactly after 8-bit rounding only in
    whole levels), and :attr:`radius` is that bound in [0, 1] for the optimizer.

    Defaults: ρ_u = 8/255, α_u = ρ_u / 5, K_u = 10, J = 5 (1 for a generator whose
    transform is deterministic, i.e. EM), ρ_r = the generator's ρ_a.
    """

    radius_levels: int = RADIUS_LEVELS    # ρ_u in levels: outputs differ from inputs by at most this
    steps: int = 10
    step_size: float | None = None        # None: ρ_u / 5
    eot_samples: int | None = None        # None: 5, or 1 for a generator whose transform is the identity (EM)
    random_radius: float | None = None    # None: the generator's ρ_a
    eot_grayscale: float = 0.0            # chance a draw t_j is also seen in grayscale (0: never)
    labels: str = "folders"
    batch_size: int = 32
    max_batch_pixels: int = 1 << 22       # large photos are protected a few at a time
    seed: int = 0
    overwrite: bool = False
    keep_exif: bool = False
    max_pixels: int = MAX_PIXELS
    output_format: OutputFormat = OutputFormat.PNG
    preview: int = 0                      # > 0: write this many side-by-side previews, nothing else
    strength: Strength = DEFAULT_STRENGTH  # the level budget, highpass and color were taken from
    budget: Budget = STRENGTHS[DEFAULT_STRENGTH].budget   # texture: less than ρ_u in flat areas (budget.py)
    eot_min_scale: float | None = None    # photos: smallest crop side of t (None: the generator's)
    score_step: float | None = None       # TUE: α_s (None: the generator's)
    highpass: int = STRENGTHS[DEFAULT_STRENGTH].highpass  # photos: keep the noise finer than this many pixels (0: off)
    color: Color = STRENGTHS[DEFAULT_STRENGTH].color      # luma: the same change on R, G and B (no colour bands)
    against: Against = Against.TRAINING   # recognizers / both: the cloak of faces/cloak.py (needs the faces extra)
    cloak: CloakConfig = field(default_factory=CloakConfig)

    @property
    def alpha(self) -> float:
        """α_u: the step size actually used (ρ_u / 5 unless given)."""
        return self.step_size if self.step_size is not None else self.radius / 5

    @property
    def strength_as_measured(self) -> bool:
        """Whether budget, highpass and color are the strength level's own (its figures apply)."""
        level = STRENGTHS[self.strength]
        return (self.budget, self.highpass, self.color) == (level.budget, level.highpass, level.color)

    @property
    def radius(self) -> float:
        """ρ_u in [0, 1] units, for the noise optimizer."""
        return self.radius_levels / 255

    def validate(self) -> None:
        checks = [
            (1 <= self.radius_levels <= 255, "--radius must be a whole number of levels in [1, 255]"),
            (self.steps >= 1, "--steps must be at least 1 (with 0 steps the noise is only its random "
                              "start and protects nothing)"),
            (self.step_size is None or self.step_size > 0, "--step-size must be positive"),
            (self.steps * self.alpha >= 1 / 255 - 1e-9,
             f"--steps {self.steps} x --step-size {self.alpha * 255:g} lets the noise move less than one "
             "level from its random start: the output would be random noise, which protects nothing"),
            (self.eot_samples is None or self.eot_samples >= 1, "--eot-samples must be at least 1"),
            (self.random_radius is None or self.random_radius >= 0, "--random-radius must not be negative"),
            (0 <= self.eot_grayscale <= 1, "--eot-grayscale must be in [0, 1]"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.max_pixels >= 1, "--max-pixels must be positive"),
            (self.preview >= 0, "--preview must not be negative"),
            (self.eot_min_scale is None or 0 < self.eot_min_scale <= 1, "--eot-scale must be in (0, 1]"),
            (self.score_step is None or self.score_step >= 0, "--score-step must not be negative"),
            highpass_check(self.highpass),
            (self.against.cloaks or self.cloak.objective is CloakObjective.TARGET,
             "--cloak-objective applies to the cloak: add --against recognizers or --against both"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


def protect_config(**options: object) -> ProtectConfig:
    """A :class:`ProtectConfig` from the options given (``None`` = the default here): the
    ``strength`` level's budget, highpass and color, under the options given beside it."""
    given = {k: v for k, v in options.items() if v is not None}
    level = STRENGTHS[given.get("strength", DEFAULT_STRENGTH)]  # type: ignore[index]
    bundle = {"budget": level.budget, "highpass": level.highpass, "color": level.color}
    return ProtectConfig(**{**bundle, **given})  # type: ignore[arg-type]
