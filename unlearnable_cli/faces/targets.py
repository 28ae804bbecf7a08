"""The cloak's target bank: centroids of other people's face descriptors, shipped as a file.

Fawkes moves a person's photos towards another identity; the tool cannot ask for other
people's photos, so it ships a small bank, ``weights/face-targets.safetensors``: one
128-d centroid (dlib's descriptor, the mean over up to 10 photos) per identity of a public
set, computed once by ``bench/recognizers.py bank`` from LFW identities that no benchmark
here uses (not LFW-10, not a personal-folder user, not the ``next10`` background), so no
measured person is anybody's target.  Its metadata names the identities and the photos.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..models.weights import WeightsError, shipped_dirs

BANK_FILE = "face-targets.safetensors"


def bank_path() -> Path:
    """The shipped bank (in the package, or the source checkout's weights/ folder)."""
    for folder in shipped_dirs():
        if (folder / BANK_FILE).is_file():
            return folder / BANK_FILE
    raise WeightsError(f"the cloak's target bank {BANK_FILE} is not installed (looked in the package and in "
                       "the source checkout's weights/ folder)")


def load_bank(path: Path | None = None) -> tuple[torch.Tensor, list[str]]:
    """(M, 128) float64 centroids and their identities' names; a damaged file is a clear error."""
    path = path or bank_path()
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), "pt") as f:
            names = json.loads(f.metadata()["identities"])
    except (SafetensorError, OSError, KeyError, ValueError, TypeError, RuntimeError) as e:
        raise WeightsError(f"{path}: not a usable target bank ({e})") from e
    centroids = tensors.get("centroids")
    if centroids is None or centroids.ndim != 2 or centroids.shape[1] != 128 or len(names) != len(centroids):
        raise WeightsError(f"{path}: not a target bank (expected 'centroids' (M, 128) and M names)")
    return centroids.double(), names


def save_bank(path: Path, centroids: torch.Tensor, names: list[str], source: str) -> None:
    """Write a bank; ``source`` says where its photos came from."""
    save_file({"centroids": centroids.float().contiguous()}, str(path),
              metadata={"identities": json.dumps(names), "source": source})
