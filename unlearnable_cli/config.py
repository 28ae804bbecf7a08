"""Every option, default and preset in one place.

Radii and step sizes are stored in [0, 1] pixel units; the command line takes them
in pixel levels out of 255 (``--radius 8`` means 8/255) and converts with
:func:`levels`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum

import torch

from .imageio import DEFAULT_MAX_PIXELS, OutputFormat
from .noise import Method, NoiseConfig
from .transforms import TransformSpec


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
    steps: int = 5000                     # M, optimizer steps
    batch_size: int = 128
    lr: float = 0.1                       # SGD, momentum 0.9, weight decay 5e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_milestones: tuple[float, ...] = (0.4, 0.8)   # fractions of M where lr is multiplied by 0.1
    radius: float = 8 / 255               # ρ_u
    step_size: float = 1.6 / 255          # α_u
    noise_steps: int = 10                 # K_u
    eot_samples: int = 5                  # J
    adv_radius: float = 4 / 255           # ρ_a (0 for EM)
    adv_step_size: float = 0.8 / 255      # α_a
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
            (self.checkpoint_every >= 1, "--checkpoint-every must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

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

    radius: float = 8 / 255
    steps: int = 10
    step_size: float | None = None
    eot_samples: int | None = None
    random_radius: float | None = None
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

    @property
    def alpha(self) -> float:
        """α_u: the step size actually used (ρ_u / 5 unless given)."""
        return self.step_size if self.step_size is not None else self.radius / 5

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
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
