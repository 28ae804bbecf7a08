"""Class-wise EM (Huang et al., ICLR 2021, Section 4.1): one error-minimizing pattern per class.

Training (``train-generator --method em --class-wise``) keeps K patterns ``(K, 3, h, w)``
at the generator's input size, one per class, and alternates SGD steps of the model on
``clip(x + δ_y)`` with noise updates in which every pattern takes sign-gradient steps of
the loss summed over all of its class's training images:

    δ_c ← Π_{‖δ‖∞ ≤ ρ_u} ( δ_c − α_u · sign( Σ_{i: y_i = c} ∇_δ L(f(clip(x_i + δ_c)), c) ) )

(the official code averages per-batch updates instead; summing the gradient over the
class is the same objective, and batched).  ``protect`` then needs no optimization: an
image pushed to class c gets δ_c, resized bilinearly to the image's size.  Bilinear
weights are non-negative and sum to one, so every resized value stays within ±ρ_u, and
the 8-bit quantization clamps to the exact integer bound as for every method.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..engine import seeding
from ..engine.attacks import eval_mode
from ..config import ConfigError, NoiseConfig, TrainConfig
from ..io.datasets import to_device
from . import register
from .base import NOISE_OPTIONS, NoiseFn
from .em import EM

if TYPE_CHECKING:
    from ..train.run import TrainingRun
    from ..models.weights import GeneratorCard





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


@register
class ClassWiseEM(EM):
    """EM with one fixed pattern per class; protect adds the class's pattern, no optimization."""

    name = "em"
    class_wise = True
    protect_options = ()

    @classmethod
    def validate(cls, cfg: TrainConfig) -> None:
        if cfg.highpass:
            raise ConfigError("--highpass does not apply to --class-wise patterns")

    @classmethod
    def refuse_protect_options(cls, given: list[str], path: Path | None = None) -> None:
        unused = [o for o in given if o in NOISE_OPTIONS]
        if unused:
            raise ConfigError(f"{path or 'the generator'}: a class-wise EM generator adds its class's fixed "
                              f"pattern, with no optimization; {', '.join(unused)} do not apply to it")
        super().refuse_protect_options([o for o in given if o not in NOISE_OPTIONS], path)

    def start(self, run: "TrainingRun") -> None:
        self.noise = initial_patterns(len(run.class_names), (run.cfg.image_size, run.cfg.image_size),
                                      run.cfg.radius, seeding.generator(run.cfg.seed, "em-init"))

    def noise_of(self, run: "TrainingRun", idx: torch.Tensor) -> torch.Tensor:
        return self.noise[run.train.labels[idx]]

    def train_inputs(self, run: "TrainingRun", idx: torch.Tensor) -> torch.Tensor:
        # a shared pattern can leave [0, 1]; protect's output is clipped too
        return super().train_inputs(run, idx).clamp(0, 1)

    def update_noise(self, run: "TrainingRun") -> None:
        cfg = run.cfg
        self.noise = update_patterns(run.model, run.train.images, run.train.labels, self.noise, cfg.noise_steps,
                                     cfg.step_size, cfg.radius, run.device, cfg.batch_size)

    def final_noise(self, run: "TrainingRun", pick: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
                    g: torch.Generator) -> torch.Tensor:
        return self.noise_of(run, pick).to(x)

    def generator_tensors(self) -> dict[str, torch.Tensor]:
        return {PATTERNS: self.noise}

    def protect_noise(self, model: nn.Module, card: "GeneratorCard", noise_config: NoiseConfig,
                      extras: dict[str, torch.Tensor], device: torch.device) -> NoiseFn:
        if PATTERNS not in extras:
            raise ConfigError(f"this class-wise EM generator holds no patterns (tensor {PATTERNS!r} is missing)")
        patterns = extras[PATTERNS].to(device).float()

        def add_pattern(images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None, *,
                        shared_channels: bool = False, on_step: Callable[[int, int], None] | None = None,
                        radius: torch.Tensor | None = None) -> torch.Tensor:
            delta = apply_patterns(patterns, labels, tuple(images.shape[-2:]), shared_channels)
            if on_step:
                on_step(1, 1)
            return delta

        return add_pattern  # type: ignore[return-value]
