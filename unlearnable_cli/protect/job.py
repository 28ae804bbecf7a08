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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from . import labels as labelling, manifest
from ..config import ConfigError, ProtectConfig
from ..distributed import SINGLE, Shard, gather_json
from .folders import check_folders, find_inputs, output_names, prepare_output
from ..io.images import DecodedImage, write_image
from .manifest import is_finished, previous_records
from ..metrics import psnr
from .preview import preview_sheet, spread
from .batches import batch_generator, make_batches, read_batch
from .protector import Protector, check_options, quantize
from .scan import Entry, scan
from ..models.weights import GeneratorCard

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
    shard_label: str = ""              # "2/3" when this was part 2 of 3 of a --shard run

    @property
    def manifest(self) -> Path:
        return self.output_dir / manifest.MANIFEST


@dataclass
class Job:
    """One ``protect`` run's context, passed from stage to stage."""

    input_dir: Path
    output_dir: Path
    card: GeneratorCard
    cfg: ProtectConfig
    shard: Shard
    summary: ProtectSummary
    on_error: Callable[[str, str], None]
    progress: Progress
    records: dict[str, manifest.Record] = field(default_factory=dict)
    header: dict[str, object] = field(default_factory=dict)

    def failed(self, rel: str, reason: str) -> None:
        self.summary.failed.append((rel, reason))
        self.on_error(rel, reason)

    def done(self, e: Entry) -> bool:
        """Whether ``e``'s output is already there from a run with the same settings."""
        return not self.cfg.overwrite and is_finished(self.records.get(e.rel), e, self.output_dir)


def plan(input_dir: Path, output_dir: Path, card: GeneratorCard, cfg: ProtectConfig,
         shard: Shard) -> tuple[list[Entry], list[str]]:
    """Stage 1: check options and folders before any work; find the inputs and name their
    outputs.  Returns the entries and the notes on what was passed over."""
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
    return entries, passed_over


def resume_plan(job: Job, entries: list[Entry], protector: Protector, weights_path: Path | None,
                device: torch.device) -> list[list[Entry]]:
    """Stage 3: the manifest header, what earlier runs finished (refusing to mix settings),
    and this process's batches."""
    cfg, shard, output_dir = job.cfg, job.shard, job.output_dir
    head = manifest.header(job.input_dir, output_dir, weights_path, job.card, protector.digest,
                           protector.noise_config, cfg, device)
    if protector.cloaker is not None:
        head["settings"].update(protector.cloaker.settings())  # type: ignore[union-attr]
    job.records, warnings = previous_records(output_dir, entries, head, cfg.overwrite, shard)
    job.summary.warnings += warnings
    if shard.single:
        manifest.write(job.summary.manifest, head, job.records, job.summary.failed)  # a crash leaves this header
    else:
        manifest.start_journal(output_dir, head, shard)                          # a part's header goes in its journal
    job.header = head
    return [b for i, b in enumerate(make_batches(entries, cfg)) if shard.owns(i)]


def protect_batches(job: Job, batches: list[list[Entry]], protector: Protector) -> list[str]:
    """Stage 4: noise, quantize and write each batch, journalling its records; returns the
    sources this process protected."""
    cfg, summary = job.cfg, job.summary
    mine = [e for b in batches for e in b]
    pending_total = sum(not job.done(e) for e in mine)
    summary.skipped = len(mine) - pending_total
    job.progress("protect", 0, pending_total)
    written, new_rels, last_manifest = 0, [], time.perf_counter()
    for batch in batches:
        todo = [e for e in batch if not job.done(e)]
        if not todo:
            continue
        images, keep = read_batch(batch, todo, cfg, job.failed)
        if not keep:
            continue
        x_u8 = torch.stack([img.tensor() for img in images])
        out, after = protector.protect(x_u8, torch.tensor([e.label for e in keep]), batch_generator(cfg, batch),
                                       on_step=lambda k, n: job.progress("protect", written + len(todo) * k / n,
                                                                         pending_total),
                                       groups=[e.group for e in keep])
        finished = write_outputs(job, keep, images, todo, out, x_u8, after)
        new_rels += [str(r["source"]) for r in finished]
        written += len(todo)
        manifest.append_journal(summary.manifest, finished, job.shard)
        if job.shard.single and time.perf_counter() - last_manifest > MANIFEST_INTERVAL_S:
            manifest.write(summary.manifest, job.header, job.records, summary.failed)
            last_manifest = time.perf_counter()
        job.progress("protect", written, pending_total)
    return new_rels


def write_outputs(job: Job, keep: list[Entry], images: list[DecodedImage], todo: list[Entry], out: torch.Tensor,
                  x_u8: torch.Tensor, after: torch.Tensor) -> list[manifest.Record]:
    """Write each pending image of a protected batch atomically; returns their records."""
    finished = []
    for i, (e, img) in enumerate(zip(keep, images)):
        if e not in todo:
            continue
        try:
            write_image(job.output_dir / e.output_rel, out[i].permute(1, 2, 0).numpy(), img.alpha, img.icc,
                        img.exif if job.cfg.keep_exif else None, job.cfg.output_format)
        except ValueError as err:              # too large for the chosen format
            job.failed(e.rel, str(err))
            continue
        job.records[e.rel] = manifest.image_record(e, job.card, out[i], x_u8[i], after[i].item())
        finished.append(job.records[e.rel])
        job.summary.processed += 1
    return finished


