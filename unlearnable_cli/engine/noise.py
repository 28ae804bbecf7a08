"""The error-minimizing noise engine shared by ``protect`` and ``train-generator``.

One implementation of the inner minimization of SEM's Algorithm 1 (lines 2-9):

    δ ← Π_{‖δ‖∞ ≤ ρ_u, x+δ ∈ [0,1]} ( δ − α_u · sign( Σ_j ∇_δ L(f(t_j(x+δ) + δʳ_j), y) ) )

with the method (:mod:`unlearnable_cli.methods`) deciding δʳ_j through ``perturbation``:

- ``uniform``: δʳ_j ~ U(−ρ_r, ρ_r) (SEM, stable error-minimizing noise, Liu et al. 2024; TUE);
- ``worst-case``: δʳ_j = PGD maximization of the loss within ρ_r (REM, robust EM, Fu et al. 2022);
- ``none``:  δʳ_j = 0 (EM, error-minimizing noise, Huang et al. 2021);

and TUE adding, with ``score_step`` > 0, a second sign step per iteration,
−α_s·sign(∇_δ Σ_i ‖s_φ(x_i + δ_i, y_i)‖), that moves each image towards a mode of its
class's density under TUE's score estimator (data collapse, Fang et al.; :mod:`methods.score`).

With ``highpass`` > 1 (``protect --highpass``, for photos) each step also removes
δ's structure coarser than that many pixels (:func:`coarse_part`) before the
projection, so the noise cannot form bands; the bound is enforced after it.

All J draws of all images are sampled and transformed in batched tensor ops
(draw-major); on a CPU the model sees them in balanced chunks of whole draws of at
most ``max_forward`` images, because there one 640-image forward is far slower per
image than five 128-image ones (measured in bench/train_speed.py); on CUDA all
J*B go through the model at once.  t_j comes from
:mod:`unlearnable_cli.transforms`; the surrogate is frozen in eval mode.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn
import torch.nn.functional as F

from . import transforms
from .attacks import PGD, eval_mode, uniform_like
from ..config import NoiseConfig, Perturbation

__all__ = ["ErrorMinimizingNoise", "NoiseConfig", "Perturbation", "ball_bounds", "coarse_part", "draws_per_chunk"]


class ErrorMinimizingNoise:
    """Compute bounded defensive noise δᵘ that makes ``model`` confident on ``(x + δᵘ, y)``.

    ``noise(images, labels)`` takes ``images`` ``(B, C, H, W)`` in [0, 1] (any H, W;
    the transform resizes to the model's ``input_hw``) and labels ``(B,)``, and
    returns δ of shape ``(B, C, H, W)`` (``(B, 1, H, W)`` with ``shared_channels``,
    the same noise on every channel, for grayscale images) with ‖δ‖∞ ≤ ρ_u and
    ``images + δ`` in [0, 1].  δ starts uniform in the ρ_u ball unless ``init`` is
    given (EM keeps a persistent noise across rounds).  ``radius`` ``(B, 1, H, W)``,
    if given, is a per-pixel bound (each ≤ ρ_u) used instead of ρ_u (:mod:`budget`).
    ``on_step(k, K_u)`` is called after each step (progress for large photos).  The
    model's mode is restored.
    """

    def __init__(self, model: nn.Module, config: NoiseConfig = NoiseConfig(),
                 input_hw: tuple[int, int] = (32, 32), score_model: nn.Module | None = None) -> None:
        self.model, self.config, self.input_hw = model, config, input_hw
        self.score_model = score_model if config.score_step > 0 else None
        self._rem_attack = PGD(model, config.random_radius, config.adv_step_size, config.adv_steps)

    def _random_perturbation(self, xt: torch.Tensor, y: torch.Tensor,
                             generator: torch.Generator | None) -> torch.Tensor:
        """δʳ for one step: uniform (SEM), worst-case PGD (REM) or none (EM)."""
        cfg = self.config
        if cfg.perturbation is Perturbation.UNIFORM and cfg.random_radius > 0:
            return uniform_like(xt, cfg.random_radius, generator)
        if cfg.perturbation is Perturbation.WORST_CASE and cfg.random_radius > 0:
            return self._rem_attack(xt, y, generator) - xt.detach()
        return torch.zeros((), device=xt.device)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor,
                 generator: torch.Generator | None = None, init: torch.Tensor | None = None,
                 shared_channels: bool = False,
                 on_step: Callable[[int, int], None] | None = None,
                 radius: torch.Tensor | None = None) -> torch.Tensor:
        cfg = self.config
        images = images.detach()
        base = images[:, :1] if shared_channels else images
        bound = cfg.radius if radius is None else radius
        lo, hi = ball_bounds(images, bound, shared_channels)
        delta = uniform_like(base, bound, generator) if init is None else init.detach().clone()
        delta = torch.clamp(delta, lo, hi)
        b, _, h, w = images.shape
        n = cfg.eot_samples * b
        cap = cfg.max_forward if images.device.type == "cpu" else n
        chunk = draws_per_chunk(cfg.eot_samples, b, cap) * b
        y = labels.repeat(cfg.eot_samples)
        with eval_mode(self.model):
            for step in range(cfg.steps):
                delta.requires_grad_(True)
                params = transforms.sample_params(cfg.transform, n, (h, w), self.input_hw,
                                                  generator, images.device)
                gray = (torch.rand(n, generator=generator) < cfg.grayscale_draws).to(images.device) \
                    if cfg.grayscale_draws > 0 else None
                grad = torch.zeros_like(delta)
                for start in range(0, n, chunk):
                    rows = slice(start, start + chunk)
                    xt = transforms.apply(images + delta, params[rows])
                    if gray is not None:
                        xt = transforms.grayscale_where(xt, gray[rows])
                    r = self._random_perturbation(xt, y[rows], generator)
                    loss = F.cross_entropy(self.model(xt + r), y[rows], reduction="sum")
                    grad += torch.autograd.grad(loss, delta)[0]
                collapse = self._collapse_gradient(images, delta, labels) if self.score_model is not None else None
                delta = delta.detach()                     # in place: full-resolution tensors are large
                if cfg.highpass > 1:                       # steepest sign step within the fine band
                    grad.sub_(coarse_part(grad, cfg.highpass))
                delta.sub_(grad.sign_(), alpha=cfg.step_size)
                if collapse is not None:
                    delta.sub_(collapse.sign_(), alpha=cfg.score_step)
                if cfg.highpass > 1:
                    delta.sub_(coarse_part(delta, cfg.highpass))
                delta.clamp_(lo, hi)
                if on_step is not None:
                    on_step(step + 1, cfg.steps)
        return delta


    def _collapse_gradient(self, images: torch.Tensor, delta: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """∇_δ Σ_i ‖s_φ(x_i + δ_i, y_i)‖₂, the score estimator seeing the images as the
        generator does (resized to its input; no random transform)."""
        x = transforms.resize_to(images + delta, self.input_hw)
        with eval_mode(self.score_model):  # type: ignore[arg-type]
            norm = self.score_model(x, labels).flatten(1).norm(dim=1).sum()  # type: ignore[misc]
        return torch.autograd.grad(norm, delta)[0]


def coarse_part(delta: torch.Tensor, size: int) -> torch.Tensor:
    """The part of ``delta`` ``(B, C, H, W)`` that varies more slowly than ``size`` pixels:
    its ``size``×``size`` block means, bilinearly interpolated back to full size.

    ``protect --highpass`` subtracts it after every step, so that sign steps cannot
    drive whole regions to ±ρ_u together (the bands and blotches that show on skin or
    sky); what is left is finer than ``size`` pixels.  Linear, O(H·W), no larger
    temporary than ``delta``.  Images smaller than one block are returned unchanged.
    """
    h, w = delta.shape[-2:]
    if min(h, w) < size:
        return torch.zeros((), device=delta.device, dtype=delta.dtype)
    means = F.avg_pool2d(delta, size, ceil_mode=True)
    return F.interpolate(means, size=(h, w), mode="bilinear", align_corners=False)


def draws_per_chunk(draws: int, batch: int, cap: int) -> int:
    """Whole draws per model call: as few calls as ``cap`` images per call allow, balanced."""
    calls = math.ceil(draws * batch / max(cap, batch))
    return math.ceil(draws / calls)


def ball_bounds(images: torch.Tensor, radius: float | torch.Tensor,
                shared_channels: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel bounds (lo, hi) on δ: |δ| ≤ radius (a number, or a tensor that
    broadcasts against ``images``) and images + δ inside [0, 1].  ``shared_channels``:
    bounds (B, 1, H, W) on one change for every channel, inside [0, 1] on all of them."""
    if isinstance(radius, torch.Tensor):
        lo, hi = torch.maximum(-images, -radius), torch.minimum(1 - images, radius)
    else:
        lo, hi = (-images).clamp(min=-radius), (1 - images).clamp(max=radius)
    if shared_channels:
        lo, hi = lo.amax(1, keepdim=True), hi.amin(1, keepdim=True)
    return lo, hi
