"""Reading every input once before any noise: shapes, alpha, and the class each image is pushed to.

Labels need every image of a folder (:mod:`labels`), so ``protect`` decodes all inputs
first, in chunks whose thumbnails go through the generator together; the images are
decoded again batch by batch when they are protected, so memory stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import torch

from . import labels as labelling
from ..config import ProtectConfig
from ..distributed import SINGLE, Shard, gather_json
from ..io.images import ImageReadError, read_image

#: Files read together while scanning; their thumbnails go through the generator as one
#: batch.  Chunks are cut from the file list, so any number of processes computes the
#: same log-probabilities (and labels) as one.
SCAN_CHUNK = 256

@dataclass
class Entry:
    """One input image: where it is, where its output goes, and what the scan learnt."""

    source: Path
    rel: str
    output_rel: str
    shape: tuple[int, int, int] = (0, 0, 0)   # (H, W, C) after orientation, C = 1 or 3
    has_alpha: bool = False
    label: int = -1
    loss_before: float = float("nan")          # surrogate loss of the unprotected image

    @property
    def group(self) -> str:
        return str(Path(self.rel).parent.as_posix())


class Classifier(Protocol):
    """What the scan needs of a generator: its classes, a thumbnail at its input size, log-probabilities."""

    @property
    def class_names(self) -> list[str]: ...

    def thumbnail(self, image_u8: torch.Tensor) -> torch.Tensor:
        """``(1, C, H, W)`` uint8 (C = 1 or 3) -> ``(1, 3, h, w)`` in [0, 1] at the generator's input size."""
        ...

    def log_probs(self, thumbnails: torch.Tensor) -> torch.Tensor:
        """``(N, 3, h, w)`` -> log-probabilities ``(N, K)`` on the CPU."""
        ...


def scan(entries: list[Entry], classifier: Classifier, cfg: ProtectConfig,
         on_error: Callable[[str, str], None], shard: Shard = SINGLE, chunk: int = SCAN_CHUNK,
         progress: Callable[[int], None] = lambda n: None,
         on_remote_error: Callable[[str, str], None] = lambda rel, reason: None) -> tuple[list[Entry], list[str]]:
    """Decode every image once: record shape and alpha, assign labels, note the loss before.

    Files are read in chunks of ``chunk``, whose thumbnails go through the generator
    together (batched, bounded memory).  Under torchrun each rank reads the chunks it
    owns and the ranks exchange what they found (``on_remote_error`` hears of the files
    another rank could not read), so every rank ends with the same entries and labels.
    Returns the readable entries and the labelling warnings.
    """
    found: dict[int, tuple[tuple[int, int, int], bool, torch.Tensor]] = {}
    failures: list[tuple[int, str]] = []
    read = 0
    for c, start in enumerate(range(0, len(entries), chunk)):
        if shard.torchrun and not shard.owns(c):
            continue
        thumbs, readable = [], []
        for i in range(start, min(start + chunk, len(entries))):
            progress(read)
            read += 1
            try:
                img = read_image(entries[i].source, cfg.max_pixels)
            except ImageReadError as err:
                on_error(entries[i].rel, err.reason)
                failures.append((i, err.reason))
                continue
            thumbs.append(classifier.thumbnail(img.tensor()[None]))
            readable.append((i, img.pixels.shape, img.alpha is not None))
        if thumbs:
            lp = classifier.log_probs(torch.cat(thumbs))
            found.update({i: (shape, alpha, lp[j]) for j, (i, shape, alpha) in enumerate(readable)})
    if shard.torchrun:
        found, failures = _exchange(found, failures, entries, on_remote_error)
    ok = []
    for i in sorted(found):
        e = entries[i]
        e.shape, e.has_alpha = found[i][0], found[i][1]
        ok.append(e)
    if not ok:
        return ok, []
    lp = torch.stack([found[i][2] for i in sorted(found)])
    assignment = labelling.assign_labels(cfg.labels, lp.exp(), [e.group for e in ok], classifier.class_names)
    for i, (e, label) in enumerate(zip(ok, assignment.labels)):
        e.label, e.loss_before = label, -lp[i, label].item()
    return ok, assignment.warnings


def _exchange(found: dict[int, tuple[tuple[int, int, int], bool, torch.Tensor]], failures: list[tuple[int, str]],
              entries: list[Entry], on_remote_error: Callable[[str, str], None]
              ) -> tuple[dict[int, tuple[tuple[int, int, int], bool, torch.Tensor]], list[tuple[int, str]]]:
    """Every rank's scan results on every rank (log-probabilities travel as exact float32 values)."""
    mine = {"found": [[i, list(shape), alpha, row.tolist()] for i, (shape, alpha, row) in found.items()],
            "failed": failures}
    merged: dict[int, tuple[tuple[int, int, int], bool, torch.Tensor]] = {}
    all_failures: list[tuple[int, str]] = []
    for part in gather_json(mine):
        for i, shape, alpha, row in part["found"]:  # type: ignore[index]
            merged[i] = (tuple(shape), alpha, torch.tensor(row, dtype=torch.float32))
        for i, reason in part["failed"]:  # type: ignore[index]
            if (i, reason) not in failures:
                on_remote_error(entries[i].rel, reason)
            all_failures.append((i, reason))
    return merged, all_failures
