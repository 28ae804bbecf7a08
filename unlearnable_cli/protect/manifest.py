"""The output folder's record of a ``protect`` run: ``manifest.json`` and its journal.

The manifest holds a header (folders, generator, the settings actually used) and one
record per protected image.  Records of finished images are appended to a journal
after every batch (O(1) per batch, fsynced); the full manifest is rewritten now and
then and at the end, when the journal is removed.  A resumed run reads both.

A resumed run skips finished images, so it must make them the way this run would:
:func:`settings_differences` compares this run's header with the one already in the
folder, and ``protect`` refuses to mix outputs made with another generator or other
settings (a bound of 8 levels in half the files and 4 in the rest would break the
promise the manifest states).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .. import __version__
from ..io.atomic import append_json_lines, atomic_path, read_json_lines
from ..config import ConfigError, NoiseConfig, ProtectConfig
from ..distributed import SINGLE, Shard
from ..metrics import psnr
from ..models.weights import GeneratorCard

if TYPE_CHECKING:
    from .scan import Entry

MANIFEST = "manifest.json"
JOURNAL = ".manifest.journal.jsonl"
#: The journal of part K of N of a sharded run (``--shard K/N``, or torchrun rank K-1):
#: each part appends only to its own, so parts never write the same file.
PART_JOURNAL = ".manifest.journal.part-{k}-of-{n}.jsonl"

#: Settings that change how fast a run goes but not what an output promises or how
#: strongly it protects, so a run may be resumed with other values (a smaller batch
#: after running out of memory, the GPU after the CPU).
RESUMABLE_SETTINGS = frozenset({"device", "batch_size"})
#: Settings added since the first manifests, with the value older versions always used (history,
#: not defaults: they stay as they were even if a default changes).
SETTINGS_BEFORE_THEY_EXISTED = {"eot_grayscale": 0.0, "format": "png", "budget": "uniform", "eot_min_scale": 0.8,
                                "score_step_levels": 0.0, "highpass": 0, "against": "training",
                                "cloak_objective": "target", "color": "rgb"}
#: What identifies the generator: its tensors (and what reads them); its path may change
#: when the file is moved, and its card's descriptive text (the data set's name) may be corrected.
GENERATOR_IDENTITY = ("arch", "arch_kwargs", "method", "classes", "tensors_sha256")

Record = dict[str, object]


def header(input_dir: Path, output_dir: Path, weights_path: Path | None, card: GeneratorCard,
           digest: str, nc: NoiseConfig, cfg: ProtectConfig, device: torch.device) -> dict[str, object]:
    """The run-level part of the manifest: folders, generator and the settings actually used."""
    return {
        "tool": "unlearnable", "version": __version__, "input": str(input_dir.resolve()),
        "output": str(output_dir.resolve()),
        "generator": {"path": str(weights_path) if weights_path else None, "arch": card.arch,
                      "arch_kwargs": card.arch_kwargs, "method": card.method,
                      "dataset": card.dataset.get("name"), "classes": card.class_names,
                      "tensors_sha256": digest},
        "settings": {"radius_levels": cfg.radius_levels, "steps": nc.steps,
                     "step_size_levels": round(nc.step_size * 255, 4), "eot_samples": nc.eot_samples,
                     "eot_grayscale": nc.grayscale_draws,
                     "random_radius_levels": round(nc.random_radius * 255, 4), "labels": cfg.labels,
                     "batch_size": cfg.batch_size, "seed": cfg.seed, "keep_exif": cfg.keep_exif,
                     "format": cfg.output_format.value, "budget": cfg.budget.value,
                     "eot_min_scale": nc.transform.min_scale,
                     "score_step_levels": round(nc.score_step * 255, 4), "highpass": nc.highpass,
                     "against": cfg.against.value, "color": cfg.color.value, "device": str(device)},
    }


def settings_differences(previous: dict[str, object] | None, current: dict[str, object]) -> list[str]:
    """``"key: old → new"`` for every generator or setting that differs between two headers.

    Settings in :data:`RESUMABLE_SETTINGS` and the generator's path are not compared.
    A key the previous header lacks (written by an older version) is compared as the
    value that version always used, if known (:data:`SETTINGS_BEFORE_THEY_EXISTED`).
    """
    if not previous:
        return []
    diffs = []
    for section, keys in (("generator", GENERATOR_IDENTITY),
                          ("settings", [k for k in current["settings"] if k not in RESUMABLE_SETTINGS])):  # type: ignore[union-attr]
        old, new = previous.get(section) or {}, current[section]
        if section == "settings":
            old = {**SETTINGS_BEFORE_THEY_EXISTED, **old}  # type: ignore[dict-item]
        for key in keys:
            if key in old and old[key] != new[key]:  # type: ignore[index,operator]
                diffs.append(f"{'generator ' if section == 'generator' else ''}{key}: "
                             f"{old[key]} → {new[key]}")  # type: ignore[index]
    return diffs


def journal_path(output_dir: Path, shard: Shard = SINGLE) -> Path:
    """Where this process appends its finished records (one file per part of a sharded run)."""
    if shard.single:
        return output_dir / JOURNAL
    return output_dir / PART_JOURNAL.format(k=shard.index + 1, n=shard.count)


def journals(output_dir: Path) -> list[Path]:
    """Every journal in ``output_dir``, oldest first (a newer record of an image wins)."""
    found = [output_dir / JOURNAL, *output_dir.glob(PART_JOURNAL.format(k="*", n="*"))]
    return sorted((p for p in found if p.is_file()), key=lambda p: (p.stat().st_mtime_ns, p.name))


def load(path: Path) -> tuple[list[dict[str, object]], dict[str, Record]]:
    """The headers of previous runs (the manifest's and each part journal's) and their
    records by source path, from the manifest and every journal beside it.

    Unreadable parts count as absent (those images are simply protected again); a
    journal line cut short by a crash is ignored.
    """
    heads: list[dict[str, object]] = []
    records: dict[str, Record] = {}
    try:
        body = json.loads(path.read_text())
    except (OSError, ValueError):
        body = None
    try:
        heads.append({k: body[k] for k in ("generator", "settings")})  # type: ignore[index]
    except (KeyError, TypeError):
        pass
    try:
        records = {r["source"]: r for r in body["images"]}  # type: ignore[index]
    except (KeyError, TypeError):
        pass
    for journal in journals(path.parent):
        for record in read_json_lines(journal):
            if isinstance(record.get("header"), dict):
                heads.append(record["header"])
            elif isinstance(record.get("source"), str):
                records[record["source"]] = record
    return heads, records


def start_journal(output_dir: Path, head: dict[str, object], shard: Shard) -> None:
    """Begin a part's journal with this run's header (a part writes no manifest; the
    header is how the run that completes the manifest checks every part's settings)."""
    path = journal_path(output_dir, shard)
    if not path.is_file() or path.stat().st_size == 0:
        append_json_lines(path, [{"header": {k: head[k] for k in ("generator", "settings")}}])


def remove_journals(output_dir: Path) -> None:
    """Drop every journal once the manifest holds their records."""
    for journal in journals(output_dir):
        journal.unlink(missing_ok=True)


def append_journal(path: Path, records: list[Record], shard: Shard = SINGLE) -> None:
    """Append finished records to this process's journal beside the manifest, durably."""
    append_json_lines(journal_path(path.parent, shard), records)


def write(path: Path, head: dict[str, object], records: dict[str, Record],
          failed: list[tuple[str, str]]) -> None:
    """Write the manifest atomically, records and failures sorted by source path."""
    body = dict(head, images=[records[k] for k in sorted(records)],
                failed=[{"source": s, "reason": r} for s, r in sorted(failed)])
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(body, indent=1))


