"""Derived random generators: every random draw is keyed by what it is for.

A run's randomness is derived from ``(seed, purpose, index...)`` instead of one
stream consumed in order, so a step or batch draws the same numbers whether the run
went straight through or was interrupted and resumed.
"""

from __future__ import annotations

import hashlib

import torch


def derive_seed(*keys: object) -> int:
    """A 63-bit seed from any printable keys (stable across runs and platforms)."""
    digest = hashlib.sha256("\x1f".join(map(str, keys)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def generator(*keys: object) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from ``keys`` (draws happen on the CPU, then move)."""
    return torch.Generator().manual_seed(derive_seed(*keys))
