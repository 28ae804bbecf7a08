"""REM, robust error-minimizing noise (Fu et al., ICLR 2022): SEM's loop with a worst-case δʳ.

The noise minimizes the loss under δʳ found by PGD *maximization* within ρ_r (the
min-min-max objective) instead of SEM's uniform draw; training and protect are otherwise SEM's.
"""

from __future__ import annotations

from ..config import Perturbation
from . import register
from .sem import SEM


@register
class REM(SEM):
    """Robust error-minimizing noise: PGD-maximized δʳ inside every noise step."""

    name = "rem"
    perturbation = Perturbation.WORST_CASE
