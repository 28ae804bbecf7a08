"""The noise of one batch against one generator, quantized to the exact integer bound.

:class:`Protector` holds a loaded generator and the engine settings ``protect`` derived
for it (:meth:`ProtectConfig.noise_config`), and protects batches of same-shape images:
the optimized noise of SEM / REM / EM / TUE (:mod:`noise`), or a class-wise EM file's
fixed pattern (:mod:`classwise`); then :func:`quantize` rounds to 8 bits so that no pixel
moves by more than the promised number of levels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import classwise, transforms
from .budget import level_map
from .config import ConfigError, ProtectConfig
from .noise import ErrorMinimizingNoise
from .weights import GeneratorCard, state_tensors, tensors_digest

#: protect options that shape an optimization, which a class-wise generator does not run.
NOISE_OPTIONS = ("--steps", "--step-size", "--eot-samples", "--random-radius", "--eot-grayscale", "--eot-scale",
                 "--highpass")

def quantize(x_u8: torch.Tensor, delta: torch.Tensor, levels: int | torch.Tensor) -> torch.Tensor:
    """Round x + δ to 8 bits while guaranteeing |out − x| ≤ ``levels`` for every pixel
    (a number, or a per-pixel map that broadcasts against ``x_u8``)."""
    base = x_u8.float()
    moved = torch.round(base + delta * 255)
    return torch.minimum(torch.maximum(moved, base - levels), base + levels).clamp(0, 255).to(torch.uint8)


def is_class_wise(card: GeneratorCard) -> bool:
    """Whether the generator carries one fixed pattern per class (class-wise EM) instead of
    having its noise optimized per image."""
    return bool(card.hyperparameters.get("class_wise"))


def check_options(card: GeneratorCard, given: list[str], path: Path | None = None) -> None:
    """Refuse options (``given``: the ones a person set) that the generator's method does not
    read: optimization options for a class-wise generator, ``--score-step`` for all but TUE."""
    unused = [o for o in given if o in NOISE_OPTIONS]
    if is_class_wise(card) and unused:
        raise ConfigError(f"{path or 'the generator'}: a class-wise EM generator adds its class's fixed pattern, "
                          f"with no optimization; {', '.join(unused)} do not apply to it")
    if "--score-step" in given and card.method != "tue":
        raise ConfigError(f"{path or 'the generator'}: --score-step is TUE's data-collapse step; this "
                          f"generator's method is {card.method}, which has no score estimator")


class Protector:
    """Noise computation for batches of same-shape images against one generator."""

    def __init__(self, model: nn.Module, card: GeneratorCard, cfg: ProtectConfig,
                 device: torch.device, extras: dict[str, torch.Tensor] | None = None) -> None:
        self.model, self.card, self.cfg, self.device = model, card, cfg, device
        self.noise_config = cfg.noise_config(card)
        self.extras = extras or {}
        self.engine = ErrorMinimizingNoise(model, self.noise_config, tuple(card.input_size),
                                           score_model=self._score_model() if card.method == "tue" else None)
        self.patterns = None
        if is_class_wise(card):
            if classwise.PATTERNS not in self.extras:
                raise ConfigError("this class-wise EM generator holds no patterns (tensor "
                                  f"{classwise.PATTERNS!r} is missing)")
            self.patterns = self.extras[classwise.PATTERNS].to(device).float()

    def _score_model(self) -> nn.Module:
        """TUE: the score estimator stored beside the generator (tensors under ``score.``)."""
        from .score import PREFIX, build_score
        state = {k[len(PREFIX):]: v.cpu() for k, v in self.extras.items() if k.startswith(PREFIX)}
        if not state or "score_arch" not in self.card.hyperparameters:
            raise ConfigError("this TUE generator holds no score estimator (no tensors under 'score.')")
        score = build_score(self.card.hyperparameters["score_arch"], self.card.num_classes)
        score.load_state_dict(state, strict=True)
        return score.to(self.device).eval()

    @property
    def digest(self) -> str:
        """SHA-256 of the generator's tensors (model and extras), as its file records it."""
        return tensors_digest({**state_tensors(self.model), **{k: v.cpu() for k, v in self.extras.items()}})

    def thumbnails(self, images: torch.Tensor) -> torch.Tensor:
        """Deterministic full-frame resize of (B, 3, H, W) [0, 1] images to the generator input."""
        return transforms.resize_to(images, tuple(self.card.input_size))

    @torch.no_grad()
    def log_probs(self, thumbnails: torch.Tensor) -> torch.Tensor:
        """Generator log-probabilities (N, K) for images already at its input size."""
        return F.log_softmax(self.model(thumbnails.to(self.device)), 1).cpu()

    def protect(self, x_u8: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
                on_step: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Protect a batch ``(B, C, H, W)`` uint8 (C = 1 grayscale or 3 RGB).

        Returns (protected uint8 of the same shape, surrogate loss of the protected images).
        ``on_step(k, K_u)`` reports the noise steps as they finish.
        """
        gray = x_u8.shape[1] == 1
        x = x_u8.to(self.device).float() / 255
        x3 = x.expand(-1, 3, -1, -1) if gray else x
        labels = labels.to(self.device)
        levels = level_map(x_u8.to(self.device), self.cfg.radius_levels, self.cfg.budget)
        radius = levels / 255 if isinstance(levels, torch.Tensor) else None
        if self.patterns is not None:         # class-wise: the class's pattern, resized; nothing to optimize
            delta = classwise.apply_patterns(self.patterns, labels, tuple(x.shape[-2:]), gray)
            if on_step:
                on_step(1, 1)
        else:
            delta = self.engine(x3, labels, generator, shared_channels=gray, on_step=on_step, radius=radius)
        out = quantize(x_u8.to(self.device), delta, levels)
        out3 = (out.float() / 255).expand(-1, 3, -1, -1)
        after = -self.log_probs(self.thumbnails(out3)).gather(1, labels.cpu()[:, None])[:, 0]
        return out.cpu(), after
