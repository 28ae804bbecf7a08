"""``train-generator``'s settings and presets."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum

from typing import TYPE_CHECKING

from ..models.architectures import MODELS
from .common import ADV_RADIUS, ADV_STEP_SIZE, RADIUS, STEP_SIZE, ConfigError, Method, NoiseConfig, TransformSpec, highpass_check

if TYPE_CHECKING:
    from ..methods.base import UnlearnableMethod


@dataclass(frozen=True)
class ScoreConfig:
    """TUE's score estimator and its training (methods/score.py says why these values)."""

    sigma: float = 0.05        # σ of the denoising score matching, [0, 1] units
    width: int = 24
    depth: int = 3
    steps: int = 2000          # Adam steps
    batch_size: int = 128
    lr: float = 1e-3           # Adam, cosine decay to 0

    @property
    def arch(self) -> dict[str, object]:
        return {"name": "scorenet", "width": self.width, "depth": self.depth, "sigma": self.sigma}


#: Held-out robustness of a trained generator is always measured with the same attack, whatever ρ_a was used.
EVAL_PGD = dict(eps=4 / 255, alpha=1 / 255, steps=10)
#: Images of the training split used to report a generator's accuracy on its protected images.
DEFENDED_EVAL_IMAGES = 1000
SCORE = ScoreConfig()


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
    score_sigma: float = SCORE.sigma      # TUE: σ of the score estimator's denoising score matching
    score_width: int = SCORE.width        # TUE: score estimator width ...
    score_depth: int = SCORE.depth        # ... and residual blocks (methods/score.py says why)
    score_steps: int = SCORE.steps        # TUE: Adam steps of score matching
    score_lr: float = SCORE.lr            # TUE: Adam learning rate (cosine decay)
    score_model: str | None = None        # TUE: reuse this score estimator instead of training one
    tue_eot: bool = False                 # TUE: also average the loss term over SEM's EOT (J transforms, uniform δʳ)
    pil_lambda: float = 0.9               # PIL: λ, the weight of CE(f(−δ), y) against (1 − λ) KL(U ‖ f(x + δ))

    @property
    def rho_r(self) -> float:
        return self.adv_radius if self.random_radius is None else self.random_radius

    def score_config(self) -> ScoreConfig:
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
            highpass_check(self.highpass),
            (self.highpass <= self.image_size, "--highpass must not exceed --image-size"),
            (self.arch in MODELS, f"unknown --arch {self.arch!r}; choose one of: {', '.join(sorted(MODELS))}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        self.method_class().validate(self)

    def noise_config(self) -> "NoiseConfig":
        """The noise engine settings this training run uses (and ships in the card): the method's."""
        return self.method_class().train_noise_config(self)

    def method_class(self) -> "type[UnlearnableMethod]":
        """The method class this run trains with (:mod:`unlearnable_cli.methods`)."""
        from ..methods import method_class
        return method_class(self.method, self.class_wise)

    @property
    def arch_kwargs(self) -> dict[str, int]:
        """The architecture's arguments as the card records them (the default stem is left out,
        so cards and checkpoints from before ``stem_stride`` existed read the same)."""
        if self.arch == "linear":              # a linear map has no width: its size is the input's
            return {"input_size": self.image_size}
        return {"width": self.width, **({"stem_stride": self.stem_stride} if self.stem_stride != 1 else {})}

    def to_dict(self) -> dict[str, object]:
        d = dataclasses.asdict(self)
        d["method"] = self.method.value
        d["random_radius"] = self.rho_r
        d["lr_milestones"] = list(self.lr_milestones)
        # options only another method reads mean nothing to this method's card
        foreign = {k for cls in all_method_classes() if cls is not self.method_class() for k in cls.own_train_options}
        return {k: v for k, v in d.items() if k not in foreign - set(self.method_class().own_train_options)}

    #: Fields added after the first checkpoints, with the value those runs always had: a
    #: checkpoint fingerprint leaves them out at that value, so older runs still resume.
    ADDED_LATER = {"init": None, "stem_stride": 1, "class_wise": False, "highpass": 0}


#: Presets: overrides of :class:`TrainConfig` defaults.  ``paper`` is the official SEM
#: CIFAR-10 recipe; ``cpu`` was chosen by measurement on a 2-core CPU (see weights/README.md).
PRESETS: dict[Preset, dict[str, object]] = {
    Preset.PAPER: {},
    Preset.CPU: dict(width=16, steps=2100, noise_steps=10, eot_samples=1, adv_steps=5),
}


def all_method_classes() -> "list[type[UnlearnableMethod]]":
    from ..methods import METHODS
    return list(METHODS.values())


def train_config(preset: Preset, **overrides: object) -> TrainConfig:
    """A :class:`TrainConfig` from a preset, the method's own defaults, and explicit options
    (``None`` = keep) on top; options only another method reads are refused."""
    from ..methods import method_class
    given = {k: v for k, v in overrides.items() if v is not None}
    method = method_class(given.get("method", Method.SEM), bool(given.get("class_wise")))
    foreign = {k for cls in all_method_classes() for k in cls.own_train_options} - set(method.own_train_options)
    stray = [k for k in foreign if k in given]
    if stray:
        owners = sorted({cls.name.upper() for cls in all_method_classes() for k in stray if k in cls.own_train_options})
        raise ConfigError(f"{', '.join('--' + k.replace('_', '-') for k in sorted(stray))}: {'/'.join(owners)}'s "
                          f"options; add --method {' or '.join(o.lower() for o in owners)}, or leave them out")
    cfg = TrainConfig(**{**PRESETS[preset], **method.train_defaults, **given})
    cfg.validate()
    return cfg
