"""Where ``protect``'s inputs come from and its outputs go.

The input is a folder (searched recursively, linked folders followed once) or one
image file.  The output folder may not be the input folder, contain it, or be a file,
and nothing is created in it before there is work.  Output names mirror the input's
relative paths with the output format's suffix, kept distinct when two inputs would
collide.
"""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict
from pathlib import Path

from ..config import ConfigError
from ..io.images import IMAGE_SUFFIXES, FolderScan, scan_folder


def default_output_dir(input_path: Path, preview: bool = False) -> Path:
    """``<INPUT>-protected`` (``-preview`` for previews) beside the input folder, or beside
    an input file under its name without the suffix (``photo.jpg`` -> ``photo-protected``)."""
    resolved = input_path.resolve()
    name = resolved.stem if resolved.is_file() else resolved.name
    return resolved.with_name(f"{name}-{'preview' if preview else 'protected'}")


def check_folders(input_path: Path, output_dir: Path) -> None:
    """Refuse a missing input, an output that is the input folder (or the folder holding an
    input file) or contains it, an output that is a file, and an output that could not be
    created or written.  Creates nothing: the output folder is made once there is work."""
    if not input_path.exists():
        raise ConfigError(f"{input_path}: input does not exist")
    src, dst = input_path.resolve(), output_dir.resolve()
    if input_path.is_file():
        if dst == src.parent:
            raise ConfigError(f"{output_dir}: the output folder is the folder holding the input; originals are "
                              "never overwritten, choose another output")
    elif not input_path.is_dir():
        raise ConfigError(f"{input_path}: input is neither a folder nor a file")
    elif src == dst:
        raise ConfigError(f"{output_dir}: the output folder is the input folder; originals are never "
                          "overwritten, choose another output")
    elif dst in src.parents:
        raise ConfigError(f"{output_dir}: the output folder contains the input folder; outputs could "
                          "land on originals, choose another output")
    if dst.exists() and not dst.is_dir():
        raise ConfigError(f"{output_dir}: is a file, not a folder; choose a folder for the outputs")
    existing = next(p for p in (dst, *dst.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{output_dir}: output folder is not writable ({existing} is not a writable folder)")


def prepare_output(output_dir: Path) -> None:
    """Create the output folder and prove it can hold a file (read-only mounts pass ``os.access``)."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output_dir, prefix=".write-test-"):
            pass
    except OSError as e:
        raise ConfigError(f"{output_dir}: output folder is not writable ({e.strerror or e})") from e


def output_names(rels: list[str], suffix: str = ".png") -> list[str]:
    """Output path per input: the same relative path with ``suffix`` (``.png``, ``.webp``).

    When several inputs would share an output name (``a.jpg`` and ``a.png``), each
    keeps its original extension in the name (``a.jpg.png``, ``a.png.png``); names
    are compared case-insensitively so outputs also stay distinct on such file systems.
    """
    plain = [Path(r).with_suffix(suffix).as_posix() for r in rels]
    count: dict[str, int] = defaultdict(int)
    for p in plain:
        count[p.casefold()] += 1
    names = [p if count[p.casefold()] == 1 else f"{r}{suffix}" for p, r in zip(plain, rels)]
    seen: set[str] = set()
    unique = []
    for name in names:
        candidate, k = name, 2
        while candidate.casefold() in seen:
            candidate = f"{Path(name).with_suffix('').as_posix()}~{k}{suffix}"
            k += 1
        seen.add(candidate.casefold())
        unique.append(candidate)
    return unique


def passed_over_warnings(found: FolderScan, root: Path) -> list[str]:
    """One line for each kind of file the scan passed over, naming the first few."""

    def names(paths: list[Path]) -> str:
        return ", ".join(p.relative_to(root).as_posix() for p in paths[:3]) + (", …" if len(paths) > 3 else "")

    lines = []
    if found.hidden:
        lines.append(f"{len(found.hidden)} hidden file(s) or folder(s) ignored (names starting with '.', "
                     f"such as macOS '._' files): {names(found.hidden)}")
    if found.raw:
        lines.append(f"{len(found.raw)} camera-raw file(s) not protected (export them to JPEG, PNG or "
                     f"TIFF first): {names(found.raw)}")
    if found.loops:
        lines.append(f"{len(found.loops)} linked folder(s) not entered because they lead to a folder "
                     f"already searched: {names(found.loops)}")
    return lines


def find_inputs(input_path: Path, output_dir: Path) -> tuple[Path, list[Path], list[str]]:
    """(root the relative paths start from, image files, warnings) for a folder or one file."""
    if input_path.is_file():
        if input_path.suffix.lower() not in IMAGE_SUFFIXES:
            raise ConfigError(f"{input_path}: not an image file name (looked for "
                              f"{', '.join(sorted(s[1:] for s in IMAGE_SUFFIXES))})")
        return input_path.parent, [input_path], []
    found = scan_folder(input_path, exclude=output_dir)
    passed_over = passed_over_warnings(found, input_path)
    if not found.images:
        raise ConfigError(f"{input_path}: no images found (looked for "
                          "jpg, jpeg, png, webp, bmp, tif, tiff, gif, heic, avif)"
                          + "".join(f"; {w}" for w in passed_over))
    return input_path, found.images, passed_over
