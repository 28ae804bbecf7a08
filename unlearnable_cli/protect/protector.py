"""The noise of one batch against one generator, quantized to the exact integer bound.

:class:`Protector` holds a loaded generator and the engine settings its method derives
from ``protect``'s options, and protects batches of same-shape images with the method's
protect-time step (:mod:`methods`: the optimized noise of SEM / REM / EM / TUE, or a
class-wise EM file's fixed pattern); then :func:`quantize` rounds to 8 bits so that no pixel
moves by more than the promised number of levels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..engine import transforms
from ..engine.budget import level_map
from ..config import ProtectConfig
from ..config.protect import Color
from ..engine.noise import ball_bounds
from ..methods import card_method
from ..models.weights import GeneratorCard, state_tensors, tensors_digest

def quantize(x_u8: torch.Tensor, delta: torch.Tensor, levels: int | torch.Tensor) -> torch.Tensor:
    """Round x + δ to 8 bits while guaranteeing |out − x| ≤ ``levels`` for every pixel
    (a number, or a per-pixel map that broadcasts against ``x_u8``).  One δ for the three
    channels of a colour photo (``--color luma``) is rounded to whole levels first, so
    every channel moves by the same integer (rounding x + δ would break ties by parity)."""
    base = x_u8.float()
    if delta.shape[1] == 1 and base.shape[1] == 3:
        moved = base + torch.round(delta * 255)
    else:
        moved = torch.round(base + delta * 255)
    return torch.minimum(torch.maximum(moved, base - levels), base + levels).clamp(0, 255).to(torch.uint8)


def check_options(card: GeneratorCard, given: list[str], path: Path | None = None) -> None:
    """Refuse options (``given``: the ones a person set) that the generator's method does not
    read: optimization options for a class-wise generator, ``--score-step`` for all but TUE."""
    card_method(card).refuse_protect_options(given, path)


class Protector:
    """Noise computation for batches of same-shape images against one generator."""

    def __init__(self, model: nn.Module, card: GeneratorCard, cfg: ProtectConfig,
                 device: torch.device, extras: dict[str, torch.Tensor] | None = None) -> None:
        self.model, self.card, self.cfg, self.device = model, card, cfg, device
        method = card_method(card)
        self.noise_config = method.protect_noise_config(cfg, card)
        self.extras = extras or {}
        self.noise = method().protect_noise(model, card, self.noise_config, self.extras, device)
        self.cloaker = None
        if cfg.against.cloaks:
            from .cloaking import Cloaker
            self.cloaker = Cloaker(cfg, device)

    @property
    def digest(self) -> str:
        """SHA-256 of the generator's tensors (model and extras), as its file records it."""
        return tensors_digest({**state_tensors(self.model), **{k: v.cpu() for k, v in self.extras.items()}})

    @property
    def class_names(self) -> list[str]:
        return self.card.class_names

    def thumbnail(self, image_u8: torch.Tensor) -> torch.Tensor:
        """``(1, C, H, W)`` uint8 -> the generator's view of it, ``(1, 3, h, w)`` in [0, 1] (for the scan)."""
        x = image_u8.to(self.device).float() / 255
        return self.thumbnails(x.expand(-1, 3, -1, -1))

    def thumbnails(self, images: torch.Tensor) -> torch.Tensor:
        """Deterministic full-frame resize of (B, 3, H, W) [0, 1] images to the generator input."""
        return transforms.resize_to(images, tuple(self.card.input_size))

    @torch.no_grad()
    def log_probs(self, thumbnails: torch.Tensor) -> torch.Tensor:
        """Generator log-probabilities (N, K) for images already at its input size."""
        return F.log_softmax(self.model(thumbnails.to(self.device)), 1).cpu()

    def protect(self, x_u8: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
                on_step: Callable[[int, int], None] | None = None,
                groups: list[str] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Protect a batch ``(B, C, H, W)`` uint8 (C = 1 grayscale or 3 RGB).

        Returns (protected uint8 of the same shape, surrogate loss of the protected images).
        ``on_step(k, K_u)`` reports the noise steps as they finish.  ``groups``: each
        image's folder, for the cloak (``--against recognizers|both``).
        """
        gray = x_u8.shape[1] == 1
        shared = gray or self.cfg.color is Color.LUMA         # one change for every channel
        x = x_u8.to(self.device).float() / 255
        x3 = x.expand(-1, 3, -1, -1) if gray else x
        labels = labels.to(self.device)
        levels = level_map(x_u8.to(self.device), self.cfg.radius_levels, self.cfg.budget)
        radius = levels / 255 if isinstance(levels, torch.Tensor) else None
        bound = self.cfg.radius if radius is None else radius
        if self.cfg.against.noise:
            delta = self.noise(x3, labels, generator, shared_channels=shared, on_step=on_step, radius=radius)
        else:
            delta = torch.zeros_like(x[:, :1] if shared else x)
        if self.cloaker is not None:
            delta = self.cloaker(x_u8, x3, delta, groups or [""] * len(x_u8), bound, generator)
        if shared:          # a method's pattern may leave [0, 1] in one channel: keep the change shared
            delta = delta.clamp(*ball_bounds(x3, bound, True))
        out = quantize(x_u8.to(self.device), delta, levels)
        out3 = (out.float() / 255).expand(-1, 3, -1, -1)
        after = -self.log_probs(self.thumbnails(out3)).gather(1, labels.cpu()[:, None])[:, 0]
        return out.cpu(), after