def summarize(job: Job, mine: list[Entry]) -> None:
    """Stage 5: the statistics of the images this run reports on (PSNR, largest change, sizes)."""
    summary, records = job.summary, job.records
    new = [records[e.rel] for e in mine if e.rel in records]
    summary.psnr = [r["psnr"] for r in new if r["psnr"] is not None]  # type: ignore[misc]
    summary.worst_linf = max((int(r["linf"]) for r in new), default=0)  # type: ignore[arg-type]
    summary.bytes_in = sum(e.source.stat().st_size for e in mine if e.rel in records)
    summary.bytes_out = sum((job.output_dir / str(r["output"])).stat().st_size for r in new)


def protect_folder(input_dir: Path, output_dir: Path, model: nn.Module, card: GeneratorCard,
                   cfg: ProtectConfig, device: torch.device, weights_path: Path | None = None,
                   on_error: Callable[[str, str], None] = lambda rel, reason: None,
                   progress: Progress = lambda phase, done, total: None,
                   shard: Shard = SINGLE, extras: dict[str, torch.Tensor] | None = None) -> ProtectSummary:
    """Protect every image under ``input_dir`` (a folder, or one image file) into
    ``output_dir``, in the stages plan → scan → resume plan → batches → summary (module docstring).

    ``on_error(rel, reason)`` is called for each unusable file; ``progress(phase, n,
    total)`` while images are read (``"read"``) and as noise steps finish
    (``"protect"``; ``n`` counts images, fractionally within a batch).  With
    ``cfg.preview`` only that many images are protected and written as side-by-side
    sheets (:mod:`preview`), with no manifest.  ``shard``: this process's part of a
    run in several processes (:mod:`distributed`).  ``extras``: the generator file's
    method tensors (class-wise EM's patterns, TUE's score estimator).
    """
    start = time.perf_counter()
    entries, passed_over = plan(input_dir, output_dir, card, cfg, shard)
    summary = ProtectSummary(output_dir, shard_label="" if shard.single or shard.torchrun else f"{shard.index + 1}/{shard.count}")
    if cfg.steps * cfg.alpha < cfg.radius:
        summary.warnings.append(f"--steps {cfg.steps} x --step-size {cfg.alpha * 255:g} levels cannot carry the "
                                f"noise across its bound of {cfg.radius_levels}: much of it stays random")
    job = Job(input_dir, output_dir, card, cfg, shard, summary, on_error, progress)
    protector = Protector(model, card, cfg, device, extras)
    n_files = len(entries)
    entries, label_warnings = scan(entries, protector, cfg, job.failed, shard,
                                   progress=lambda n: progress("read", n, n_files),
                                   on_remote_error=lambda rel, reason: summary.failed.append((rel, reason)))
    summary.warnings += label_warnings + passed_over
    summary.classes = {e.group: card.class_names[e.label] for e in entries}
    if protector.cloaker is not None:
        summary.warnings += protector.cloaker.prepare(entries)
    scan_failures = len(summary.failed)   # the same on every rank; later ones are this process's own
    if entries:                           # nothing readable: create nothing
        prepare_output(output_dir)
        if cfg.preview:
            chosen = spread(entries, cfg.preview)
            write_previews(chosen, make_batches(chosen, cfg), protector, cfg, output_dir, summary,
                           lambda n: progress("protect", n, len(chosen)))
        else:
            batches = resume_plan(job, entries, protector, weights_path, device)
            new_rels = protect_batches(job, batches, protector)
            mine = entries if shard.torchrun else [e for b in batches for e in b]  # rank 0 reports on the whole job
            if shard.torchrun:
                _collect_ranks(job.records, summary, new_rels, scan_failures)
            if shard.leader and not summary.shard_label:
                manifest.write(summary.manifest, job.header, job.records, summary.failed)
                manifest.remove_journals(output_dir)
                summary.manifest_written = True
            summarize(job, mine)
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


def write_previews(chosen: list[Entry], batches: list[list[Entry]], protector: Protector, cfg: ProtectConfig,
                   output_dir: Path, summary: ProtectSummary, progress: Callable[[float], None]) -> None:
    """Protect ``chosen`` and write one side-by-side sheet each (original | protected | noise)."""
    done = 0
    for batch in batches:
        images, keep = read_batch(batch, batch, cfg, lambda rel, reason: summary.failed.append((rel, reason)))
        if not keep:
            continue
        x_u8 = torch.stack([img.tensor() for img in images])
        out, _ = protector.protect(x_u8, torch.tensor([e.label for e in keep]), batch_generator(cfg, batch),
                                   on_step=lambda k, n: progress(done + len(keep) * k / n),
                                   groups=[e.group for e in keep])
        for i, e in enumerate(keep):
            sheet = preview_sheet(x_u8[i], out[i], cfg.radius_levels)
            write_image(output_dir / e.output_rel, sheet.permute(1, 2, 0).numpy())
            summary.previews.append(output_dir / e.output_rel)
            summary.psnr.append(psnr(out[i], x_u8[i]) or float("inf"))
            summary.worst_linf = max(summary.worst_linf, int((out[i].int() - x_u8[i].int()).abs().max()))
        done += len(keep)
        progress(done)
