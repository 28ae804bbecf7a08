"""Atomic file writes: an interrupted run leaves the old file or the new one, never half a file.

Journals (protect's finished images, eval's finished victims) are instead appended to
line by line with :func:`append_json_lines`, which is durable but not atomic: a crash may
leave a last line cut short, which readers skip.

Every output of the tool (protected PNGs, manifest, generator weights, checkpoints,
the training log when a resume trims it, eval reports and plots) is written to a hidden temporary sibling and renamed over its final name.
The finished file gets the permissions a plain ``open()`` would give it (``0666`` minus
the umask): safetensors creates its files ``0600``, which would leave a generator
trained for sharing unreadable by anyone else.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

# Read once, at import (before any worker thread exists): os.umask can only be read by setting it.
_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to; on success it replaces ``path``.

    If the block raises, the temporary file is removed and ``path`` is left untouched.
    An ``OSError`` about the temporary file (a full disk, a folder made read-only) is
    raised again naming ``path``: the user knows that name, not the hidden one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except OSError as e:
        if str(tmp) in (str(e.filename), str(e.filename2)) and e.errno is not None:
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise
    finally:
        tmp.unlink(missing_ok=True)


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a journal written by :func:`append_json_lines`, in order.

    A missing or unreadable file reads as empty; a line a crash cut short (or any line
    that is not a JSON object) is skipped.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, ValueError):
        return []
    objects = []
    for line in text.splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            objects.append(obj)
    return objects


def append_json_lines(path: Path, objects: Iterable[object]) -> None:
    """Append one JSON line per object to ``path`` and fsync, so they survive a crash right after.

    If a crash cut the file's last line short, a newline ends that fragment first:
    otherwise the first new line would be glued onto it and lost with it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        end = f.seek(0, os.SEEK_END)
        cut_short = False
        if end:                                  # append mode writes at the end wherever we read
            f.seek(end - 1)
            cut_short = f.read(1) != b"\n"
        f.write((("\n" if cut_short else "") + "".join(json.dumps(o) + "\n" for o in objects)).encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())
