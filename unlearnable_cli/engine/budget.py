"""Where the noise may be large: a per-pixel bound that spends ±ρ_u where texture masks it.

The eye sees a change of a few levels on a flat patch of sky or skin, and misses the
same change on hair, grass or fabric (contrast masking).  ``--budget texture`` gives
each pixel its own bound in whole levels, from the local contrast of the *original*:

    L(x) = clamp(round(ρ_u · σ(x) / σ_ref), ⌈floor · ρ_u⌉, ρ_u)

with σ(x) the standard deviation of the luma in a ``window``×``window`` neighbourhood
(in levels) and σ_ref the contrast at which the whole budget is spent.  L ≤ ρ_u
everywhere, so the promised bound is unchanged; it is computed from the 8-bit original
alone, so the noise engine and the final 8-bit rounding use exactly the same integers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..config.common import Budget
from .transforms import LUMA


#: Local contrast (levels) at which a pixel gets the whole budget.
SIGMA_REF = 12.0
#: Smallest share of the budget a pixel keeps in a perfectly flat area.
FLOOR = 0.25
#: Side of the neighbourhood the contrast is measured in.
WINDOW = 7


def local_contrast(x_u8: torch.Tensor, window: int = WINDOW) -> torch.Tensor:
    """``(B, 1, H, W)`` standard deviation of the luma around each pixel, in levels."""
    x = x_u8.float()
    luma = x if x.shape[1] == 1 else (x * torch.tensor(LUMA, device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
    pad = window // 2
    padded = F.pad(luma, (pad, pad, pad, pad), mode="replicate")
    mean = F.avg_pool2d(padded, window, stride=1)
    mean_sq = F.avg_pool2d(padded.square(), window, stride=1)
    return (mean_sq - mean.square()).clamp(min=0).sqrt()


def level_map(x_u8: torch.Tensor, radius_levels: int, budget: Budget) -> torch.Tensor | int:
    """Per-pixel bound in whole levels, ``(B, 1, H, W)`` int64, or ``radius_levels`` itself
    for the uniform budget."""
    if budget is Budget.UNIFORM:
        return radius_levels
    lowest = max(1, int(torch.tensor(FLOOR * radius_levels).ceil().item()))
    levels = torch.round(radius_levels * local_contrast(x_u8) / SIGMA_REF)
    return levels.clamp(lowest, radius_levels).long()
