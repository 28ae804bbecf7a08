"""The ``protect`` job: a folder tree of photos in, protected PNGs and a manifest out.

Steps: check options and folders before any work; scan and decode every image once
(bad files are reported and skipped, shapes and thumbnails collected); choose a
generator class per image (:mod:`labels`); split the images into batches of equal
shape, each with its own seeded random stream; run the noise engine at full
resolution; quantize with the exact integer bound; write each PNG atomically, journal
its manifest record after every batch, and rewrite the manifest now and then
(:mod:`manifest`).  Batches are formed over *all* readable images, so a resumed run
computes exactly the batches (and bytes) of an uninterrupted one; a rerun into a folder
made with another generator or other settings is refused rather than mixed.

In several processes (:mod:`distributed`) batch ``i`` is done by part ``i mod N``: a
batch's noise depends only on its files, so the bytes equal a one-process run's.
Under torchrun the ranks also split the reading and rank 0 writes the manifest; with
``--shard K/N`` each part keeps its own journal and a final plain run writes it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from . import labels as labelling, manifest, seeding
from .config import ConfigError, ProtectConfig
from .distributed import SINGLE, Shard, gather_json
from .folders import check_folders, find_inputs, output_names, prepare_output
from .imageio import DecodedImage, ImageReadError, read_image, write_image
from .manifest import is_finished, previous_records
from .metrics import psnr
from .preview import preview_sheet, spread
from .protector import Protector, check_options, quantize
from .scan import Entry, scan, to_tensor
from .weights import GeneratorCard

__all__ = ["Entry", "ProtectSummary", "Protector", "check_options", "protect_folder", "quantize"]

#: The full manifest is rewritten at most this often (and at the end); in between,
#: finished records go to the journal (:mod:`manifest`).
MANIFEST_INTERVAL_S = 30.0

#: ``progress(phase, done, total)``: phase ``"read"`` (decoding for labels) or ``"protect"``.
Progress = Callable[[str, float, int], None]


@dataclass
class ProtectSummary:
    """What a run did; ``failed`` lists (relative path, reason)."""

    output_dir: Path
    processed: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    psnr: list[float] = field(default_factory=list)
    worst_linf: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    classes: dict[str, str] = field(default_factory=dict)   # folder (group) -> generator class
    bytes_in: int = 0                  # originals of the images protected (this run and before)
    bytes_out: int = 0                 # their outputs
    manifest_written: bool = False
    previews: list[Path] = field(default_factory=list)
    part: str = ""                     # "2/3" when this was one part of a --shard run

    @property
    def manifest(self) -> Path:
        return self.output_dir / manifest.MANIFEST


def make_batches(entries: list[Entry], cfg: ProtectConfig) -> list[list[Entry]]:
    """Batches of equal shape (and alpha), in path order, capped by count and by pixels."""
    by_shape: dict[tuple[int, int, int], list[Entry]] = defaultdict(list)
    for e in sorted(entries, key=lambda e: e.rel):
        by_shape[e.shape].append(e)
    batches = []
    for shape, members in sorted(by_shape.items()):
        per_batch = max(1, min(cfg.batch_size, cfg.max_batch_pixels // max(1, shape[0] * shape[1])))
        batches += [members[i:i + per_batch] for i in range(0, len(members), per_batch)]
    return batches


def image_record(e: Entry, card: GeneratorCard, out: torch.Tensor, original: torch.Tensor,
                 loss_after: float) -> dict[str, object]:
    """The manifest record of one protected image (``out``/``original``: (C, H, W) uint8)."""
    return {"source": e.rel, "output": e.output_rel, "width": e.shape[1], "height": e.shape[0],
            "channels": "gray" if e.shape[2] == 1 else "rgb", "alpha": e.has_alpha,
            "class": card.class_names[e.label], "class_index": e.label,
            "linf": int((out.int() - original.int()).abs().max().item()),
            "psnr": psnr(out, original), "loss_before": round(e.loss_before, 5),
            "loss_after": round(loss_after, 5)}


def protect_folder(input_dir: Path, output_dir: Path, model: nn.Module, card: GeneratorCard,
                   cfg: ProtectConfig, device: torch.device, weights_path: Path | None = None,
                   on_error: Callable[[str, str], None] = lambda rel, reason: None,
                   progress: Progress = lambda phase, done, total: None,
                   shard: Shard = SINGLE, extras: dict[str, torch.Tensor] | None = None) -> ProtectSummary:
    """Protect every image under ``input_dir`` (a folder, or one image file) into
    ``output_dir``; see the module docstring.

    ``on_error(rel, reason)`` is called for each unusable file; ``progress(phase, n,
    total)`` while images are read (``"read"``) and as noise steps finish
    (``"protect"``; ``n`` counts images, fractionally within a batch).  With
    ``cfg.preview`` only that many images are protected and written as side-by-side
    sheets (:mod:`preview`), with no manifest.  ``shard``: this process's part of a
    run in several processes (:mod:`distributed`).  ``extras``: the generator file's
    method tensors (class-wise EM's patterns).
    """
    start = time.perf_counter()
    cfg.validate()
    if cfg.preview and not shard.single:
        raise ConfigError("--preview runs in one process; drop --shard or torchrun")
    try:
        labelling.validate_mode(cfg.labels, card.class_names)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    check_folders(input_dir, output_dir)
    root, files, passed_over = find_inputs(input_dir, output_dir)
    rels = [f.relative_to(root).as_posix() for f in files]
    suffix = ".preview.png" if cfg.preview else cfg.output_format.suffix
    entries = [Entry(f, r, o) for f, r, o in zip(files, rels, output_names(rels, suffix))]
    if cfg.labels == labelling.NAMES:     # folder names are known before any image is decoded
        try:
            labelling.classes_by_name([e.group for e in entries], card.class_names)
        except labelling.LabelError as e:
            raise ConfigError(f"{input_dir}: {e}") from e
    summary = ProtectSummary(output_dir, part="" if shard.single or shard.talks else f"{shard.index + 1}/{shard.count}")
    if cfg.steps * cfg.alpha < cfg.radius:
        summary.warnings.append(f"--steps {cfg.steps} x --step-size {cfg.alpha * 255:g} levels cannot carry the "
                                f"noise across its bound of {cfg.radius_levels}: much of it stays random")

    def failed(rel: str, reason: str) -> None:
        summary.failed.append((rel, reason))
        on_error(rel, reason)

    protector = Protector(model, card, cfg, device, extras)
    entries, label_warnings = scan(entries, protector, cfg, failed, shard,
                                   progress=lambda n: progress("read", n, len(files)),
                                   on_remote_error=lambda rel, reason: summary.failed.append((rel, reason)))
    summary.warnings += label_warnings + passed_over
    summary.classes = {e.group: card.class_names[e.label] for e in entries}
    scan_failures = len(summary.failed)   # the same on every rank; later ones are this process's own
    if not entries:                       # nothing readable: create nothing
        summary.seconds = time.perf_counter() - start
        return summary
    prepare_output(output_dir)
    if cfg.preview:
        chosen = spread(entries, cfg.preview)
        write_previews(chosen, make_batches(chosen, cfg), protector, cfg, output_dir, summary,
                       lambda n: progress("protect", n, len(chosen)))
        summary.seconds = time.perf_counter() - start
        return summary
    manifest_path = output_dir / manifest.MANIFEST
    header = manifest.header(input_dir, output_dir, weights_path, card, protector.digest,
                             protector.noise_config, cfg, device)
    records, warnings = previous_records(output_dir, entries, header, cfg.overwrite, shard)
    summary.warnings += warnings

    def done(e: Entry) -> bool:
        return not cfg.overwrite and is_finished(records.get(e.rel), e, output_dir)

    if shard.single:
        manifest.write(manifest_path, header, records, summary.failed)   # a crash leaves this run's header
    else:
        manifest.start_journal(output_dir, header, shard)                # a part's header goes in its journal
    batches = [b for i, b in enumerate(make_batches(entries, cfg)) if shard.owns(i)]
    mine = [e for b in batches for e in b]
    pending_total = sum(not done(e) for e in mine)
    summary.skipped = len(mine) - pending_total
    progress("protect", 0, pending_total)
    written = 0
    new_rels: list[str] = []
    last_manifest = time.perf_counter()
    for batch in batches:
        todo = [e for e in batch if not done(e)]
        if not todo:
            continue
        images, keep = read_batch(batch, todo, cfg, failed)
        if not keep:
            continue
        x_u8 = torch.stack([to_tensor(img) for img in images])
        labels = torch.tensor([e.label for e in keep])
        out, after = protector.protect(x_u8, labels, batch_generator(cfg, batch),
                                       on_step=lambda k, n: progress("protect", written + len(todo) * k / n,
                                                                     pending_total))
        finished = []
        for i, (e, img) in enumerate(zip(keep, images)):
            if e not in todo:
                continue
            pixels = out[i].permute(1, 2, 0).numpy()
            try:
                write_image(output_dir / e.output_rel, pixels, img.alpha, img.icc,
                            img.exif if cfg.keep_exif else None, cfg.output_format)
            except ValueError as err:              # too large for the chosen format
                failed(e.rel, str(err))
                continue
            records[e.rel] = image_record(e, card, out[i], x_u8[i], after[i].item())
            finished.append(records[e.rel])
            new_rels.append(e.rel)
            summary.processed += 1
        written += len(todo)
        manifest.append_journal(manifest_path, finished, shard)
        if shard.single and time.perf_counter() - last_manifest > MANIFEST_INTERVAL_S:
            manifest.write(manifest_path, header, records, summary.failed)
            last_manifest = time.perf_counter()
        progress("protect", written, pending_total)
    if shard.talks:
        mine = entries                     # rank 0 reports on (and records) the whole job
        _collect_ranks(records, summary, new_rels, scan_failures)
    if shard.leader and not summary.part:
        manifest.write(manifest_path, header, records, summary.failed)
        manifest.remove_journals(output_dir)
        summary.manifest_written = True
    new = [records[e.rel] for e in mine if e.rel in records]
    summary.psnr = [r["psnr"] for r in new if r["psnr"] is not None]  # type: ignore[misc]
    summary.worst_linf = max((int(r["linf"]) for r in new), default=0)  # type: ignore[arg-type]
    summary.bytes_in = sum(e.source.stat().st_size for e in mine if e.rel in records)
    summary.bytes_out = sum((output_dir / str(r["output"])).stat().st_size for r in new)
    summary.seconds = time.perf_counter() - start
    return summary


def _collect_ranks(records: dict[str, manifest.Record], summary: ProtectSummary, new_rels: list[str],
                   scan_failures: int) -> None:
    """Under torchrun: every rank's new records, counts and later failures into this
    rank's ``records`` and ``summary`` (the first ``scan_failures`` were exchanged by :func:`scan`)."""
    mine = {"records": [records[rel] for rel in new_rels], "processed": summary.processed,
            "skipped": summary.skipped, "failed": summary.failed[scan_failures:]}
    parts = gather_json(mine)
    summary.processed = sum(int(p["processed"]) for p in parts)  # type: ignore[index]
    summary.skipped = sum(int(p["skipped"]) for p in parts)  # type: ignore[index]
    for p in parts:
        records.update({str(r["source"]): r for r in p["records"]})  # type: ignore[index]
    summary.failed = summary.failed[:scan_failures] + [tuple(f) for p in parts for f in p["failed"]]  # type: ignore[misc]


def batch_generator(cfg: ProtectConfig, batch: list[Entry]) -> torch.Generator:
    """The random stream of one batch, keyed by its files (not by what a run had left to do)."""
    return seeding.generator(cfg.seed, "protect", *[e.rel for e in batch])


def read_batch(batch: list[Entry], todo: list[Entry], cfg: ProtectConfig,
               failed: Callable[[str, str], None]) -> tuple[list[DecodedImage], list[Entry]]:
    """Decode a batch again (images are not kept in memory between the scan and here)."""
    images, keep = [], []
    for e in batch:
        try:
            images.append(read_image(e.source, cfg.max_pixels))
            keep.append(e)
        except ImageReadError as err:  # changed since the scan
            if e in todo:
                failed(e.rel, err.reason)
    return images, keep


def write_previews(chosen: list[Entry], batches: list[list[Entry]], protector: Protector, cfg: ProtectConfig,
                   output_dir: Path, summary: ProtectSummary, progress: Callable[[float], None]) -> None:
    """Protect ``chosen`` and write one side-by-side sheet each (original | protected | noise)."""
    done = 0
    for batch in batches:
        images, keep = read_batch(batch, batch, cfg, lambda rel, reason: summary.failed.append((rel, reason)))
        if not keep:
            continue
        x_u8 = torch.stack([to_tensor(img) for img in images])
        out, _ = protector.protect(x_u8, torch.tensor([e.label for e in keep]), batch_generator(cfg, batch),
                                   on_step=lambda k, n: progress(done + len(keep) * k / n))
        for i, e in enumerate(keep):
            sheet = preview_sheet(x_u8[i], out[i], cfg.radius_levels)
            write_image(output_dir / e.output_rel, sheet.permute(1, 2, 0).numpy())
            summary.previews.append(output_dir / e.output_rel)
            summary.psnr.append(psnr(out[i], x_u8[i]) or float("inf"))
            summary.worst_linf = max(summary.worst_linf, int((out[i].int() - x_u8[i].int()).abs().max()))
        done += len(keep)
        progress(done)
