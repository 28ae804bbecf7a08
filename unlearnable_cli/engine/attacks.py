"""Projected gradient descent that *maximizes* the loss (Madry et al.).

Used for the adversarial-training step of generator training (δᵃ in SEM's
Algorithm 1), inside REM's min-min-max noise, and by adversarially trained victims
in ``eval``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn
import torch.nn.functional as F

from ..config.common import ADV_RADIUS, ADV_STEP_SIZE


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block and restore its previous mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def uniform_like(x: torch.Tensor, radius: float | torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """A tensor shaped like ``x`` drawn from U(-radius, radius), reproducible on any device.

    Draws on the CPU with ``generator`` (so a seed gives the same numbers everywhere)
    and moves the result to ``x``'s device.
    """
    u = torch.rand(x.shape, generator=generator, dtype=torch.float32).to(x.device)
    return ((2 * u - 1) * radius).to(memory_format=torch.preserve_format)


class PGD:
    """L∞ PGD attack with a uniform random start.

    Arguments (paper defaults of SEM's ρ_a / α_a / K_a):
        model: classifier taking images in [0, 1].
        eps: radius ρ_a in [0, 1] units (4/255).
        alpha: step size α_a (0.8/255).
        steps: number of steps K_a (10).
        random_start: start from U(-eps, eps) instead of the clean image.

    ``attack(images, labels)`` takes ``images`` of shape ``(N, C, H, W)`` in [0, 1]
    and integer ``labels`` ``(N,)``, and returns adversarial images of the same
    shape, within ``eps`` of ``images`` and inside [0, 1], detached.  The model is
    run in eval mode and its previous mode is restored afterwards.
    """

    def __init__(self, model: nn.Module, eps: float = ADV_RADIUS, alpha: float = ADV_STEP_SIZE,
                 steps: int = 10, random_start: bool = True) -> None:
        self.model, self.eps, self.alpha, self.steps = model, eps, alpha, steps
        self.random_start = random_start

    def __call__(self, images: torch.Tensor, labels: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        images = images.detach()
        if self.eps <= 0 or self.steps <= 0:
            return images
        adv = images
        if self.random_start:
            adv = (images + uniform_like(images, self.eps, generator)).clamp(0, 1)
        with eval_mode(self.model):
            for _ in range(self.steps):
                adv = adv.detach().requires_grad_(True)
                loss = F.cross_entropy(self.model(adv), labels)
                (grad,) = torch.autograd.grad(loss, adv)
                adv = adv.detach() + self.alpha * grad.sign()
                adv = torch.min(torch.max(adv, images - self.eps), images + self.eps).clamp(0, 1)
        return adv.detach()
