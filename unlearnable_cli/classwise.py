"""Class-wise error-minimizing noise (Huang et al. 2021, Section 4.1): one pattern per class.

Training (``train-generator --method em --class-wise``) keeps K patterns ``(K, 3, h, w)``
at the generator's input size, one per class, and alternates SGD steps of the model on
``x + δ_y`` with noise updates in which every pattern takes sign-gradient steps of the
loss summed over all of its class's training images:

    δ_c ← Π_{‖δ‖∞ ≤ ρ_u} ( δ_c − α_u · sign( Σ_{i: y_i = c} ∇_δ L(f(clip(x_i + δ_c)), c) ) )

(the official code averages per-batch updates instead; summing the gradient over the
class is the same objective, and batched).  ``protect`` then needs no optimization: an
image pushed to class c gets δ_c, resized bilinearly to the image's size.  Bilinear
weights are non-negative and sum to one, so every resized value stays within ±ρ_u, and
the 8-bit quantization clamps to the exact integer bound as for every method.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attacks import eval_mode
from .data import to_device

#: Tensor name of the patterns in a generator file (beside the model's own tensors).
PATTERNS = "classwise.patterns"


def initial_patterns(classes: int, size: tuple[int, int], radius: float, generator: torch.Generator) -> torch.Tensor:
    """Uniform patterns in the ρ_u ball, ``(K, 3, h, w)``."""
    return (2 * torch.rand(classes, 3, *size, generator=generator) - 1) * radius


def update_patterns(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, patterns: torch.Tensor,
                    steps: int, step_size: float, radius: float, device: torch.device,
                    batch_size: int = 256) -> torch.Tensor:
    """``steps`` sign-gradient steps of every class's pattern over the whole training set.

    ``images``: uint8 ``(N, 3, h, w)``; ``patterns`` ``(K, 3, h, w)`` float.  Each step is
    one pass over the images, gradients accumulated into the pattern of each image's
    class; returns the new patterns (CPU).  The model runs in eval mode, restored after.
    """
    delta = patterns.clone().to(device)
    with eval_mode(model):
        for _ in range(steps):
            grad = torch.zeros_like(delta)
            for start in range(0, len(labels), batch_size):
                x = to_device(images[start:start + batch_size], device)
                y = labels[start:start + batch_size].to(device)
                d = delta.clone().requires_grad_(True)
                loss = F.cross_entropy(model((x + d[y]).clamp(0, 1)), y, reduction="sum")
                grad += torch.autograd.grad(loss, d)[0]
            delta = (delta - step_size * grad.sign()).clamp(-radius, radius)
    return delta.cpu()


def apply_patterns(patterns: torch.Tensor, labels: torch.Tensor, size: tuple[int, int],
                   gray: bool = False) -> torch.Tensor:
    """δ for a batch of images of ``size`` (H, W) pushed to ``labels``: ``(B, 3 or 1, H, W)``.

    Grayscale images get the channel mean (one value per pixel, as the noise engine's
    ``shared_channels``), which stays within the bound too.
    """
    delta = patterns[labels.to(patterns.device)]
    if tuple(delta.shape[-2:]) != tuple(size):
        delta = F.interpolate(delta, size=size, mode="bilinear", align_corners=False)
    return delta.mean(1, keepdim=True) if gray else delta
