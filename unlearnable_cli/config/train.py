"""``train-generator``'s settings and presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum

from typing import TYPE_CHECKING

from .common import ADV_RADIUS, ADV_STEP_SIZE, RADIUS, STEP_SIZE, ConfigError, Method, NoiseConfig, highpass_check
from ..transforms import TransformSpec

if TYPE_CHECKING:
    from ..score import ScoreConfig


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
    class_wise: bool = False              # EM: one pattern per class instead of one noise per image
    highpass: int = 0                     # noise finer than this many generator pixels (0: off; noise.coarse_part)
    score_step: float = 0.8 / 255         # TUE: α_s, the data-collapse step (α_u / 2; the paper gives none)
    score_sigma: float = 0.05             # TUE: σ of the score estimator's denoising score matching
    score_width: int = 24                 # TUE: score estimator width ...
    score_depth: int = 3                  # ... and residual blocks (score.py says why)
    score_steps: int = 2000               # TUE: Adam steps of score matching
    score_lr: float = 1e-3                # TUE: Adam learning rate (cosine decay)
    score_model: str | None = None        # TUE: reuse this score estimator instead of training one
    tue_eot: bool = False                 # TUE: also average the loss term over SEM's EOT (J transforms, uniform δʳ)

    @property
    def rho_r(self) -> float:
        return self.adv_radius if self.random_radius is None else self.random_radius

    @property
    def deterministic_noise(self) -> bool:
        """Noise without random transforms or δʳ: EM, and TUE as its paper writes it."""
        return self.method is Method.EM or (self.method is Method.TUE and not self.tue_eot)

    def noise_config(self) -> NoiseConfig:
        """The noise engine settings this training run uses (and ships in the card)."""
        nc = NoiseConfig(
            method=self.method, radius=self.radius, step_size=self.step_size,
            steps=self.noise_steps, eot_samples=self.eot_samples,
            random_radius=0.0 if self.deterministic_noise else self.rho_r,
            adv_step_size=self.adv_step_size, adv_steps=self.adv_steps,
            transform=self.transform_spec(), score_step=self.score_step if self.method is Method.TUE else 0.0,
            highpass=self.highpass)
        if self.deterministic_noise:      # Huang et al. / Fang et al.: no augmentation and no EOT in the noise
            nc = dataclasses.replace(nc, transform=TransformSpec.identity(), eot_samples=1)
        return nc

    def score_config(self) -> "ScoreConfig":
        from ..score import ScoreConfig
        return ScoreConfig(sigma=self.score_sigma, width=self.score_width, depth=self.score_depth,
                           steps=self.score_steps, batch_size=self.batch_size, lr=self.score_lr)

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
            (not self.class_wise or self.method is Method.EM, "--class-wise applies to --method em only"),
            highpass_check(self.highpass),
            (self.highpass <= self.image_size, "--highpass must not exceed --image-size"),
            (not (self.highpass and self.class_wise), "--highpass does not apply to --class-wise patterns"),
            (self.score_step > 0 and self.score_sigma > 0 and self.score_steps >= 1,
             "--score-step, --score-sigma and --score-steps must be positive"),
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
        if self.method is not Method.TUE:   # TUE's settings mean nothing to the other methods' cards
            d = {k: v for k, v in d.items() if not k.startswith("score_") and k != "tue_eot"}
        return d

    #: Fields added after the first checkpoints, with the value those runs always had: a
    #: checkpoint fingerprint leaves them out at that value, so older runs still resume.
    ADDED_LATER = {"init": None, "stem_stride": 1, "class_wise": False, "highpass": 0}


#: Presets: overrides of :class:`TrainConfig` defaults.  ``paper`` is the official SEM
#: CIFAR-10 recipe; ``cpu`` was chosen by measurement on a 2-core CPU (see weights/README.md).
PRESETS: dict[Preset, dict[str, object]] = {
    Preset.PAPER: {},
    Preset.CPU: dict(width=16, steps=2100, noise_steps=10, eot_samples=1, adv_steps=5),
}


#: EM's own sample-wise recipe (Huang et al. 2021, appendix): T = 20 noise steps of ε/10,
#: no adversarial training; applied with ``--method em`` unless an option overrides it.
EM_DEFAULTS: dict[str, object] = dict(noise_steps=20, step_size=0.8 / 255, adv_radius=0.0)


#: Options that only TUE reads (refused with another method rather than silently ignored).
TUE_ONLY = ("score_step", "score_sigma", "score_width", "score_depth", "score_steps", "score_lr", "score_model",
            "tue_eot")


def train_config(preset: Preset, **overrides: object) -> TrainConfig:
    """A :class:`TrainConfig` from a preset with explicit options (``None`` = keep) on top."""
    given = {k: v for k, v in overrides.items() if v is not None}
    stray = [k for k in TUE_ONLY if k in given]
    if stray and Method(given.get("method", Method.SEM)) is not Method.TUE:
        raise ConfigError(f"{', '.join('--' + k.replace('_', '-') for k in stray)}: TUE's options; "
                          "add --method tue, or leave them out")
    method_defaults = EM_DEFAULTS if Method(given.get("method", Method.SEM)) is Method.EM else {}
    cfg = TrainConfig(**{**PRESETS[preset], **method_defaults, **given})
    cfg.validate()
    return cfg
