"""EM, sample-wise error-minimizing noise (Huang et al., ICLR 2021): the min-min bi-level loop.

A persistent noise per training image; rounds of ``em_train_steps`` SGD steps on x + δ,
then one noise update of the whole training set (the noise engine with no random
transform and no δʳ: the paper's recipe, :attr:`train_defaults`); training stops when
accuracy on x + δ exceeds ``em_stop_accuracy``.  EM trains in one process: its noise of
the whole training set changes between SGD steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from ..engine import seeding
from ..config import Perturbation, TrainConfig
from ..io.datasets import to_device
from ..metrics import accuracy
from . import register
from .base import UnlearnableMethod

if TYPE_CHECKING:
    from ..train.run import TrainingRun

#: EM's own sample-wise recipe (Huang et al. 2021, appendix): T = 20 noise steps of ε/10,
#: no adversarial training; applied with ``--method em`` unless an option overrides it.
EM_DEFAULTS: dict[str, object] = dict(noise_steps=20, step_size=0.8 / 255, adv_radius=0.0)
#: The checkpoint's name for the noise of the training set.
NOISE_TENSOR = "em.noise"


@register
class EM(UnlearnableMethod):
    """Error-minimizing noise, one persistent δ per training image."""

    name = "em"
    perturbation = Perturbation.NONE
    train_defaults = EM_DEFAULTS
    every_step_recorded = True
    single_process = True

    def __init__(self) -> None:
        self.noise = torch.zeros(0)
        self.done = False

    @classmethod
    def deterministic_noise(cls, cfg: TrainConfig) -> bool:
        return True

    def start(self, run: "TrainingRun") -> None:
        g = seeding.generator(run.cfg.seed, "em-init")
        u = torch.rand(run.train.images.shape, generator=g)
        self.noise = (2 * u - 1) * run.cfg.radius

    def noise_of(self, run: "TrainingRun", idx: torch.Tensor) -> torch.Tensor:
        """The current noise of training images ``idx``."""
        return self.noise[idx]

    def train_inputs(self, run: "TrainingRun", idx: torch.Tensor) -> torch.Tensor:
        x = to_device(run.train.images[idx], run.device)
        return x + self.noise_of(run, idx).to(x)

    def train_step(self, run: "TrainingRun") -> dict[str, Any]:
        """One round: ``em_train_steps`` updates on x + δ, a noise pass, the stop criterion."""
        loss = acc = 0.0
        for _ in range(run.cfg.em_train_steps):
            if run.step >= run.cfg.steps:
                break
            idx = run.batch_indices()
            loss, acc = run.update(self.train_inputs(run, idx), run.train.labels[idx].to(run.device))
            run.step += 1
        self.update_noise(run)
        em_acc = accuracy(run.model, run.train.images, run.train.labels, run.device,
                          noise=self.noise_of(run, torch.arange(len(run.train))))
        self.done = em_acc >= run.cfg.em_stop_accuracy
        return {"step": run.step, "loss": loss, "acc": acc, "em_defended_acc": em_acc}

    def update_noise(self, run: "TrainingRun") -> None:
        """One noise-engine pass over the training set, from each image's current noise."""
        g = seeding.generator(run.cfg.seed, "em-noise", run.step)
        for idx in torch.arange(len(run.train)).split(run.cfg.batch_size):
            x = to_device(run.train.images[idx], run.device)
            y = run.train.labels[idx].to(run.device)
            self.noise[idx] = run.engine(x, y, g, init=self.noise[idx].to(x)).cpu()

    def finished(self, run: "TrainingRun") -> bool:
        return self.done

    def checkpoint_tensors(self) -> dict[str, torch.Tensor]:
        return {NOISE_TENSOR: self.noise}

    def load_checkpoint_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        self.noise = tensors.get(NOISE_TENSOR, self.noise)
