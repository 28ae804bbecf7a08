"""``eval``'s settings: how the unauthorized trainer trains, and what it is run on."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from .common import ConfigError, VictimRuns


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


class Attacker(str, Enum):
    """Who trains on the photos: a classifier from scratch, or dlib's pretrained face
    recognizer (the ``faces`` extra) that enrols them or is fine-tuned on them."""

    SCRATCH = "scratch"         # a victim classifier trained from random weights (VictimConfig)
    EMBEDDING = "embedding"     # dlib's embeddings: 1-NN with the 0.6 threshold, and a linear classifier
    FINETUNE = "finetune"       # dlib's network with a new linear head: the head alone, and the whole network

    @property
    def variants(self) -> tuple[str, ...]:
        """The victims this attacker trains on each training set, as reports name them."""
        return {Attacker.SCRATCH: ("scratch",), Attacker.EMBEDDING: ("embedding:1nn", "embedding:linear"),
                Attacker.FINETUNE: ("finetune:head", "finetune:whole")}[self]


#: face_recognition's ``compare_faces`` tolerance: Euclidean distance at most this is a match.
MATCH_THRESHOLD = 0.6


@dataclass
class RecognizerConfig:
    """How a team with dlib's pretrained recognizer trains on the photos (``--attacker``).

    The linear classifier on embeddings is a multinomial logistic regression, fitted to
    convergence by L-BFGS; fine-tuning puts a new linear head (128 -> classes) on the
    network and trains with Adam on the face chips, flipped at random.
    """

    match_threshold: float = MATCH_THRESHOLD  # embedding:1nn: farther than this is "unknown"
    linear_l2: float = 1e-3           # logistic regression: L2 penalty on the weights (mean loss + l2 * |W|^2)
    linear_iterations: int = 200      # L-BFGS iterations (full batch)
    epochs: int = 5                   # fine-tuning epochs over the training photos
    batch_size: int = 32
    head_lr: float = 1e-2             # Adam, the new head
    net_lr: float = 1e-4              # Adam, the pretrained layers (finetune:whole)
    flip: bool = True                 # random horizontal flips of the chips while fine-tuning
    seed: int = 0

    def validate(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.head_lr <= 0 or self.net_lr <= 0:
            raise ConfigError("--epochs, --batch-size and the learning rates must be positive")


#: The victim's one-cycle schedule: share of training spent warming up to the peak lr.
WARMUP_SHARE = 0.15
#: The victim's augmentation with ``augment``: pad-4 random crop and horizontal flip.
VICTIM_PAD = 4
#: Images per forward pass when a victim is measured on an eval set.
EVAL_BATCH = 500
#: The personal scenario holds out one background image in this many to measure the victim on everyone else.
BACKGROUND_TEST_ONE_IN = 10


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
    attacker: Attacker = Attacker.SCRATCH
    recognizer: RecognizerConfig = dataclasses.field(default_factory=RecognizerConfig)
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
        self.recognizer.validate()
        if self.attacker is not Attacker.SCRATCH and (any(self.adv_radii) or set(self.defenses) != {"none"}):
            raise ConfigError(f"--attacker {self.attacker.value} enrols or fine-tunes on the photos as they are; "
                              "--adv-radius and --defense apply to --attacker scratch")
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
