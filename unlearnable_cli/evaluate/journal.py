"""Finished victims of an ``eval`` run, kept beside its report so an interrupted run resumes.

Each victim is trained from scratch for its whole recipe, which takes minutes to hours
on a CPU; an evaluation trains several.  Every finished victim is appended (fsynced)
to ``REPORT.partial.jsonl`` under a key that hashes everything that determines its
curve: the victim recipe and seed, the condition, which data it trained on and the
exact training and test tensors.  Rerunning the same command reuses the finished ones
and trains the rest; the journal is removed once the report is written.  The device is
not part of the key, so a run may resume on another one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Callable, Generic, TypeVar

from ..io.atomic import append_json_lines, read_json_lines

T = TypeVar("T")


def journal_path(report: Path) -> Path:
    """Where the finished victims of the run that writes ``report`` are kept."""
    return report.with_name(report.name + ".partial.jsonl")


def run_key(**parts: object) -> str:
    """A stable key for one victim from everything that determines it."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class RunJournal(Generic[T]):
    """Append-only record of finished victims (dataclass instances of ``record_type``).

    With ``path`` None nothing is kept (no report, nothing to resume into).  A line cut
    short by a crash is ignored.
    """

    def __init__(self, path: Path | None, record_type: type[T]) -> None:
        self.path, self.record_type = path, record_type
        self.done: dict[str, T] = {}
        self.reused = 0
        if path is None:
            return
        names = {f.name for f in dataclasses.fields(record_type)}  # type: ignore[arg-type]
        for record in read_json_lines(path):
            try:
                self.done[record["key"]] = record_type(**{k: v for k, v in record["run"].items() if k in names})
            except (KeyError, TypeError, AttributeError):
                continue

    def run(self, key: str, train: Callable[[], T]) -> T:
        """The finished record under ``key``, or ``train()``'s, recorded durably before returning."""
        if key in self.done:
            self.reused += 1
            return self.done[key]
        result = train()
        if self.path is not None:
            append_json_lines(self.path, [{"key": key, "run": dataclasses.asdict(result)}])  # type: ignore[call-overload]
        self.done[key] = result
        return result
