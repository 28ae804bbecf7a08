"""Countermeasures an unauthorized trainer may use against unlearnable examples.

Each ``--defense`` value names one:

- ``none``: plain training;
- ``grayscale``: train *and test* on grayscale images (ISS, Liu et al. 2023);
- ``jpeg:Q`` (Q default 10): JPEG-compress the training images once;
- ``median:K``, ``mean:K``, ``gaussian:K`` (K default 3): filter the training images once;
- ``cutout``: a random 16x16 (half-side for other sizes) square zeroed per image, per batch;
- ``mixup``: convex mixing of image pairs, λ ~ Beta(1, 1), per batch;
- ``cutmix``: a random box pasted from another image, λ ~ Beta(1, 1), per batch;
- ``ueraser-lite``: per batch, plasma brightness, plasma contrast, channel shuffle and
  a random JPEG (quality 10-50), after UEraser (Qin et al. 2023).

"Once" defenses transform the whole training tensor before training; "per batch"
ones run on every minibatch.  Everything is batched (kornia for JPEG and filters).
JPEG is kornia's differentiable codec (standard tables, 4:2:0), not libjpeg.
"""

from __future__ import annotations

from dataclasses import dataclass

import kornia
import kornia.augmentation as K
import torch
import torch.nn.functional as F

ONCE = ("grayscale", "jpeg", "median", "mean", "gaussian")
PER_BATCH = ("cutout", "mixup", "cutmix", "ueraser-lite")
NAMES = ("none",) + ONCE + PER_BATCH


class DefenseError(ValueError):
    """An unknown or malformed ``--defense`` value."""


@dataclass(frozen=True)
class Defense:
    """A parsed ``--defense`` value: its name and its numeric argument (if any)."""

    name: str = "none"
    arg: int | None = None

    @property
    def label(self) -> str:
        return self.name if self.arg is None else f"{self.name}:{self.arg}"

    @property
    def applies_to_test(self) -> bool:
        return self.name == "grayscale"


DEFAULT_ARGS = {"jpeg": 10, "median": 3, "mean": 3, "gaussian": 3}


def parse(value: str) -> Defense:
    """``"jpeg:10"`` -> Defense("jpeg", 10); raises :class:`DefenseError` naming the choices."""
    name, _, arg = value.strip().lower().partition(":")
    if name not in NAMES:
        raise DefenseError(f"unknown defense {value!r}; choose from: {', '.join(NAMES)}")
    if name not in DEFAULT_ARGS:
        if arg:
            raise DefenseError(f"defense {name!r} takes no argument (got {value!r})")
        return Defense(name)
    try:
        number = int(arg) if arg else DEFAULT_ARGS[name]
    except ValueError as e:
        raise DefenseError(f"defense {value!r}: the argument must be an integer") from e
    if name == "jpeg" and not 1 <= number <= 100:
        raise DefenseError(f"defense {value!r}: JPEG quality must be in 1..100")
    if name != "jpeg" and (number < 3 or number % 2 == 0):
        raise DefenseError(f"defense {value!r}: the kernel size must be odd and at least 3")
    return Defense(name, number)


