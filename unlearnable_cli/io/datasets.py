"""Image-folder data sets held in memory as one uint8 tensor (airbench style).

``DATA_DIR/<class>/<image>``: every subfolder is a class; images of any size and
format :mod:`unlearnable_cli.imageio` reads are resized (shorter side) and
centre-cropped to a square of ``image_size`` and stacked into ``(N, 3, S, S)``
uint8.  Grayscale images are replicated to RGB; alpha is dropped.

Also here: pairing a clean folder with its protected copy (``eval``), and the one
digest that identifies a data set (cards, checkpoints, eval's resume keys).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .images import ImageReadError, OutputFormat, find_images, read_image

#: What ``protect`` appends to an input's name (``a.jpg`` -> ``a.png`` or ``a.webp``).
PROTECT_SUFFIXES = tuple(f.suffix for f in OutputFormat)


#: Decodes a list of files into one uint8 tensor (N, 3, S, S); the default is
#: :func:`load_files` at a square size, ``eval --attacker`` passes face chips instead.
Loader = Callable[[list[Path]], torch.Tensor]


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
        return data_digest("\n".join(self.class_names), self.labels, self.images)

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


def data_digest(*parts: torch.Tensor | str) -> str:
    """SHA-256 over strings (UTF-8) and tensors (their bytes, in order): a data set's identity.

    The one digest of data in the package: generator cards and checkpoints record it for
    the training set, ``eval`` keys finished victims by it.
    """
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part.contiguous().numpy().tobytes())
    return h.hexdigest()


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
                      workers: int = 4, loader: Loader | None = None) -> ImageFolderData:
    """Read ``root`` into memory; raise :class:`DatasetError` naming the problem.

    ``per_class`` keeps the first N images (sorted by name) of each class; ``loader``
    decodes them (default: :func:`load_files` at ``image_size``).
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

    images = loader(files) if loader else load_files(files, image_size, workers)
    return ImageFolderData(images, torch.tensor(labels), names, files, root)


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


# --------------------------------------------------------------------------- folder pairs (eval)
def _key(rel: str) -> str:
    """Relative path without its extension (protect writes ``a.png`` for ``a.jpg``)."""
    return rel.rsplit(".", 1)[0] if "." in rel.rsplit("/", 1)[-1] else rel


def match_folders(clean_dir: Path, protected_dir: Path) -> tuple[list[tuple[Path, Path]], list[str], list[str]]:
    """Pair clean and protected files by relative path, extension aside.

    ``a.jpg.png`` (protect's name when ``a.jpg`` and ``a.png`` both exist) pairs with
    ``a.jpg``; so do ``a.webp`` and ``a.jpg.webp`` (``protect --format webp``).  Returns (pairs, only in clean, only in protected).
    """
    clean = {p.relative_to(clean_dir).as_posix(): p for p in find_images(clean_dir)}
    prot = {p.relative_to(protected_dir).as_posix(): p for p in find_images(protected_dir)}
    by_key: dict[str, list[str]] = defaultdict(list)
    for rel in clean:
        by_key[_key(rel)].append(rel)
    pairs, used = [], set()
    for rel, path in sorted(prot.items()):
        stem = next((rel[:-len(sfx)] for sfx in PROTECT_SUFFIXES if rel.lower().endswith(sfx)), rel)
        match = stem if stem in clean else (by_key[_key(rel)][0] if len(by_key[_key(rel)]) == 1 else None)
        if match is not None and match not in used:
            used.add(match)
            pairs.append((clean[match], path))
    only_clean = sorted(set(clean) - used)
    only_prot = sorted(set(prot) - {p.relative_to(protected_dir).as_posix() for _, p in pairs})
    return pairs, only_clean, only_prot


def class_of(path: Path, root: Path) -> str:
    parts = path.relative_to(root).parts
    if len(parts) < 2:
        raise DatasetError(f"{path}: expected <root>/<class>/<image> (image-folder layout)")
    return parts[0]


def load_pairs(clean_dir: Path, protected_dir: Path, image_size: int, allow_missing: bool,
               per_class: int | None = None, load_protected: bool = True, loader: Loader | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, list[str], list[tuple[Path, Path]]]:
    """Matched (clean uint8, protected uint8, labels, class names, pairs); clear errors on mismatch."""
    for d in (clean_dir, protected_dir):
        if not Path(d).is_dir():
            raise DatasetError(f"{d}: not a folder")
    pairs, only_clean, only_prot = match_folders(clean_dir, protected_dir)
    if not pairs:
        raise DatasetError(f"{protected_dir} shares no images with {clean_dir} (expected the output of "
                          "`unlearnable protect` on that folder)")
    if (only_clean or only_prot) and not allow_missing:
        shown = [f"only in {clean_dir}: {r}" for r in only_clean[:5]] + [f"only in {protected_dir}: {r}" for r in only_prot[:5]]
        raise DatasetError(f"the folders do not mirror each other ({len(only_clean)} only in the clean folder, "
                          f"{len(only_prot)} only in the protected one): " + "; ".join(shown) +
                          " (use --allow-missing to evaluate the matched images only)")
    names = sorted({class_of(c, clean_dir) for c, _ in pairs})
    if len(names) < 2:
        raise DatasetError(f"{clean_dir}: needs at least two class folders")
    if per_class:
        counts: dict[str, int] = defaultdict(int)
        kept = []
        for c, p in pairs:
            cls = class_of(c, clean_dir)
            if counts[cls] < per_class:
                counts[cls] += 1
                kept.append((c, p))
        pairs = kept
    labels = torch.tensor([names.index(class_of(c, clean_dir)) for c, _ in pairs])
    load = loader or (lambda files: load_files(files, image_size))
    clean = load([c for c, _ in pairs])
    prot = load([p for _, p in pairs]) if load_protected else None
    return clean, prot, labels, names, pairs


def load_test(test_dir: Path, names: list[str], image_size: int, per_class: int | None,
              loader: Loader | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    files, labels = [], []
    for i, name in enumerate(names):
        found = find_images(Path(test_dir) / name)
        found = found[:per_class] if per_class else found
        files += found
        labels += [i] * len(found)
    if not files:
        raise DatasetError(f"{test_dir}: no test images in class folders {', '.join(names)}")
    return (loader(files) if loader else load_files(files, image_size)), torch.tensor(labels)
