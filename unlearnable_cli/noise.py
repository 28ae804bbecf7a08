"""The error-minimizing noise engine shared by ``protect`` and ``train-generator``.

One implementation of the inner minimization of SEM's Algorithm 1 (lines 2-9):

    δ ← Π_{‖δ‖∞ ≤ ρ_u, x+δ ∈ [0,1]} ( δ − α_u · sign( Σ_j ∇_δ L(f(t_j(x+δ) + δʳ_j), y) ) )

with the method deciding δʳ_j:

- ``sem``: δʳ_j ~ U(−ρ_r, ρ_r) (stable error-minimizing noise, Liu et al. 2024);
- ``rem``: δʳ_j = PGD maximization of the loss within ρ_r (robust EM, Fu et al. 2022);
- ``em``:  δʳ_j = 0 (error-minimizing noise, Huang et al. 2021).

All J draws of all images run as one batch (draw-major), t_j comes from
:mod:`unlearnable_cli.transforms`, and the surrogate is frozen in eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch
from torch import nn
import torch.nn.functional as F

from . import transforms
from .attacks import PGD, eval_mode, uniform_like


class Method(str, Enum):
    """Which unlearnable-examples method shapes the noise (and the generator training)."""

    SEM = "sem"
    REM = "rem"
    EM = "em"


@dataclass(frozen=True)
class NoiseConfig:
    """Hyperparameters of the noise optimization, all in [0, 1] pixel units.

    Defaults are the SEM paper's CIFAR-10 recipe: ρ_u = 8/255, α_u = 1.6/255,
    K_u = 10, J = 5, ρ_r = ρ_a = 4/255 (and, for REM's inner maximization,
    α_a = 0.8/255 with K_a = 10 steps).
    """

    method: Method = Method.SEM
    radius: float = 8 / 255          # ρ_u, the promised L∞ bound
    step_size: float = 1.6 / 255     # α_u
    steps: int = 10                  # K_u
    eot_samples: int = 5             # J, draws of (t_j, δʳ_j) averaged per step
    random_radius: float = 4 / 255   # ρ_r (SEM's uniform δʳ, REM's PGD radius)
    adv_step_size: float = 0.8 / 255  # α_a, REM's inner PGD step
    adv_steps: int = 10              # K_a, REM's inner PGD steps
    transform: transforms.TransformSpec = transforms.TransformSpec()


class ErrorMinimizingNoise:
    """Compute bounded defensive noise δᵘ that makes ``model`` confident on ``(x + δᵘ, y)``.

    ``noise(images, labels)`` takes ``images`` ``(B, C, H, W)`` in [0, 1] (any H, W;
    the transform resizes to the model's ``input_hw``) and labels ``(B,)``, and
    returns δ of shape ``(B, C, H, W)`` (``(B, 1, H, W)`` with ``shared_channels``,
    the same noise on every channel, for grayscale images) with ‖δ‖∞ ≤ ρ_u and
    ``images + δ`` in [0, 1].  δ starts uniform in the ρ_u ball unless ``init`` is
    given (EM keeps a persistent noise across rounds).  The model's mode is restored.
    """

    def __init__(self, model: nn.Module, config: NoiseConfig = NoiseConfig(),
                 input_hw: tuple[int, int] = (32, 32)) -> None:
        self.model, self.config, self.input_hw = model, config, input_hw
        self._rem_attack = PGD(model, config.random_radius, config.adv_step_size, config.adv_steps)

    def _random_perturbation(self, xt: torch.Tensor, y: torch.Tensor,
                             generator: torch.Generator | None) -> torch.Tensor:
        """δʳ for one step: uniform (SEM), worst-case PGD (REM) or none (EM)."""
        cfg = self.config
        if cfg.method is Method.SEM and cfg.random_radius > 0:
            return uniform_like(xt, cfg.random_radius, generator)
        if cfg.method is Method.REM and cfg.random_radius > 0:
            return self._rem_attack(xt, y, generator) - xt.detach()
        return torch.zeros((), device=xt.device)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor,
                 generator: torch.Generator | None = None, init: torch.Tensor | None = None,
                 shared_channels: bool = False) -> torch.Tensor:
        cfg = self.config
        images = images.detach()
        base = images[:, :1] if shared_channels else images
        if init is None:
            delta = uniform_like(base, cfg.radius, generator)
        else:
            delta = init.detach().clone()
        delta = project(delta, base, cfg.radius)
        b, _, h, w = images.shape
        n = cfg.eot_samples * b
        y = labels.repeat(cfg.eot_samples)
        with eval_mode(self.model):
            for _ in range(cfg.steps):
                delta.requires_grad_(True)
                params = transforms.sample_params(cfg.transform, n, (h, w), self.input_hw,
                                                  generator, images.device)
                xt = transforms.apply(images + delta, params)
                r = self._random_perturbation(xt, y, generator)
                loss = F.cross_entropy(self.model(xt + r), y)
                (grad,) = torch.autograd.grad(loss, delta)
                delta = project(delta.detach() - cfg.step_size * grad.sign(), base, cfg.radius)
        return delta.detach()


def project(delta: torch.Tensor, images: torch.Tensor, radius: float) -> torch.Tensor:
    """Π: clip δ to the L∞ ball of ``radius`` and keep ``images + δ`` inside [0, 1]."""
    delta = delta.clamp(-radius, radius)
    return (images + delta).clamp(0, 1) - images