def grayscale(x: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> luma replicated on three channels (ITU-R 601 weights)."""
    return kornia.color.rgb_to_grayscale(x).expand_as(x).contiguous()


def jpeg(x: torch.Tensor, quality: float | torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """JPEG-compress a batch at ``quality`` (a number or one per image)."""
    out = []
    q = torch.as_tensor(quality, dtype=x.dtype, device=x.device).expand(len(x))
    for start in range(0, len(x), batch_size):
        sl = slice(start, start + batch_size)
        out.append(kornia.enhance.jpeg_codec_differentiable(x[sl], q[sl]).clamp(0, 1))
    return torch.cat(out)


def apply_once(defense: Defense, images: torch.Tensor) -> torch.Tensor:
    """Apply a one-time defense to a whole float data set (N, 3, H, W) in [0, 1]."""
    with torch.no_grad():
        if defense.name == "grayscale":
            return grayscale(images)
        if defense.name == "jpeg":
            return jpeg(images, float(defense.arg))
        k = defense.arg
        if defense.name == "median":
            return kornia.filters.median_blur(images, (k, k))
        if defense.name == "mean":
            return kornia.filters.box_blur(images, (k, k), border_type="reflect")
        if defense.name == "gaussian":
            sigma = 0.3 * ((k - 1) * 0.5 - 1) + 0.8          # OpenCV's default sigma for a k x k kernel
            return kornia.filters.gaussian_blur2d(images, (k, k), (sigma, sigma), border_type="reflect")
    return images


@dataclass
class MixedBatch:
    """A training batch whose loss mixes two label sets: λ·L(y_a) + (1 − λ)·L(y_b)."""

    images: torch.Tensor
    labels_a: torch.Tensor
    labels_b: torch.Tensor
    lam: torch.Tensor  # (N,) per-image weight of labels_a

    def loss(self, logits: torch.Tensor) -> torch.Tensor:
        la = F.cross_entropy(logits, self.labels_a, reduction="none")
        lb = F.cross_entropy(logits, self.labels_b, reduction="none")
        return (self.lam * la + (1 - self.lam) * lb).mean()


class BatchDefense:
    """A per-batch defense with its own random stream (``generator``)."""

    def __init__(self, defense: Defense) -> None:
        self.defense = defense
        if defense.name == "ueraser-lite":
            self.ueraser = K.AugmentationSequential(
                K.RandomPlasmaBrightness(roughness=(0.3, 0.7), intensity=(0.5, 1.0), p=0.5),
                K.RandomPlasmaContrast(roughness=(0.3, 0.7), p=0.5),
                K.RandomChannelShuffle(p=0.5),
            )

    def __call__(self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> MixedBatch:
        n, _, h, w = x.shape
        lam = torch.ones(n, device=x.device)
        y_b = y
        name = self.defense.name
        if name == "cutout":
            x = x * _box_masks(n, h, w, torch.full((n,), 0.25), generator).to(x.device).logical_not()
        elif name in ("mixup", "cutmix"):
            perm = torch.randperm(n, generator=generator).to(x.device)
            lam_draw = torch.rand(n, generator=generator)                 # Beta(1, 1) is U(0, 1)
            y_b = y[perm]
            if name == "mixup":
                lam = lam_draw.to(x.device)
                x = lam.view(-1, 1, 1, 1) * x + (1 - lam.view(-1, 1, 1, 1)) * x[perm]
            else:
                mask = _box_masks(n, h, w, 1 - lam_draw, generator).to(x.device)
                x = torch.where(mask, x[perm], x)
                lam = 1 - mask.flatten(1).float().mean(1)
        elif name == "ueraser-lite":
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
                x = self.ueraser(x)
                quality = 10 + 40 * torch.rand(n, generator=generator).to(x.device)
                x = jpeg(x, quality)
        return MixedBatch(x, y, y_b, lam)


def _box_masks(n: int, h: int, w: int, area: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """(N, 1, H, W) boolean masks of random squares-ish boxes covering ``area`` fraction each."""
    side_h = (h * area.sqrt()).round().long().clamp(0, h)
    side_w = (w * area.sqrt()).round().long().clamp(0, w)
    cy = (torch.rand(n, generator=generator) * h).long()
    cx = (torch.rand(n, generator=generator) * w).long()
    top, left = (cy - side_h // 2).clamp(0, h), (cx - side_w // 2).clamp(0, w)
    bottom, right = (top + side_h).clamp(0, h), (left + side_w).clamp(0, w)
    rows = torch.arange(h)[None, :]
    cols = torch.arange(w)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < bottom[:, None])      # (N, H)
    in_cols = (cols >= left[:, None]) & (cols < right[:, None])      # (N, W)
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]
