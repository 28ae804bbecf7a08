"""The base every unlearnable-examples method derives from.

A method is one small class (torchattacks style) that owns everything that differs
between methods, so the training loop, ``protect`` and the config hold no method branches:

- its **defaults** (:attr:`UnlearnableMethod.train_defaults`, applied under the user's options);
- the **options** it alone reads (:attr:`own_train_options`; given with another method they
  are refused) and the ``protect`` options it reads (:attr:`protect_options`);
- its **training step** (:meth:`train_step`, one SGD step or one round, given a
  :class:`~unlearnable_cli.train.run.TrainingRun`) and whatever state it keeps across
  steps, checkpointed through :meth:`checkpoint_tensors`;
- its **protect-time step** (:meth:`protect_noise`: the function that turns a batch into δ);
- its **card fields**, a typed dataclass read from a generator card (:attr:`fields`).

Registering a new method: one file in this package with a subclass, decorated with
:func:`~unlearnable_cli.methods.register` (docs/design.md, "Adding a method").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol

import torch
from torch import nn

from ..config import ADV_STEP_SIZE, EOT_SAMPLES, ConfigError, NoiseConfig, Perturbation, ProtectConfig, TrainConfig
from ..engine.noise import ErrorMinimizingNoise
from ..config import TransformSpec

if TYPE_CHECKING:
    from ..train.run import TrainingRun
    from ..models.weights import GeneratorCard

#: ``protect`` options that shape the noise optimization (the ones a person may set).
NOISE_OPTIONS = ("--steps", "--step-size", "--eot-samples", "--random-radius", "--eot-grayscale", "--eot-scale",
                 "--highpass")


class NoiseFn(Protocol):
    """``noise(x, labels, generator, shared_channels, on_step, radius) -> δ``: images
    ``(B, 3, H, W)`` in [0, 1] -> δ ``(B, C, H, W)`` (C = 1 with ``shared_channels``) within the bound."""

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None, *,
                 shared_channels: bool = False, on_step: Callable[[int, int], None] | None = None,
                 radius: torch.Tensor | None = None) -> torch.Tensor: ...


@dataclass(frozen=True)
class CardFields:
    """The hyperparameters of a generator card that ``protect`` reads, typed.

    A card stores them by name (``TrainConfig.to_dict``); :meth:`from_card` reads the
    ones a dataclass declares, with its defaults for a card that lacks them.
    """

    adv_radius: float = 0.0              # ρ_a the generator was adversarially trained with
    adv_step_size: float = ADV_STEP_SIZE  # α_a of its inner PGD
    adv_steps: int = 10                  # K_a

    @classmethod
    def from_card(cls, card: "GeneratorCard") -> "CardFields":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in card.hyperparameters.items() if k in names})


class UnlearnableMethod:
    """One method: see the module docstring.  Subclasses set the class attributes and
    override the steps that differ; a fresh instance serves one training run or one protect run."""

    #: ``--method`` value, also the card's ``method``.
    name: ClassVar[str]
    #: Whether ``--class-wise`` selects this method (class-wise EM) rather than the sample-wise one.
    class_wise: ClassVar[bool] = False
    #: How δʳ is drawn inside the noise engine's steps.
    perturbation: ClassVar[Perturbation] = Perturbation.UNIFORM
    #: Overrides of :class:`TrainConfig` defaults, under the options a person gives.
    train_defaults: ClassVar[dict[str, object]] = {}
    #: ``TrainConfig`` fields only this method reads (refused with any other).
    own_train_options: ClassVar[tuple[str, ...]] = ()
    #: ``protect`` options this method reads.
    protect_options: ClassVar[tuple[str, ...]] = NOISE_OPTIONS
    #: The typed card fields ``protect`` reads.
    fields: ClassVar[type[CardFields]] = CardFields
    #: Trains in one process only (its state between SGD steps spans the whole training set).
    single_process: ClassVar[bool] = False
    #: Log and checkpoint after every training step (EM's rounds) instead of every ``log_every``.
    every_step_recorded: ClassVar[bool] = False

    # ------------------------------------------------------------------ options
    @classmethod
    def validate(cls, cfg: TrainConfig) -> None:
        """Method-specific checks of a training config (after the shared ones)."""

    @classmethod
    def refuse_protect_options(cls, given: list[str], path: Path | None = None) -> None:
        """Refuse ``protect`` options (``given``: the ones a person set) this method does not read."""
        unused = [o for o in given if o not in cls.protect_options and o in NOISE_OPTIONS]
        if unused:
            raise ConfigError(f"{path or 'the generator'}: {', '.join(unused)} do not apply to a {cls.name} generator")
        if "--score-step" in given and "--score-step" not in cls.protect_options:
            raise ConfigError(f"{path or 'the generator'}: --score-step is TUE's data-collapse step; this "
                              f"generator's method is {cls.name}, which has no score estimator")

    # ------------------------------------------------------------------ training
    @classmethod
    def deterministic_noise(cls, cfg: TrainConfig) -> bool:
        """Noise without random transforms or δʳ during training (EM's and TUE's papers)."""
        return False

    @classmethod
    def train_noise_config(cls, cfg: TrainConfig) -> NoiseConfig:
        """The noise engine settings a training run uses (and ships in the card)."""
        nc = NoiseConfig(
            perturbation=cls.perturbation, radius=cfg.radius, step_size=cfg.step_size,
            steps=cfg.noise_steps, eot_samples=cfg.eot_samples,
            random_radius=0.0 if cls.deterministic_noise(cfg) else cfg.rho_r,
            adv_step_size=cfg.adv_step_size, adv_steps=cfg.adv_steps,
            transform=cfg.transform_spec(), score_step=cls.train_score_step(cfg), highpass=cfg.highpass)
        if cls.deterministic_noise(cfg):   # Huang et al. / Fang et al.: no augmentation and no EOT in the noise
            nc = dataclasses.replace(nc, transform=TransformSpec.identity(), eot_samples=1)
        return nc

    @classmethod
    def train_score_step(cls, cfg: TrainConfig) -> float:
        return 0.0

    def start(self, run: "TrainingRun") -> None:
        """Set up the method's own state for ``run`` (before any checkpoint is loaded)."""

    def prepare(self, run: "TrainingRun", on_step: Callable[[int, float], None],
                should_stop: Callable[[], int]) -> None:
        """A first phase before the steps (TUE's score estimator); nothing by default."""

    def train_step(self, run: "TrainingRun") -> dict[str, Any]:
        """Advance ``run`` by one step (or round) and return its log record (``step``, ``loss``, ...)."""
        raise NotImplementedError

    def finished(self, run: "TrainingRun") -> bool:
        """Whether training may stop before ``cfg.steps`` (EM's accuracy criterion)."""
        return False

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        """The method's state that a checkpoint must hold to resume bit-identically."""
        return {}

    def load_checkpoint_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`checkpoint_tensors` saved."""

    def final_noise(self, run: "TrainingRun", pick: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                    g: torch.Generator) -> torch.Tensor:
        """δ of training images ``pick`` for the card's accuracy on protected images."""
        return torch.cat([run.engine(xb, yb, g) for xb, yb in zip(x.split(128), y.split(128))])

    def generator_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors stored beside the model in the generator file (names under ``EXTRA_PREFIXES``)."""
        return {}

    def card_extras(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(hyperparameters, metrics) the method adds to the card."""
        return {}, {}

    # ------------------------------------------------------------------ protect
    @classmethod
    def protect_noise_config(cls, cfg: ProtectConfig, card: "GeneratorCard") -> NoiseConfig:
        """The noise engine settings for ``card``'s generator, with the derived defaults:
        α_u = ρ_u / 5, J = 5 (1 when the generator's transform is the identity, as for
        EM: there is nothing to average over), ρ_r = the generator's ρ_a, and REM's inner
        attack as the generator was trained with it."""
        spec = card.transform_spec
        if cfg.eot_min_scale is not None:
            spec = dataclasses.replace(spec, min_scale=cfg.eot_min_scale)
        f = cls.fields.from_card(card)
        return NoiseConfig(
            perturbation=cls.perturbation, radius=cfg.radius, step_size=cfg.alpha, steps=cfg.steps,
            eot_samples=cfg.eot_samples or (1 if card.transform_spec == TransformSpec.identity() else EOT_SAMPLES),
            random_radius=cls.default_random_radius(f) if cfg.random_radius is None else cfg.random_radius,
            adv_step_size=float(f.adv_step_size), adv_steps=int(f.adv_steps),
            transform=spec, grayscale_draws=cfg.eot_grayscale, highpass=cfg.highpass,
            score_step=cls.protect_score_step(cfg, f))

    @classmethod
    def default_random_radius(cls, f: CardFields) -> float:
        return float(f.adv_radius)

    @classmethod
    def protect_score_step(cls, cfg: ProtectConfig, f: CardFields) -> float:
        return 0.0

    def protect_noise(self, model: nn.Module, card: "GeneratorCard", noise_config: NoiseConfig,
                      extras: dict[str, torch.Tensor], device: torch.device) -> NoiseFn:
        """The function ``protect`` calls for each batch: by default the noise engine."""
        return ErrorMinimizingNoise(model, noise_config, tuple(card.input_size))  # type: ignore[return-value]
