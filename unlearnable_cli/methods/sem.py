"""SEM, stable error-minimizing noise (Liu et al., AAAI 2024): the project's default method.

Training, SEM's Algorithm 1 per step (minibatch x, y):
  1. δᵘ = the noise engine (K_u sign-PGD steps minimizing the loss over J draws of
     (t_j, δʳ_j), δʳ_j uniform in ±ρ_r);
  2. t ~ T, δᵃ = PGD(t(x + δᵘ)) maximizing within ρ_a (K_a steps, random start);
  3. one SGD step on f(t(x + δᵘ) + δᵃ) in train mode.
Under torchrun every rank takes its share of the step's global minibatch with its own
random stream (docs/distributed.md).  Protect: the same engine against the trained surrogate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..engine import seeding, transforms
from ..config import Perturbation
from ..io.datasets import to_device
from . import register
from .base import UnlearnableMethod

if TYPE_CHECKING:
    from ..train.run import TrainingRun


@register
class SEM(UnlearnableMethod):
    """Stable error-minimizing noise: uniform δʳ in the noise, an adversarially trained surrogate."""

    name = "sem"
    perturbation = Perturbation.UNIFORM

    def train_step(self, run: "TrainingRun") -> dict[str, Any]:
        """Algorithm 1, lines 2-12, for step ``run.step``; advances it by one."""
        cfg = run.cfg
        g = seeding.generator(cfg.seed, "step", run.step)
        idx = run.batch_indices()
        if run.shard.torchrun:              # this rank's share of the global minibatch, its own draws
            g = seeding.generator(cfg.seed, "step", run.step, "rank", run.shard.index, run.shard.count)
            idx = idx[run.shard.index::run.shard.count]
        x = to_device(run.train.images[idx], run.device)
        y = run.train.labels[idx].to(run.device)
        delta = run.engine(x, y, g)
        size = (cfg.image_size, cfg.image_size)
        params = transforms.sample_params(cfg.transform_spec(), len(y), size, size, g, run.device)
        loss, acc = run.update(run.attack(transforms.apply(x + delta, params), y, g), y)
        run.step += 1
        return {"step": run.step, "loss": loss, "adv_acc_defended": acc}
