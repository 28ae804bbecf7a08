"""Batches of ``protect``: images of equal shape protected together, each with its own random stream.

Batches are formed over *all* readable images, in path order, so a resumed run
computes exactly the batches (and bytes) of an uninterrupted one, and a batch's noise
depends only on its files, so any number of processes computes the same bytes.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Callable

import torch

from ..engine import seeding
from ..config import ProtectConfig
from ..io.images import DecodedImage, ImageReadError, read_image
from .scan import Entry


def make_batches(entries: list[Entry], cfg: ProtectConfig) -> list[list[Entry]]:
    """Batches of equal shape (and alpha), in path order, capped by count and by pixels."""
    by_shape: dict[tuple[int, int, int], list[Entry]] = defaultdict(list)
    for e in sorted(entries, key=lambda e: e.rel):
        by_shape[e.shape].append(e)
    batches = []
    for shape, members in sorted(by_shape.items()):
        per_batch = max(1, min(cfg.batch_size, cfg.max_batch_pixels // max(1, shape[0] * shape[1])))
        batches += [members[i:i + per_batch] for i in range(0, len(members), per_batch)]
    return batches


def batch_generator(cfg: ProtectConfig, batch: list[Entry]) -> torch.Generator:
    """The random stream of one batch, keyed by its files (not by what a run had left to do)."""
    return seeding.generator(cfg.seed, "protect", *[e.rel for e in batch])


def read_batch(batch: list[Entry], todo: list[Entry], cfg: ProtectConfig,
               failed: Callable[[str, str], None]) -> tuple[list[DecodedImage], list[Entry]]:
    """Decode a batch again (images are not kept in memory between the scan and here)."""
    images, keep = [], []
    for e in batch:
        try:
            images.append(read_image(e.source, cfg.max_pixels))
            keep.append(e)
        except ImageReadError as err:  # changed since the scan
            if e in todo:
                failed(e.rel, err.reason)
    return images, keep
