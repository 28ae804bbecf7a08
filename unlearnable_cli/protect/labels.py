"""Choosing a generator class for every protected image.

Error-minimizing noise pushes an image towards a class of the generator, so each
image needs one.  Modes:

- ``folders`` (default): the images directly inside one folder are a group (one
  person, one subject); a group shares a class and groups get distinct classes,
  chosen by an optimal assignment (Hungarian algorithm) that maximizes the summed
  mean predicted probability of each group for its class.  With more groups than
  classes the assignment is repeated on the remaining groups, so classes are reused
  (a warning says so).
- ``names``: a folder named like a generator class gets that class (a data set laid
  out by class, such as CIFAR-10 for a CIFAR-10 generator); a folder whose name is not
  a class is an error.  ``folders`` may pick another bijection when the generator is
  weak on clean images, which protects just as consistently but is not the paper's
  setting (noise towards the true label).
- ``predict``: each image gets the generator's own argmax class.
- a class name: every image gets that class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

FOLDERS = "folders"
NAMES = "names"
PREDICT = "predict"


class LabelError(ValueError):
    """Images cannot be given classes as asked (``--labels names`` with a folder that is not a class)."""


@dataclass
class LabelAssignment:
    """Class index per image and any warnings the user should see."""

    labels: list[int]
    warnings: list[str] = field(default_factory=list)


def validate_mode(mode: str, class_names: list[str]) -> None:
    """Raise ``ValueError`` for a mode that is neither a keyword nor a class of the generator."""
    if mode not in (FOLDERS, NAMES, PREDICT) and mode not in class_names:
        raise ValueError(f"--labels {mode!r} is not 'folders', 'names', 'predict' or a class of the generator "
                         f"({', '.join(class_names)})")


def assign_groups(group_probs: np.ndarray) -> tuple[list[int], bool]:
    """Distinct classes for groups maximizing total mean probability; reuse when groups > classes.

    ``group_probs`` is (G, K).  Returns (class per group, whether classes were reused).
    """
    n_groups, n_classes = group_probs.shape
    result = [-1] * n_groups
    remaining = list(range(n_groups))
    while remaining:
        rows, cols = linear_sum_assignment(-group_probs[remaining])
        for r, c in zip(rows, cols):
            result[remaining[r]] = int(c)
        assigned = set(rows.tolist())
        remaining = [g for i, g in enumerate(remaining) if i not in assigned]
    return result, n_groups > n_classes


def classes_by_name(groups: list[str], class_names: list[str]) -> list[int]:
    """The class whose name is each group's folder name; :class:`LabelError` names the folders that are none."""
    leaf = {g: PurePosixPath(g).name for g in set(groups)}
    unknown = sorted(g for g, name in leaf.items() if name not in class_names)
    if unknown:
        shown = ", ".join(repr(g if g != "." else "(top folder)") for g in unknown[:5])
        raise LabelError(f"--labels names: folder(s) {shown}{' ...' if len(unknown) > 5 else ''} "
                         f"are not named after a class of the generator ({', '.join(class_names)})")
    return [class_names.index(leaf[g]) for g in groups]


def assign_labels(mode: str, probs: torch.Tensor, groups: list[str],
                  class_names: list[str]) -> LabelAssignment:
    """Labels for N images given their generator probabilities ``probs`` (N, K) and group keys."""
    validate_mode(mode, class_names)
    if mode == PREDICT:
        return LabelAssignment(probs.argmax(1).tolist())
    if mode == NAMES:
        return LabelAssignment(classes_by_name(groups, class_names))
    if mode != FOLDERS:
        return LabelAssignment([class_names.index(mode)] * len(groups))
    keys = sorted(set(groups))
    index = {k: i for i, k in enumerate(keys)}
    member = torch.tensor([index[g] for g in groups])
    sums = torch.zeros(len(keys), probs.shape[1], dtype=torch.float64).index_add_(0, member, probs.double())
    counts = torch.bincount(member, minlength=len(keys)).clamp(min=1)[:, None]
    group_class, reused = assign_groups((sums / counts).numpy())
    warnings = []
    if reused:
        warnings.append(f"{len(keys)} folders but the generator has {len(class_names)} classes: "
                        "some folders share a class")
    return LabelAssignment([group_class[index[g]] for g in groups], warnings)
