"""Image-quality metrics between an original and its protected version."""

from __future__ import annotations

import math

import torch


def psnr(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """PSNR in dB between two uint8 images of the same shape (None when identical)."""
    mse = (a.float() - b.float()).square().mean().item()
    return None if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def ssim_batch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM of two uint8 batches ``(N, C, H, W)`` (Gaussian window 11, or smaller for tiny images)."""
    from pytorch_msssim import ssim  # only eval needs it; keep protect's start-up lean

    win = min(11, a.shape[-1], a.shape[-2])
    win -= 1 - win % 2                                    # odd window
    return ssim(a.float(), b.float(), data_range=255, size_average=False, win_size=win)
