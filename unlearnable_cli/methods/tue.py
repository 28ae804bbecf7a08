"""TUE, transferable unlearnable examples (Fang et al.): SEM's loop plus data collapse.

A first phase trains a class-conditional score estimator s_φ (:mod:`.score`), or reuses
``--score-model`` or the run's own score file; then every noise step of SEM's loop also
takes −α_s·sign(∇_δ Σ ‖s_φ(x + δ, y)‖), moving each image towards a mode of its class.
As the paper writes it the noise has no random transforms and no δʳ; ``--tue-eot`` adds
SEM's.  The score estimator ships inside the generator file (tensors under ``score.``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import torch
from torch import nn

from .. import distributed
from ..config import ConfigError, NoiseConfig, Perturbation, ProtectConfig, TrainConfig
from ..engine.noise import ErrorMinimizingNoise
from ..models.weights import WeightsError, state_tensors
from . import register
from .base import NOISE_OPTIONS, CardFields, NoiseFn
from .score import PREFIX, ScoreFile, build_score, load_score, save_score, train_score
from .sem import SEM

if TYPE_CHECKING:
    from ..train.run import TrainingRun
    from ..models.weights import GeneratorCard


@dataclass(frozen=True)
class TUEFields(CardFields):
    """TUE's card fields: the data-collapse step, whether SEM's EOT was used, the score net."""

    score_step: float = 0.0
    tue_eot: bool = False
    score_arch: dict[str, Any] | None = None


@register
class TUE(SEM):
    """SEM's training with TUE's score-based data-collapse term in every noise step."""

    name = "tue"
    perturbation = Perturbation.UNIFORM
    own_train_options = ("score_step", "score_sigma", "score_width", "score_depth", "score_steps", "score_lr",
                         "score_model", "tue_eot")
    protect_options = NOISE_OPTIONS + ("--score-step",)
    fields = TUEFields

    def __init__(self) -> None:
        self.score: ScoreFile | None = None
        self.source: dict[str, object] = {}

    @classmethod
    def validate(cls, cfg: TrainConfig) -> None:
        if not (cfg.score_step > 0 and cfg.score_sigma > 0 and cfg.score_steps >= 1):
            raise ConfigError("--score-step, --score-sigma and --score-steps must be positive")

    @classmethod
    def deterministic_noise(cls, cfg: TrainConfig) -> bool:
        return not cfg.tue_eot

    @classmethod
    def train_score_step(cls, cfg: TrainConfig) -> float:
        return cfg.score_step

    @classmethod
    def default_random_radius(cls, f: CardFields) -> float:
        # TUE as its paper writes it draws no δʳ; its generator was trained with ρ_a all the same
        return float(f.adv_radius) if f.tue_eot else 0.0  # type: ignore[attr-defined]

    @classmethod
    def protect_score_step(cls, cfg: ProtectConfig, f: CardFields) -> float:
        return float(f.score_step) if cfg.score_step is None else cfg.score_step  # type: ignore[attr-defined]

    # ------------------------------------------------------------------ training
    def fingerprint(self, run: "TrainingRun") -> str:
        return json.dumps({"score": dataclasses.asdict(run.cfg.score_config()), "seed": run.cfg.seed,
                           "classes": list(run.class_names), "size": run.cfg.image_size,
                           "data": run.dataset_digest}, sort_keys=True)

    def prepare(self, run: "TrainingRun", on_step: Callable[[int, float], None],
                should_stop: Callable[[], int]) -> None:
        """Take ``--score-model``, or the run's own score file when it was made with these
        options and data (a resumed run), or train one and save it."""
        score = self._given(run) if run.cfg.score_model else self._own(run, on_step, should_stop)
        if score is None:                      # cut short by a stop request
            return
        self.score = score
        run.engine.score_model = score.model

    def _given(self, run: "TrainingRun") -> ScoreFile:
        path, size = Path(run.cfg.score_model or ""), (run.cfg.image_size, run.cfg.image_size)
        try:
            score = load_score(path, run.device)
        except WeightsError as e:
            raise ConfigError(f"--score-model {e}") from e
        if score.class_names != list(run.class_names) or tuple(score.input_size) != size:
            raise ConfigError(f"{path}: --score-model was trained for classes {score.class_names} at "
                              f"{tuple(score.input_size)}; this run has {list(run.class_names)} at {size}")
        self.source = {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        return score

    def _own(self, run: "TrainingRun", on_step: Callable[[int, float], None],
             should_stop: Callable[[], int]) -> ScoreFile | None:
        cfg, file = run.cfg, run.paths.score
        exists = file.exists()
        if run.shard.torchrun:                    # every rank decides on the same view of the folder
            distributed.barrier()
        if not exists and run.shard.leader:
            model, figures = train_score(run.train.images, run.train.labels, len(run.class_names),
                                         cfg.score_config(), run.device, cfg.seed,
                                         held_out=(run.val.images, run.val.labels), on_step=on_step,
                                         should_stop=lambda: bool(should_stop()))
            if should_stop():                  # cut short: not kept, a rerun trains it again
                return None
            save_score(file, ScoreFile(model, cfg.score_config().arch, list(run.class_names),
                                       (cfg.image_size, cfg.image_size), figures, self.fingerprint(run)))
        if run.shard.torchrun:                    # rank 0 trained it; the others read its file
            distributed.barrier()
        try:
            score = load_score(file, run.device)
        except WeightsError as e:
            raise ConfigError(f"{e}; delete it to train the score estimator again") from e
        if score.fingerprint != self.fingerprint(run):
            raise ConfigError(f"{file}: a score estimator made with other options or data is "
                              "there; add --overwrite to train it again, or choose another -o")
        self.source = {"trained_by_this_run": True, **({"reused": True} if exists else {})}
        return score

    def generator_tensors(self) -> dict[str, torch.Tensor]:
        assert self.score is not None
        return {PREFIX + k: v for k, v in state_tensors(self.score.model).items()}

    def card_extras(self) -> tuple[dict[str, Any], dict[str, Any]]:
        assert self.score is not None
        return {"score_arch": self.score.arch}, {"score": {**self.score.figures, **self.source}}

    # ------------------------------------------------------------------ protect
    def protect_noise(self, model: nn.Module, card: "GeneratorCard", noise_config: NoiseConfig,
                      extras: dict[str, torch.Tensor], device: torch.device) -> NoiseFn:
        """The noise engine with the score estimator stored beside the generator."""
        state = {k[len(PREFIX):]: v.cpu() for k, v in extras.items() if k.startswith(PREFIX)}
        arch = TUEFields.from_card(card).score_arch
        if not state or arch is None:
            raise ConfigError("this TUE generator holds no score estimator (no tensors under 'score.')")
        score = build_score(arch, card.num_classes)
        score.load_state_dict(state, strict=True)
        return ErrorMinimizingNoise(model, noise_config, tuple(card.input_size),  # type: ignore[return-value]
                                    score_model=score.to(device).eval())
