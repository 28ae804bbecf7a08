"""Image-quality metrics between an original and its protected version, and the
confidence interval of an accuracy measured on a finite test set."""

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


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (as fractions); (0, 1) when ``n`` is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
