"""Every option, default and preset in one place: the noise engine's, ``protect``'s,
``train-generator``'s and ``eval``'s.

Radii and step sizes are stored in [0, 1] pixel units everywhere inside; the command
line takes them in pixel levels out of 255 (``--radius 8`` means 8/255) and converts
with :func:`levels`.  Command-line options default to ``None``, meaning "the default
here".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .budget import Budget
from .imageio import DEFAULT_MAX_PIXELS, OutputFormat
from .transforms import TransformSpec

#: ρ_u, the promised L∞ bound, as in all three papers: 8 levels out of 255.
RADIUS = 8 / 255
#: α_u, SEM's noise step on CIFAR-10 (ρ_u / 5; written as 1.6/255, the float every card records).
STEP_SIZE = 1.6 / 255
#: ρ_a = ρ_r, SEM's adversarial and random radii on CIFAR-10.
ADV_RADIUS = 4 / 255
#: α_a, SEM's adversarial PGD step (ρ_a / 5).
ADV_STEP_SIZE = 0.8 / 255


def levels(value: float) -> float:
    """Pixel levels out of 255 -> [0, 1] units."""
    return value / 255.0


class Device(str, Enum):
    """Where to compute; ``auto`` takes CUDA when it is available."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class VictimRuns(str, Enum):
    """Which victims ``eval`` trains: the clean baseline, the protected copies, or both."""

    BOTH = "both"
    CLEAN = "clean"
    PROTECTED = "protected"


class ConfigError(ValueError):
    """An option value that cannot work; raised before any work starts."""


class Method(str, Enum):
    """Which unlearnable-examples method shapes the noise (and the generator training)."""

    SEM = "sem"
    REM = "rem"
    EM = "em"


@dataclass(frozen=True)
class NoiseConfig:
    """Hyperparameters of the noise optimization, all in [0, 1] pixel units.

    Defaults are the SEM paper's CIFAR-10 recipe: ρ_u = 8/255, α_u = 1.6/255,
    K_u = 10, J = 5, ρ_r = ρ_a = 4/255 (and, for REM's inner maximization,
    α_a = 0.8/255 with K_a = 10 steps).
    """

    method: Method = Method.SEM
    radius: float = RADIUS           # ρ_u, the promised L∞ bound
    step_size: float = STEP_SIZE     # α_u
    steps: int = 10                  # K_u
    eot_samples: int = 5             # J, draws of (t_j, δʳ_j) averaged per step
    random_radius: float = ADV_RADIUS  # ρ_r (SEM's uniform δʳ, REM's PGD radius)
    adv_step_size: float = ADV_STEP_SIZE  # α_a, REM's inner PGD step
    adv_steps: int = 10              # K_a, REM's inner PGD steps
    transform: TransformSpec = TransformSpec()
    grayscale_draws: float = 0.0     # chance that a draw t_j is also converted to grayscale (0: never)
    max_forward: int = 128           # CPU only: largest model batch (chunks of whole draws); CUDA: no cap


def resolve_device(device: Device | str) -> torch.device:
    device = Device(device)
    if device is Device.AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device is Device.CUDA and not torch.cuda.is_available():
        raise ConfigError("--device cuda was requested but no CUDA device is available")
    return torch.device(device.value)


class Preset(str, Enum):
    """Named training recipes for ``train-generator``."""

    PAPER = "paper"
    CPU = "cpu"


