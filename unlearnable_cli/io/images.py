"""Finding, decoding and atomically writing images.

Decoding normalizes what photo folders contain into 8-bit pixels the noise code can
use, and every failure becomes an :class:`ImageReadError` naming the file and the
reason.  Decisions (documented in the README):

- EXIF orientation is applied; the output is stored upright.
- RGB is perturbed; an alpha channel is carried through unchanged.
- Grayscale stays grayscale (one channel, the same noise on every channel of the
  surrogate's input).
- Palette images become RGB (RGBA if they have transparency), CMYK and other
  colour spaces become RGB; a CMYK ICC profile is dropped, as it cannot describe RGB.
- 16-bit images are reduced to 8 bits by rounding v / 257; the output is 8-bit and
  the noise bound holds against that 8-bit version.
- Animated GIFs: the first frame.  HEIC/HEIF: the primary image, upright, 8-bit.
- More than ``max_pixels`` pixels is refused before decoding (decompression bombs);
  Pillow's own guard (about 89 megapixels) is a hard upper limit.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pillow_heif
from PIL import Image, ImageOps, UnidentifiedImageError, features

if TYPE_CHECKING:
    import torch

from ..config.common import MAX_PIXELS, OutputFormat
from .atomic import atomic_path

pillow_heif.register_heif_opener()

#: File suffixes treated as images (compared case-insensitively).  HEIC/HEIF (the iPhone's
#: default) is decoded by pillow-heif, AVIF by a Pillow built with it (recent wheels are).
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".tif", ".tiff",
                            ".gif", ".heic", ".heif", ".avif"})

#: Camera-raw suffixes: photos, but undecodable here; ``protect`` says it passed them over.
RAW_SUFFIXES = frozenset({".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2",
                          ".orf", ".rw2", ".raf", ".pef", ".srw", ".x3f", ".3fr", ".iiq", ".rwl"})

#: Default limit on decoded pixels (width x height), as ``protect --max-pixels``.
DEFAULT_MAX_PIXELS = MAX_PIXELS


class ImageReadError(Exception):
    """An input image that cannot be used; ``str()`` names the file and the reason."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


@dataclass
class DecodedImage:
    """An upright 8-bit image ready for protection.

    ``pixels`` is ``(H, W, C)`` uint8 with C = 3 (RGB) or 1 (grayscale); ``alpha`` is
    ``(H, W)`` uint8 or None; ``icc`` and ``exif`` are the raw profile / EXIF bytes.
    """

    pixels: np.ndarray
    alpha: np.ndarray | None
    icc: bytes | None
    exif: bytes | None

    @property
    def grayscale(self) -> bool:
        return self.pixels.shape[2] == 1

    def tensor(self) -> "torch.Tensor":
        """The pixels as a ``(C, H, W)`` uint8 tensor (sharing memory with :attr:`pixels`)."""
        import torch
        return torch.from_numpy(self.pixels).permute(2, 0, 1)


@dataclass
class FolderScan:
    """What a folder holds: the images to use, and what was passed over (to say so)."""

    images: list[Path]
    hidden: list[Path]     # hidden image files and folders, not searched
    raw: list[Path]        # camera-raw files: images, but not decodable here
    loops: list[Path] = field(default_factory=list)   # linked folders already searched (a cycle or a second link)


def scan_folder(root: Path, exclude: Path | None = None) -> FolderScan:
    """Image files under ``root`` (recursive, sorted), skipping the ``exclude`` subtree.

    Linked folders are followed, as linked files are (every command, one rule), and each
    real folder is searched once: a link that leads back to a folder already searched
    (a cycle, or two links to one folder) is recorded in ``loops`` and not entered.
    Hidden entries (names starting with ".") are skipped as the class folders of a data
    set are: macOS leaves ``._NAME.jpg`` metadata files beside photos copied to other
    disks (not images, so each would fail), and hidden folders hold thumbnails, trash or
    version control, not the user's photos.
    """
    scan = FolderScan([], [], [])
    seen = {_real(root)}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        if exclude is not None:
            dirnames[:] = [d for d in dirnames if not _same_path(here / d, exclude)]
        dirnames.sort()
        images = [f for f in sorted(filenames) if Path(f).suffix.lower() in IMAGE_SUFFIXES]
        scan.hidden.extend(here / n for n in dirnames + images if n.startswith("."))
        keep = []
        for d in dirnames:
            if d.startswith("."):
                continue
            real = _real(here / d)
            if real in seen:
                scan.loops.append(here / d)
            else:
                seen.add(real)
                keep.append(d)
        dirnames[:] = keep
        scan.images.extend(here / f for f in images if not f.startswith("."))
        scan.raw.extend(here / f for f in sorted(filenames)
                        if Path(f).suffix.lower() in RAW_SUFFIXES and not f.startswith("."))
    return scan


def _real(path: Path) -> str:
    return os.path.realpath(path)


