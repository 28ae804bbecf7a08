"""Measurements: image quality between an original and its protected version (PSNR,
SSIM, L∞ over file pairs), a classifier's accuracy, and the confidence interval of an
accuracy measured on a finite test set."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .engine.attacks import PGD, eval_mode
from .io.datasets import DatasetError, to_device
from .io.images import read_image


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


def low_frequency_share(original: torch.Tensor, protected: torch.Tensor, block: int = 16) -> float:
    """Share of the noise's energy in its ``block``×``block`` block averages.

    ``original`` and ``protected``: ``(C, H, W)`` (or batched) uint8 of one image.  The
    noise δ = protected − original is split into its block means (the part that varies
    more slowly than ``block`` pixels: bands and blotches) and the rest; the share is
    ‖block means‖² / ‖δ‖².  White noise gives about 1/block², a constant shift 1.
    The image is cropped to whole blocks.  0 when nothing changed.
    """
    delta = (protected.float() - original.float())
    if delta.dim() == 3:
        delta = delta[None]
    h, w = delta.shape[-2] // block * block, delta.shape[-1] // block * block
    if h == 0 or w == 0:
        raise ValueError(f"image smaller than one {block}x{block} block")
    delta = delta[..., :h, :w]
    total = delta.square().sum().item()
    if total == 0:
        return 0.0
    means = F.avg_pool2d(delta, block)
    return means.square().sum().item() * block * block / total


def spectral_low_share(original: torch.Tensor, protected: torch.Tensor, period: float = 16) -> float:
    """Share of the noise's energy at spatial periods longer than ``period`` pixels, from
    its Fourier spectrum (radial frequency below 1/``period`` cycles per pixel, DC included).

    A cross-check of :func:`low_frequency_share` that knows nothing of block grids, so a
    noise shaped against 16×16 blocks (``protect --highpass``) cannot pass it by alignment
    alone.  White noise gives about π/period² (the disc's share of the frequency square),
    a constant shift 1.
    """
    delta = (protected.float() - original.float())
    power = torch.fft.rfft2(delta).abs().square()
    fy = torch.fft.fftfreq(delta.shape[-2])[:, None]
    fx = torch.fft.rfftfreq(delta.shape[-1])[None, :]
    weight = torch.full_like(fx.expand(fy.shape[0], -1), 2.0)   # rfft keeps one of each ± pair of columns
    weight[:, 0] = 1
    if delta.shape[-1] % 2 == 0:
        weight[:, -1] = 1
    power = power * weight
    total = power.sum().item()
    if total == 0:
        return 0.0
    low = (fy.square() + fx.square()) < (1 / period) ** 2
    return (power * low).sum().item() / total


def wilson_interval(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (as fractions); (0, 1) when ``n`` is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def ratio_interval(successes_a: float, n_a: int, successes_b: float, n_b: int,
                   z: float = 1.96) -> tuple[float, float] | None:
    """95% interval of the ratio of two proportions, (successes_a / n_a) / (successes_b / n_b):
    Katz's log interval, exp(log ratio ± z·sqrt(1/a − 1/n_a + 1/b − 1/n_b)). With a zero count
    0.5 is added to every cell of the 2×2 table (each n grows by 1). ``None`` when either n is 0.

    Used for protected / clean accuracy: the two victims are tested on the same images, and
    their per-image outcomes are positively correlated, so this interval for independent samples
    is, if anything, wider than the paired one would be."""
    if n_a <= 0 or n_b <= 0:
        return None
    a, b, na, nb = successes_a, successes_b, n_a, n_b
    if a <= 0 or b <= 0:
        a, b, na, nb = a + 0.5, b + 0.5, na + 1, nb + 1
    centre = math.log((a / na) / (b / nb))
    half = z * math.sqrt(max(0.0, 1 / a - 1 / na + 1 / b - 1 / nb))
    return math.exp(centre - half), math.exp(centre + half)


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, device: torch.device | None = None,
             noise: torch.Tensor | None = None, attack: PGD | None = None, batch_size: int = 256) -> float:
    """Top-1 accuracy as a fraction, in eval mode (the model's mode is restored).

    ``images``: uint8 ``(N, C, H, W)`` (moved to ``device`` batch by batch) or float in
    [0, 1] already on the model's device; optionally on ``images + noise`` (clamped to
    [0, 1]) or under ``attack``.
    """
    device = device or next(model.parameters()).device
    correct = 0
    with eval_mode(model):
        for start in range(0, len(labels), batch_size):
            sl = slice(start, start + batch_size)
            x = to_device(images[sl], device) if images.dtype == torch.uint8 else images[sl]
            y = labels[sl].to(device)
            if noise is not None:
                x = (x + noise[sl].to(x)).clamp(0, 1)
            if attack is not None:
                x = attack(x, y)
            with torch.no_grad():
                correct += (model(x).argmax(1) == y).sum().item()
    return correct / max(1, len(labels))


def imperceptibility(pairs: list[tuple[Path, Path]]) -> dict[str, float]:
    """L∞ (levels), PSNR (dB) and SSIM between each protected file and its clean original, full size."""
    by_shape: dict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = defaultdict(list)
    linf, psnrs = [], []
    for clean_path, prot_path in pairs:
        a = torch.from_numpy(read_image(clean_path).pixels).permute(2, 0, 1)
        b = torch.from_numpy(read_image(prot_path).pixels).permute(2, 0, 1)
        if a.shape[0] != b.shape[0]:          # grayscale kept as RGB by lossless WebP
            a, b = a.expand(3, -1, -1), b.expand(3, -1, -1)
        if a.shape != b.shape:
            raise DatasetError(f"{prot_path}: size {tuple(b.shape[1:])} differs from {clean_path} {tuple(a.shape[1:])}")
        linf.append(int((a.int() - b.int()).abs().max()))
        p = psnr(a, b)
        psnrs.append(p if p is not None else math.inf)
        by_shape[tuple(a.shape)].append((a, b))
    ssims: list[float] = []
    for group in by_shape.values():
        for start in range(0, len(group), 256):
            chunk = group[start:start + 256]
            ssims += ssim_batch(torch.stack([a for a, _ in chunk]), torch.stack([b for _, b in chunk])).tolist()
    finite = [p for p in psnrs if math.isfinite(p)]
    return {"images": len(pairs), "linf_mean": sum(linf) / len(linf), "linf_max": max(linf),
            "psnr_mean": sum(finite) / max(1, len(finite)), "psnr_min": min(finite, default=math.inf),
            "ssim_mean": sum(ssims) / len(ssims), "ssim_min": min(ssims)}