@dataclass
class TrainConfig:
    """Generator training (SEM Algorithm 1 and the REM / EM baselines).

    Defaults are the official SEM CIFAR-10 recipe (``--preset paper``).
    """

    method: Method = Method.SEM
    arch: str = "resnet18"
    width: int = 64                       # ResNet-18 base width; 64 is the paper's surrogate
    stem_stride: int = 1                  # 2: the first convolution halves the input (photos, >= 64 px)
    steps: int = 5000                     # M, optimizer steps
    batch_size: int = 128
    lr: float = 0.1                       # SGD, momentum 0.9, weight decay 5e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_milestones: tuple[float, ...] = (0.4, 0.8)   # fractions of M where lr is multiplied by 0.1
    radius: float = RADIUS                # ρ_u
    step_size: float = STEP_SIZE          # α_u
    noise_steps: int = 10                 # K_u
    eot_samples: int = 5                  # J
    adv_radius: float = ADV_RADIUS        # ρ_a (0 for EM)
    adv_step_size: float = ADV_STEP_SIZE  # α_a
    adv_steps: int = 10                   # K_a
    random_radius: float | None = None    # ρ_r; None means ρ_a
    pad: int = 4                          # t: pad-4 random crop ...
    flip: bool = True                     # ... plus horizontal flip
    image_size: int = 32
    val_fraction: float = 0.05
    per_class: int | None = None          # use only the first N images of each class
    seed: int = 0
    init: str | None = None               # warm start from this generator's weights (fine-tuning)
    checkpoint_every: int = 50            # steps between checkpoints
    log_every: int = 10                   # steps between JSONL log lines
    em_train_steps: int = 10              # EM: model updates per min-min round
    em_stop_accuracy: float = 0.99        # EM: stop once accuracy on x+δ exceeds this

    @property
    def rho_r(self) -> float:
        return self.adv_radius if self.random_radius is None else self.random_radius

    def noise_config(self) -> NoiseConfig:
        """The noise engine settings this training run uses (and ships in the card)."""
        return NoiseConfig(
            method=self.method, radius=self.radius, step_size=self.step_size,
            steps=self.noise_steps, eot_samples=self.eot_samples,
            random_radius=0.0 if self.method is Method.EM else self.rho_r,
            adv_step_size=self.adv_step_size, adv_steps=self.adv_steps,
            transform=self.transform_spec())

    def transform_spec(self) -> TransformSpec:
        return TransformSpec(pad=self.pad, flip=self.flip)

    def validate(self) -> None:
        checks = [
            (self.steps >= 1, "--steps must be at least 1"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.lr > 0, "--lr must be positive"),
            (0 < self.radius <= 1, "--radius must be in (0, 255]"),
            (self.step_size > 0, "--step-size must be positive"),
            (self.noise_steps >= 1, "--noise-steps must be at least 1"),
            (self.eot_samples >= 1, "--eot-samples must be at least 1"),
            (self.adv_radius >= 0 and self.rho_r >= 0, "radii must not be negative"),
            (self.adv_steps >= 0, "--adv-steps must not be negative"),
            (0 <= self.val_fraction < 1, "--val-fraction must be in [0, 1)"),
            (self.image_size >= 8, "--image-size must be at least 8"),
            (self.stem_stride in (1, 2), "--stem-stride must be 1 or 2"),
            (self.stem_stride == 1 or self.arch == "resnet18", "--stem-stride applies to resnet18 only"),
            (self.checkpoint_every >= 1, "--checkpoint-every must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    @property
    def arch_kwargs(self) -> dict[str, int]:
        """The architecture's arguments as the card records them (the default stem is left out,
        so cards and checkpoints from before ``stem_stride`` existed read the same)."""
        return {"width": self.width, **({"stem_stride": self.stem_stride} if self.stem_stride != 1 else {})}

    def to_dict(self) -> dict[str, object]:
        d = dataclasses.asdict(self)
        d["method"] = self.method.value
        d["random_radius"] = self.rho_r
        d["lr_milestones"] = list(self.lr_milestones)
        return d


#: Presets: overrides of :class:`TrainConfig` defaults.  ``paper`` is the official SEM
#: CIFAR-10 recipe; ``cpu`` was chosen by measurement on a 2-core CPU (see weights/README.md).
PRESETS: dict[Preset, dict[str, object]] = {
    Preset.PAPER: {},
    Preset.CPU: dict(width=16, steps=2100, noise_steps=10, eot_samples=1, adv_steps=5),
}


#: EM's own sample-wise recipe (Huang et al. 2021, appendix): T = 20 noise steps of ε/10,
#: no adversarial training; applied with ``--method em`` unless an option overrides it.
EM_DEFAULTS: dict[str, object] = dict(noise_steps=20, step_size=0.8 / 255, adv_radius=0.0)


def train_config(preset: Preset, **overrides: object) -> TrainConfig:
    """A :class:`TrainConfig` from a preset with explicit options (``None`` = keep) on top."""
    given = {k: v for k, v in overrides.items() if v is not None}
    method_defaults = EM_DEFAULTS if Method(given.get("method", Method.SEM)) is Method.EM else {}
    cfg = TrainConfig(**{**PRESETS[preset], **method_defaults, **given})
    cfg.validate()
    return cfg


@dataclass
class ProtectConfig:
    """Options of ``protect``; radii in [0, 1] units, ``None`` = derived from the generator.

    Defaults: ρ_u = 8/255, α_u = ρ_u / 5, K_u = 10, J = 5 (1 for a generator whose
    transform is deterministic, i.e. EM), ρ_r = the generator's ρ_a.
    """

    radius: float = RADIUS
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
    max_pixels: int = DEFAULT_MAX_PIXELS
    output_format: OutputFormat = OutputFormat.PNG
    preview: int = 0                      # > 0: write this many side-by-side previews, nothing else
    budget: Budget = Budget.UNIFORM       # texture: less than ρ_u in flat areas (budget.py)
    eot_min_scale: float | None = None    # photos: smallest crop side of t (None: the generator's)

    @property
    def alpha(self) -> float:
        """α_u: the step size actually used (ρ_u / 5 unless given)."""
        return self.step_size if self.step_size is not None else self.radius / 5

    def noise_config(self, card: "GeneratorCard") -> NoiseConfig:
        """The noise engine settings for ``card``'s generator, with the derived defaults:
        α_u = ρ_u / 5, J = 5 (1 when the generator's transform is the identity, as for
        EM: there is nothing to average over), ρ_r = the generator's ρ_a, and REM's inner
        attack as the generator was trained with it."""
        spec = card.transform_spec
        if self.eot_min_scale is not None:
            spec = dataclasses.replace(spec, min_scale=self.eot_min_scale)
        hyper = card.hyperparameters
        return NoiseConfig(
            method=Method(card.method), radius=self.radius, step_size=self.alpha, steps=self.steps,
            eot_samples=self.eot_samples or (1 if card.transform_spec == TransformSpec.identity() else 5),
            random_radius=card.adv_radius if self.random_radius is None else self.random_radius,
            adv_step_size=float(hyper.get("adv_step_size", NoiseConfig.adv_step_size)),
            adv_steps=int(hyper.get("adv_steps", NoiseConfig.adv_steps)),
            transform=spec, grayscale_draws=self.eot_grayscale)

    @property
    def radius_levels(self) -> int:
        """The promised integer bound in pixel levels: output differs from input by at most this."""
        return int(self.radius * 255 + 1e-6)

    def validate(self) -> None:
        checks = [
            (0 < self.radius <= 1, "--radius must be in (0, 255]"),
            (self.radius_levels >= 1, "--radius must be at least 1 pixel level"),
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
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)


def protect_config(**options: object) -> ProtectConfig:
    """A :class:`ProtectConfig` from the options given (``None`` = the default here)."""
    return ProtectConfig(**{k: v for k, v in options.items() if v is not None})  # type: ignore[arg-type]


@dataclass
class VictimConfig:
    """How the unauthorized trainer in ``eval`` trains (``--preset quick`` defaults).

    ``adv_step_size`` is in [0, 1] units like every radius inside; None means
    2.5 · radius / steps (Madry et al.'s rule).
    """

    arch: str = "convnet"
    width: int = 32
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.05                        # peak of a one-cycle schedule, SGD with Nesterov momentum
    momentum: float = 0.9
    weight_decay: float = 5e-4
    image_size: int = 32
    augment: bool = True                    # pad-4 random crop + horizontal flip
    adv_steps: int = 3                      # Madry PGD steps when the adversarial radius is > 0
    adv_step_size: float | None = None
    seed: int = 0

    def validate(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError("--epochs, --batch-size and --lr must be positive")


#: ``quick``: a fast CNN for a 10k-image subset on a 2-core CPU; ``paper``: the SEM/REM
#: victim protocol (ResNet-18, SGD 0.1, wd 5e-4, crop+flip, 100 epochs, PGD-10), for a GPU.
EVAL_PRESETS: dict[str, dict[str, object]] = {
    "quick": {},
    "paper": dict(arch="resnet18", width=64, epochs=100, lr=0.1, adv_steps=10),
}


def victim_config(preset: str, **overrides: object) -> VictimConfig:
    """A :class:`VictimConfig` from a preset with explicit options (``None`` = keep) on top."""
    if preset not in EVAL_PRESETS:
        raise ConfigError(f"--preset must be one of {', '.join(EVAL_PRESETS)}")
    cfg = VictimConfig(**{**EVAL_PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}})
    cfg.validate()
    return cfg


@dataclass
class EvalConfig:
    """An ``eval`` run: the standard scenario (``clean``, ``protected``, ``test``) or the
    personal one (``target``, ``target_protected``, ``background``); radii in [0, 1]."""

    victim: VictimConfig = dataclasses.field(default_factory=VictimConfig)
    clean: Path | None = None
    protected: dict[str, Path] = dataclasses.field(default_factory=dict)   # name -> protected copy
    test: Path | None = None
    target: Path | None = None
    target_protected: Path | None = None
    background: Path | None = None
    target_holdout: float = 0.2             # share of the user's clean images never trained on
    adv_radii: tuple[float, ...] = (0.0,)   # adversarial training radii (0: standard training)
    defenses: tuple[str, ...] = ("none",)   # every radius is combined with every defense
    poison_ratio: float = 1.0               # share of the training images that are protected
    allow_missing: bool = False
    runs: VictimRuns = VictimRuns.BOTH
    per_class: int | None = None
    test_per_class: int | None = None
    report: Path | None = None              # JSON report; finished victims are kept beside it

    @property
    def personal(self) -> bool:
        return any(p is not None for p in (self.target, self.target_protected, self.background))

    def validate(self) -> None:
        self.victim.validate()
        if not 0 < self.poison_ratio <= 1:
            raise ConfigError("--poison-ratio must be in (0, 1]")
        if not 0 < self.target_holdout < 1:
            raise ConfigError("--target-holdout must be in (0, 1)")
        if any(r < 0 or r > 1 for r in self.adv_radii):
            raise ConfigError("--adv-radius must be in [0, 255]")
        if self.personal and not (self.target and self.target_protected and self.background):
            raise ConfigError("the personal scenario needs --target, --target-protected and --background")
        if self.personal and self.runs is not VictimRuns.BOTH:
            raise ConfigError("--runs applies to --clean/--protected evaluations only")
        if not self.personal and not (self.clean and self.test and (self.protected or self.runs is VictimRuns.CLEAN)):
            raise ConfigError("give --clean, --protected and --test (or --target, --target-protected, --background)")
        if not self.personal and self.runs is not VictimRuns.CLEAN and not self.protected:
            raise ConfigError("no protected folder given")


def eval_config(**options: object) -> EvalConfig:
    """An :class:`EvalConfig` from the options given (``None`` = the default here)."""
    return EvalConfig(**{k: v for k, v in options.items() if v is not None})  # type: ignore[arg-type]


def named_folders(items: list[str]) -> dict[str, Path]:
    """``--protected`` values, ``NAME=DIR`` or ``DIR`` (named "protected"), by name."""
    named = {}
    for item in items:
        name, sep, path = item.partition("=")
        named[name if sep else "protected"] = Path(path if sep else item)
    return named


if TYPE_CHECKING:
    from .weights import GeneratorCard