def find_images(root: Path, exclude: Path | None = None) -> list[Path]:
    """The image files :func:`scan_folder` finds under ``root``."""
    return scan_folder(root, exclude).images


def _same_path(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """Reduce integer or float pixel arrays wider than 8 bits to uint8."""
    if arr.dtype == np.uint8:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        scale = 255.0 if arr.max(initial=0) <= 1.0 else 1.0
        return np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
    # 16-bit (or 32-bit integer holding 16-bit values): v / 257 maps 65535 to 255 exactly.
    return np.clip(np.rint(arr.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)


def decode(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Convert any Pillow mode to (pixels (H, W, 1|3) uint8, alpha (H, W) uint8 | None)."""
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "PA":
        img = img.convert("RGBA")
    elif mode == "1":
        img = img.convert("L")
    elif mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        gray = _to_uint8(np.array(img))
        return gray[..., None], None
    elif mode in ("LA", "La"):
        img = img.convert("LA")
    elif mode not in ("L", "RGB", "RGBA"):
        img = img.convert("RGBA" if "A" in mode else "RGB")
    arr = np.array(img)
    if img.mode == "L":
        return arr[..., None], None
    if img.mode == "LA":
        return arr[..., :1], arr[..., 1].copy()
    if img.mode == "RGBA":
        return arr[..., :3], arr[..., 3].copy()
    return arr, None


def read_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode ``path`` into a :class:`DecodedImage`; raise :class:`ImageReadError` on any problem."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ImageReadError(path, f"cannot read file ({e.strerror or e})") from e
    if size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    limit = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)
    try:
        with warnings.catch_warnings():
            # Pillow warns above its limit and raises above twice it; the one limit this
            # function names is ``limit``, checked below on the header's size.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > limit:
                    raise ImageReadError(path, _too_many_pixels(f"{w}x{h} = {w * h:,}", limit, max_pixels))
                img.seek(0)
                img.load()
                icc = img.info.get("icc_profile") or None
                if img.mode == "CMYK":
                    icc = None
                upright = ImageOps.exif_transpose(img)
                exif = upright.getexif().tobytes() if upright.getexif() else None
                pixels, alpha = decode(upright)
    except ImageReadError:
        raise
    except UnidentifiedImageError as e:
        if path.suffix.lower() == ".avif" and not features.check("avif"):
            raise ImageReadError(path, "this Pillow cannot decode AVIF "
                                       "(recent Pillow wheels can: pip install -U pillow)") from e
        raise ImageReadError(path, "not a recognized image (unknown or corrupt format)") from e
    except Image.DecompressionBombError as e:     # over twice Pillow's limit: refused inside open()
        raise ImageReadError(path, _too_many_pixels(f"more than {2 * Image.MAX_IMAGE_PIXELS:,}",
                                                    limit, max_pixels)) from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageReadError(path, f"truncated or corrupt image data ({e})") from e
    return DecodedImage(np.ascontiguousarray(pixels), alpha, icc, exif)


def _too_many_pixels(count: str, limit: int, max_pixels: int) -> str:
    """The one-line reason for an image over the pixel limit, naming one limit and how to raise it."""
    hint = ("raise --max-pixels to allow it" if limit == max_pixels
            else "that is Pillow's own limit, which --max-pixels cannot raise")
    return f"{count} pixels exceeds the limit of {limit:,} (possible decompression bomb; {hint})"


#: Lossless WebP cannot hold more than this many pixels a side.
WEBP_MAX_SIDE = 16383


def write_image(path: Path, pixels: np.ndarray, alpha: np.ndarray | None = None,
                icc: bytes | None = None, exif: bytes | None = None,
                fmt: OutputFormat = OutputFormat.PNG) -> None:
    """Write an 8-bit image losslessly and atomically: a temporary file in the same folder,
    fsync, rename.

    An interrupted run leaves either the previous state or the complete file,
    never a half-written image under the final name.  ``fmt`` WEBP writes lossless WebP
    (``exact``: colour under transparent pixels is kept too); a side over
    :data:`WEBP_MAX_SIDE` raises ``ValueError``.
    """
    channels = [pixels] if alpha is None else [pixels, alpha[..., None]]
    arr = np.concatenate(channels, axis=2)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
    img = Image.fromarray(arr[..., 0] if mode == "L" else arr, mode=mode)
    options: dict[str, object] = {}
    if icc:
        options["icc_profile"] = icc
    if exif:
        options["exif"] = exif
    if fmt is OutputFormat.WEBP:
        if max(img.size) > WEBP_MAX_SIDE:
            raise ValueError(f"{img.size[0]}x{img.size[1]} is too large for WebP (at most {WEBP_MAX_SIDE} "
                             "pixels a side); use --format png")
        img = img.convert("RGBA" if alpha is not None else "RGB")   # WebP has no grayscale mode
        options.update(lossless=True, quality=100, method=4, exact=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        img.save(f, format=fmt.value.upper(), **options)
        f.flush()
        os.fsync(f.fileno())
