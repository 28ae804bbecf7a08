"""Image-folder data sets held in memory as one uint8 tensor (airbench style).

``DATA_DIR/<class>/<image>``: every subfolder is a class; images of any size and
format :mod:`unlearnable_cli.imageio` reads are resized (shorter side) and
centre-cropped to a square of ``image_size`` and stacked into ``(N, 3, S, S)``
uint8.  Grayscale images are replicated to RGB; alpha is dropped.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .imageio import ImageReadError, find_images, read_image


class DatasetError(Exception):
    """A data folder that cannot be used as a training set; the message says why."""


@dataclass
class ImageFolderData:
    """A whole data set in memory: ``images`` (N, 3, S, S) uint8, ``labels`` (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    files: list[Path]
    root: Path

    def __len__(self) -> int:
        return len(self.labels)

    def digest(self) -> str:
        """SHA-256 over class names, labels and pixels: identifies the exact training data."""
        h = hashlib.sha256()
        h.update("\n".join(self.class_names).encode())
        h.update(self.labels.numpy().tobytes())
        h.update(self.images.numpy().tobytes())
        return h.hexdigest()

    def subset(self, index: torch.Tensor) -> "ImageFolderData":
        idx = index.tolist()
        return ImageFolderData(self.images[index], self.labels[index], self.class_names,
                               [self.files[i] for i in idx], self.root)

    def split(self, val_fraction: float, seed: int) -> tuple["ImageFolderData", "ImageFolderData"]:
        """A seeded, class-stratified (train, held-out) split."""
        g = torch.Generator().manual_seed(seed)
        val_parts, train_parts = [], []
        for c in range(len(self.class_names)):
            idx = torch.nonzero(self.labels == c).flatten()
            idx = idx[torch.randperm(len(idx), generator=g)]
            n_val = int(round(len(idx) * val_fraction))
            val_parts.append(idx[:n_val])
            train_parts.append(idx[n_val:])
        return self.subset(torch.cat(train_parts).sort().values), self.subset(torch.cat(val_parts).sort().values)


def square_resize(pixels: np.ndarray, size: int) -> torch.Tensor:
    """(H, W, C) uint8 -> (3, size, size) uint8: antialiased shorter-side resize, centre crop."""
    x = torch.from_numpy(pixels).permute(2, 0, 1)
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    h, w = x.shape[1:]
    if (h, w) != (size, size):
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        x = F.interpolate(x[None].float(), size=(nh, nw), mode="bilinear", antialias=True,
                          align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)
        top, left = (nh - size) // 2, (nw - size) // 2
        x = x[:, top:top + size, left:left + size]
    return x.contiguous()


def load_image_folder(root: Path, image_size: int = 32, per_class: int | None = None,
                      workers: int = 4) -> ImageFolderData:
    """Read ``root`` into memory; raise :class:`DatasetError` naming the problem.

    ``per_class`` keeps the first N images (sorted by name) of each class.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files: list[Path] = []
    labels: list[int] = []
    names: list[str] = []
    for d in class_dirs:
        found = find_images(d)[:per_class] if per_class else find_images(d)
        if found:
            names.append(d.name)
            files += found
            labels += [len(names) - 1] * len(found)
    if not files:
        raise DatasetError(f"{root}: no images found (expected one subfolder of images per class)")
    if len(names) < 2:
        raise DatasetError(f"{root}: only one class ({names[0]!r}); a classifier needs at least two "
                           "class subfolders")

    return ImageFolderData(load_files(files, image_size, workers), torch.tensor(labels), names, files, root)


def load_files(files: list[Path], image_size: int = 32, workers: int = 4) -> torch.Tensor:
    """Decode ``files`` into one (N, 3, S, S) uint8 tensor; :class:`DatasetError` names a bad file."""

    def load(path: Path) -> torch.Tensor:
        return square_resize(read_image(path).pixels, image_size)

    try:
        with ThreadPoolExecutor(workers) as pool:
            return torch.stack(list(pool.map(load, files)))
    except ImageReadError as e:
        raise DatasetError(f"unreadable image {e}") from e


def to_device(images_u8: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float [0, 1] on ``device`` in channels-last layout."""
    return (images_u8.to(device).float() / 255).contiguous(memory_format=torch.channels_last)