def is_finished(record: Record | None, e: Entry, output_dir: Path) -> bool:
    """Whether ``record`` is ``e``'s output under this run's name and that file exists."""
    return record is not None and record.get("output") == e.output_rel and (output_dir / e.output_rel).is_file()


def previous_records(output_dir: Path, entries: list[Entry], header: dict[str, object],
                     overwrite: bool, shard: Shard = SINGLE) -> tuple[dict[str, Record], list[str]]:
    """Records of images already protected into ``output_dir`` (none with ``overwrite``),
    and warnings.

    Raises :class:`ConfigError` when the folder holds outputs made with another
    generator or other settings (per the manifest or any part's journal): skipping them
    would mix two protections under one manifest.  Outputs whose class differs from this
    run's assignment (the folders' contents changed) are kept, with a warning.  With
    ``overwrite`` a single process discards every journal, a part only its own.
    """
    path = output_dir / MANIFEST
    if overwrite:
        if shard.single:
            remove_journals(output_dir)
        else:
            journal_path(output_dir, shard).unlink(missing_ok=True)
        return {}, []
    by_rel = {e.rel: e for e in entries}
    previous, records = load(path)
    records = {k: v for k, v in records.items() if k in by_rel}
    finished = [k for k, r in records.items() if is_finished(r, by_rel[k], output_dir)]   # what this run skips
    made = [k for k, r in records.items() if (output_dir / str(r.get("output"))).is_file()]   # under any name
    diffs = sorted({d for head in previous for d in settings_differences(head, header)})
    if made and diffs:
        raise ConfigError(f"{output_dir}: holds {len(made)} image(s) protected with another generator or "
                          f"other settings ({'; '.join(diffs)}); rerun with the same ones to resume, "
                          "add --overwrite to redo them, or choose another --output")
    moved = sum(records[k].get("class_index") != by_rel[k].label for k in finished)
    warnings = [f"{moved} image(s) already in {output_dir} were pushed to another class than this run "
                "assigns (the folders' contents changed); they are kept, --overwrite redoes them"] if moved else []
    return records, warnings


def image_record(e: Entry, card: GeneratorCard, out: torch.Tensor, original: torch.Tensor,
                 loss_after: float) -> dict[str, object]:
    """The manifest record of one protected image (``out``/``original``: (C, H, W) uint8)."""
    return {"source": e.rel, "output": e.output_rel, "width": e.shape[1], "height": e.shape[0],
            "channels": "gray" if e.shape[2] == 1 else "rgb", "alpha": e.has_alpha,
            "class": card.class_names[e.label], "class_index": e.label,
            "linf": int((out.int() - original.int()).abs().max().item()),
            "psnr": psnr(out, original), "loss_before": round(e.loss_before, 5),
            "loss_after": round(loss_after, 5)}
