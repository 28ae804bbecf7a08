"""PIL, perturbation-induced linearization (Liu, Chen and Zhang, ICLR 2026): a linear surrogate.

Training (``train-generator --method pil``) fits a bias-free linear classifier
f(x) = W · vec(x) (:class:`~..models.architectures.LinearClassifier`) on the clean images,
by plain SGD on the cross-entropy: no adversarial step, no noise, no augmentation.  On
this CPU that takes a minute, not SEM's hours.

Protect minimizes, by sign-PGD within the bound, the paper's objective

    λ · CE(f(−t(δ)), y) + (1 − λ) · KL(U ‖ softmax f(t(x + δ)))

and releases x + δ.  The paper writes it with its δ' = −δ and releases x − δ'; the two
are the same.  The first term makes the perturbation alone a linear shortcut to the
label. The second makes the perturbed image carry no linear information about the label
beyond it; U is the uniform distribution. ``t`` is how the surrogate sees a photo: a
resize to its input size (the card's transform is the identity, so one draw per step;
``--eot-samples`` and ``--eot-scale`` add random crops of at least that share of each
side, as for SEM). A linear f is linear in its input, so
f(t(x + δ)) − f(t(x)) = f(t(δ)).

Departures from the authors' code (github.com/jinlinll/pil, read, not copied):
- The surrogate is one bias-free linear layer. The code stacks two bias-free layers
  (3072 → K → K), which is the same function class.
- Its SGD uses protect's step schedule: ×0.1 at 40% and 80% of the steps. The code uses
  a cosine schedule, 30 epochs, batch 512, lr 0.003, momentum 0.9, no weight decay.
- The noise takes protect's defaults for every method: 10 steps of ρ_u/5. The code takes
  30 steps of 0.8/255. Both let δ travel twice the bound; :attr:`PIL.protect_options`
  lets a person ask for the paper's.
- Photos of any size: the noise lives at full resolution, and the surrogate sees it
  through the resize above.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ConfigError, NoiseConfig, Perturbation, TrainConfig
from ..engine import transforms
from ..engine.attacks import eval_mode, uniform_like
from ..engine.noise import ball_bounds
from ..io.datasets import to_device
from . import register
from .base import CardFields, NoiseFn, UnlearnableMethod

if TYPE_CHECKING:
    from ..models.weights import GeneratorCard
    from ..train.run import TrainingRun

#: PIL's recipe (the authors' code, scaled to this project's step-based loop): a linear
#: surrogate, SGD at lr 0.003 with momentum 0.9, no weight decay, batch 512, 600 steps
#: (30 epochs of a 10k-image set); no augmentation, no adversarial training.
PIL_DEFAULTS: dict[str, object] = dict(arch="linear", lr=0.003, momentum=0.9, weight_decay=0.0, batch_size=512,
                                       steps=600, adv_radius=0.0, adv_steps=0, pad=0, flip=False,
                                       noise_steps=30, step_size=0.8 / 255, eot_samples=1)


@dataclass(frozen=True)
class PILFields(CardFields):
    """PIL's card field: λ."""

    pil_lambda: float = 0.9


class LinearNoise:
    """PIL's perturbation against a linear surrogate ``model`` (see the module docstring).

    ``noise(images, labels)``: ``images`` ``(B, 3, H, W)`` in [0, 1], ``labels`` ``(B,)``;
    returns δ ``(B, 3, H, W)``, or ``(B, 1, H, W)`` with ``shared_channels`` (one change
    for R, G and B), with |δ| ≤ ρ_u (or the per-pixel ``radius``) and images + δ in
    [0, 1].  δ starts uniform in the bound.  The model's mode is restored.
    """

    def __init__(self, model: nn.Module, config: NoiseConfig, input_hw: tuple[int, int], lam: float = 0.9) -> None:
        self.model, self.config, self.input_hw, self.lam = model, config, input_hw, lam

    def loss(self, images: torch.Tensor, delta: torch.Tensor, y: torch.Tensor, params: transforms.Params) -> torch.Tensor:
        """λ · CE(f(−t(δ)), y) + (1 − λ) · KL(U ‖ softmax f(t(x + δ))), summed over the draws."""
        seen = self.model(transforms.apply(images + delta, params))
        shortcut = -self.model(transforms.apply(delta.expand_as(images), params))
        ce = F.cross_entropy(shortcut, y, reduction="sum")
        kl = -(F.log_softmax(seen, 1).mean(1) + math.log(seen.shape[1])).sum()
        return self.lam * ce + (1 - self.lam) * kl

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None, *,
                 shared_channels: bool = False, on_step: Callable[[int, int], None] | None = None,
                 radius: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        images = images.detach()
        bound = cfg.radius if radius is None else radius
        lo, hi = ball_bounds(images, bound, shared_channels)
        delta = torch.clamp(uniform_like(images[:, :1] if shared_channels else images, bound, generator), lo, hi)
        b, _, h, w = images.shape
        y = labels.repeat(cfg.eot_samples)
        with eval_mode(self.model):
            for step in range(cfg.steps):
                delta.requires_grad_(True)
                params = transforms.sample_params(cfg.transform, cfg.eot_samples * b, (h, w), self.input_hw,
                                                  generator, images.device)
                grad, = torch.autograd.grad(self.loss(images, delta, y, params), delta)
                delta = torch.clamp(delta.detach() - cfg.step_size * grad.sign(), lo, hi)
                if on_step is not None:
                    on_step(step + 1, cfg.steps)
        return delta


@register
class PIL(UnlearnableMethod):
    """A linear surrogate fitted on clean data; protect's noise by PIL's objective."""

    name = "pil"
    perturbation = Perturbation.NONE
    train_defaults = PIL_DEFAULTS
    own_train_options = ("pil_lambda",)
    protect_options = ("--steps", "--step-size", "--eot-samples", "--eot-scale")
    fields = PILFields

    @classmethod
    def validate(cls, cfg: TrainConfig) -> None:
        if cfg.arch != "linear":
            raise ConfigError(f"--method pil fits a linear surrogate; --arch {cfg.arch} is not one")
        if not 0 <= cfg.pil_lambda <= 1:
            raise ConfigError("--pil-lambda must be in [0, 1]")

    @classmethod
    def deterministic_noise(cls, cfg: TrainConfig) -> bool:
        return True

    def train_step(self, run: "TrainingRun") -> dict[str, Any]:
        """One SGD step of the linear surrogate on clean images."""
        idx = run.batch_indices()
        x = to_device(run.train.images[idx], run.device)
        loss, acc = run.update(x, run.train.labels[idx].to(run.device))
        run.step += 1
        return {"step": run.step, "loss": loss, "acc": acc}

    def final_noise(self, run: "TrainingRun", pick: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                    g: torch.Generator) -> torch.Tensor:
        noise = LinearNoise(run.model, run.noise_cfg, (run.cfg.image_size,) * 2, run.cfg.pil_lambda)
        return torch.cat([noise(xb, yb, g) for xb, yb in zip(x.split(128), y.split(128))])

    def protect_noise(self, model: nn.Module, card: "GeneratorCard", noise_config: NoiseConfig,
                      extras: dict[str, torch.Tensor], device: torch.device) -> NoiseFn:
        lam = float(PILFields.from_card(card).pil_lambda)  # type: ignore[attr-defined]
        return LinearNoise(model, noise_config, tuple(card.input_size), lam)  # type: ignore[return-value]
