"""Units, devices, methods and the noise engine's settings: what every command shares."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch


#: ρ_u, the promised L∞ bound, as in all three papers: 8 levels out of 255 (whole levels,
#: the command line's unit; RADIUS is the same in [0, 1]).
RADIUS_LEVELS = 8
RADIUS = RADIUS_LEVELS / 255
#: α_u, SEM's noise step on CIFAR-10 (ρ_u / 5; written as 1.6/255, the float every card records).
STEP_SIZE = 1.6 / 255
#: ρ_a = ρ_r, SEM's adversarial and random radii on CIFAR-10.
ADV_RADIUS = 4 / 255
#: α_a, SEM's adversarial PGD step (ρ_a / 5).
ADV_STEP_SIZE = 0.8 / 255


#: J, random transformations (and δʳ draws) averaged per noise step: SEM's value.
EOT_SAMPLES = 5
#: Decoded pixels (width x height) above which an input is refused as a possible decompression bomb.
MAX_PIXELS = 50_000_000


def from_levels(value: float) -> float:
    """Pixel levels out of 255 -> [0, 1] units."""
    return value / 255.0


class Device(str, Enum):
    """Where to compute; ``auto`` takes CUDA when it is available."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class OutputFormat(str, Enum):
    """How ``protect`` stores its outputs; both are lossless, so the bound stays exact."""

    PNG = "png"
    WEBP = "webp"     # lossless WebP: smaller than PNG for photos; grayscale is stored as RGB

    @property
    def suffix(self) -> str:
        return "." + self.value


@dataclass(frozen=True)
class TransformSpec:
    """The transformation distribution T of a generator (stored in its weights card).

    ``pad`` is the crop padding in output pixels (4 for CIFAR's pad-4 crop);
    ``min_scale`` is the smallest side fraction of the random resized crop for
    inputs larger than the output (1.0 disables scale jitter); ``flip`` enables
    random horizontal flips.  ``pad=0, min_scale=1, flip=False`` is the identity
    resize, used for predictions and losses in reports.
    """

    pad: int = 4                  # CIFAR's pad-4 random crop
    min_scale: float = 0.8        # photos: the smallest random crop, as a share of the side
    flip: bool = True

    @classmethod
    def identity(cls) -> "TransformSpec":
        return cls(pad=0, min_scale=1.0, flip=False)


class Budget(str, Enum):
    """How the ±ρ_u budget is spread over an image's pixels."""

    UNIFORM = "uniform"      # every pixel may change by ρ_u (the papers' setting)
    TEXTURE = "texture"      # less in flat areas, where a change is visible (engine/budget.py)


class VictimRuns(str, Enum):
    """Which victims ``eval`` trains: the clean baseline, the protected copies, or both."""

    BOTH = "both"
    CLEAN = "clean"
    PROTECTED = "protected"


class ConfigError(ValueError):
    """An option value that cannot work; raised before any work starts."""


class Interrupted(Exception):
    """A run stopped on request (Ctrl-C / SIGTERM) after saving what it had; ``signum`` says which."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


class Method(str, Enum):
    """Which unlearnable-examples method shapes the noise (and the generator training);
    each is a class in :mod:`unlearnable_cli.methods`."""

    SEM = "sem"
    REM = "rem"
    EM = "em"
    TUE = "tue"
    PIL = "pil"


class Perturbation(str, Enum):
    """How the noise engine draws δʳ_j in each step: none (EM), uniform in ±ρ_r (SEM, TUE)
    or by PGD maximization within ρ_r (REM)."""

    NONE = "none"
    UNIFORM = "uniform"
    WORST_CASE = "worst-case"


def highpass_check(pixels: int) -> tuple[bool, str]:
    """The one rule for ``--highpass`` in ``protect`` and ``train-generator``: off, or a block of at least 2."""
    return pixels == 0 or pixels >= 2, "--highpass must be 0 (off) or at least 2 pixels"


@dataclass(frozen=True)
class NoiseConfig:
    """Hyperparameters of the noise optimization, all in [0, 1] pixel units.

    Defaults are the SEM paper's CIFAR-10 recipe (uniform δʳ): ρ_u = 8/255, α_u = 1.6/255,
    K_u = 10, J = 5, ρ_r = ρ_a = 4/255 (and, for REM's inner maximization,
    α_a = 0.8/255 with K_a = 10 steps).
    """

    perturbation: Perturbation = Perturbation.UNIFORM  # how δʳ is drawn (the method's choice)
    radius: float = RADIUS           # ρ_u, the promised L∞ bound
    step_size: float = STEP_SIZE     # α_u
    steps: int = 10                  # K_u
    eot_samples: int = EOT_SAMPLES   # J, draws of (t_j, δʳ_j) averaged per step
    random_radius: float = ADV_RADIUS  # ρ_r (SEM's uniform δʳ, REM's PGD radius)
    adv_step_size: float = ADV_STEP_SIZE  # α_a, REM's inner PGD step
    adv_steps: int = 10              # K_a, REM's inner PGD steps
    transform: TransformSpec = TransformSpec()
    grayscale_draws: float = 0.0     # chance that a draw t_j is also converted to grayscale (0: never)
    score_step: float = 0.0          # α_s, TUE's data-collapse step along −sign ∇_δ ‖s_φ(x+δ, y)‖ (0: off)
    highpass: int = 0                # after each step remove δ's structure coarser than this many pixels (0: off)
    max_forward: int = 128           # CPU only: largest model batch (chunks of whole draws); CUDA: no cap


def resolve_device(device: Device | str) -> torch.device:
    device = Device(device)
    if device is Device.AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device is Device.CUDA and not torch.cuda.is_available():
        raise ConfigError("--device cuda was requested but no CUDA device is available")
    return torch.device(device.value)
