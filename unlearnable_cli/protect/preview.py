"""Side-by-side previews, so a person can judge visibility before protecting thousands.

A sheet is ``original | protected | noise``, full resolution, with the noise
amplified so that the bound ±ρ_u spans the whole 0-255 range (mid-grey is no change).
Nothing is downscaled: a downscaled preview would hide exactly what it is for.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

import torch

#: Pixels of white between the panels.
GAP = 8


class _HasRel(Protocol):
    rel: str


T = TypeVar("T", bound=_HasRel)


def amplified_noise(original: torch.Tensor, protected: torch.Tensor, radius_levels: int) -> torch.Tensor:
    """``(C, H, W)`` uint8: 128 + (protected − original) · 127 / ρ_u, so ±ρ_u maps to 1 and 255."""
    diff = protected.float() - original.float()
    return (128 + diff * 127 / max(1, radius_levels)).round().clamp(0, 255).to(torch.uint8)


def preview_sheet(original: torch.Tensor, protected: torch.Tensor, radius_levels: int) -> torch.Tensor:
    """``(3, H, 3W + 2·GAP)`` uint8 sheet from two ``(C, H, W)`` uint8 images (C = 1 or 3)."""
    panels = [original, protected, amplified_noise(original, protected, radius_levels)]
    panels = [p.expand(3, -1, -1) for p in panels]
    h = original.shape[1]
    gap = torch.full((3, h, GAP), 255, dtype=torch.uint8)
    return torch.cat([panels[0], gap, panels[1], gap, panels[2]], dim=2).contiguous()


def spread(entries: list[T], n: int) -> list[T]:
    """``n`` entries evenly spread over the sorted list (first and last included)."""
    ordered = sorted(entries, key=lambda e: e.rel)
    if n >= len(ordered):
        return ordered
    if n == 1:
        return ordered[:1]
    return [ordered[round(i * (len(ordered) - 1) / (n - 1))] for i in range(n)]
