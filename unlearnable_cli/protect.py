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
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import labels as labelling, manifest, seeding, transforms
from .config import ConfigError, ProtectConfig
from .imageio import IMAGE_SUFFIXES, DecodedImage, FolderScan, ImageReadError, read_image, scan_folder, write_image
from .metrics import psnr
from .preview import preview_sheet
from .noise import ErrorMinimizingNoise, Method, NoiseConfig
from .weights import GeneratorCard, model_digest

#: The full manifest is rewritten at most this often (and at the end); in between,
#: finished records go to the journal (:mod:`manifest`).
MANIFEST_INTERVAL_S = 30.0

#: ``progress(phase, done, total)``: phase ``"read"`` (decoding for labels) or ``"protect"``.
Progress = Callable[[str, float, int], None]


@dataclass
class Entry:
    """One input image: where it is, where its output goes, and what the scan learnt."""

    source: Path
    rel: str
    output_rel: str
    shape: tuple[int, int, int] = (0, 0, 0)   # (H, W, C) after orientation, C = 1 or 3
    has_alpha: bool = False
    label: int = -1
    loss_before: float = float("nan")          # surrogate loss of the unprotected image

    @property
    def group(self) -> str:
        return str(Path(self.rel).parent.as_posix())


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

    @property
    def manifest(self) -> Path:
        return self.output_dir / manifest.MANIFEST


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


def quantize(x_u8: torch.Tensor, delta: torch.Tensor, levels: int) -> torch.Tensor:
    """Round x + δ to 8 bits while guaranteeing |out − x| ≤ ``levels`` for every pixel."""
    base = x_u8.float()
    moved = torch.round(base + delta * 255)
    return torch.minimum(torch.maximum(moved, base - levels), base + levels).clamp(0, 255).to(torch.uint8)


class Protector:
    """Noise computation for batches of same-shape images against one generator."""

    def __init__(self, model: nn.Module, card: GeneratorCard, cfg: ProtectConfig,
                 device: torch.device) -> None:
        self.model, self.card, self.cfg, self.device = model, card, cfg, device
        spec = card.transform_spec
        deterministic = spec == transforms.TransformSpec.identity()
        method = Method(card.method)
        hyper = card.hyperparameters
        self.noise_config = NoiseConfig(
            method=method, radius=cfg.radius,
            step_size=cfg.alpha,
            steps=cfg.steps,
            eot_samples=cfg.eot_samples or (1 if deterministic else 5),
            random_radius=card.adv_radius if cfg.random_radius is None else cfg.random_radius,
            adv_step_size=float(hyper.get("adv_step_size", 0.8 / 255)),
            adv_steps=int(hyper.get("adv_steps", 10)),
            transform=spec, grayscale_draws=cfg.eot_grayscale)
        self.engine = ErrorMinimizingNoise(model, self.noise_config, tuple(card.input_size))

    def thumbnails(self, images: torch.Tensor) -> torch.Tensor:
        """Deterministic full-frame resize of (B, 3, H, W) [0, 1] images to the generator input."""
        b, _, h, w = images.shape
        if (h, w) == tuple(self.card.input_size):
            return images.contiguous(memory_format=torch.channels_last)   # already the input: exact
        return transforms.apply(images, transforms.identity_params(b, (h, w), tuple(self.card.input_size),
                                                                   self.device))

    @torch.no_grad()
    def log_probs(self, thumbnails: torch.Tensor) -> torch.Tensor:
        """Generator log-probabilities (N, K) for images already at its input size."""
        return F.log_softmax(self.model(thumbnails.to(self.device)), 1).cpu()

    def protect(self, x_u8: torch.Tensor, labels: torch.Tensor, generator: torch.Generator,
                on_step: Callable[[int, int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Protect a batch ``(B, C, H, W)`` uint8 (C = 1 grayscale or 3 RGB).

        Returns (protected uint8 of the same shape, surrogate loss of the protected images).
        ``on_step(k, K_u)`` reports the noise steps as they finish.
        """
        gray = x_u8.shape[1] == 1
        x = x_u8.to(self.device).float() / 255
        x3 = x.expand(-1, 3, -1, -1) if gray else x
        labels = labels.to(self.device)
        delta = self.engine(x3, labels, generator, shared_channels=gray, on_step=on_step)
        out = quantize(x_u8.to(self.device), delta, self.cfg.radius_levels)
        out3 = (out.float() / 255).expand(-1, 3, -1, -1)
        after = -self.log_probs(self.thumbnails(out3)).gather(1, labels.cpu()[:, None])[:, 0]
        return out.cpu(), after


def _to_tensor(img: DecodedImage) -> torch.Tensor:
    return torch.from_numpy(img.pixels).permute(2, 0, 1)


def scan(entries: list[Entry], protector: Protector, cfg: ProtectConfig,
         on_error: Callable[[str, str], None], chunk: int = 256,
         progress: Callable[[int], None] = lambda n: None) -> tuple[list[Entry], list[str]]:
    """Decode every image once: record shape and alpha, assign labels, note the loss before.

    Thumbnails go through the generator in chunks (batched, bounded memory).
    Returns the readable entries and the labelling warnings.
    """
    ok: list[Entry] = []
    thumbs: list[torch.Tensor] = []
    log_probs: list[torch.Tensor] = []
    for n, e in enumerate(entries):
        progress(n)
        try:
            img = read_image(e.source, cfg.max_pixels)
        except ImageReadError as err:
            on_error(e.rel, err.reason)
            continue
        e.shape, e.has_alpha = img.pixels.shape, img.alpha is not None
        x = _to_tensor(img)[None].to(protector.device).float() / 255
        thumbs.append(protector.thumbnails(x.expand(-1, 3, -1, -1)))
        if len(thumbs) == chunk:
            log_probs.append(protector.log_probs(torch.cat(thumbs)))
            thumbs.clear()
        ok.append(e)
    if not ok:
        return ok, []
    if thumbs:
        log_probs.append(protector.log_probs(torch.cat(thumbs)))
    lp = torch.cat(log_probs)
    assignment = labelling.assign_labels(cfg.labels, lp.exp(), [e.group for e in ok], protector.card.class_names)
    for i, (e, label) in enumerate(zip(ok, assignment.labels)):
        e.label, e.loss_before = label, -lp[i, label].item()
    return ok, assignment.warnings


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


def is_finished(record: manifest.Record | None, e: Entry, output_dir: Path) -> bool:
    """Whether ``record`` is ``e``'s output under this run's name and that file exists."""
    return record is not None and record.get("output") == e.output_rel and (output_dir / e.output_rel).is_file()


def previous_records(output_dir: Path, entries: list[Entry], header: dict[str, object],
                     overwrite: bool) -> tuple[dict[str, manifest.Record], list[str]]:
    """Records of images already protected into ``output_dir`` (none with ``overwrite``),
    and warnings.

    Raises :class:`ConfigError` when the folder holds outputs made with another
    generator or other settings: skipping them would mix two protections under one
    manifest.  Outputs whose class differs from this run's assignment (the folders'
    contents changed) are kept, with a warning.
    """
    path = output_dir / manifest.MANIFEST
    if overwrite:
        (output_dir / manifest.JOURNAL).unlink(missing_ok=True)
        return {}, []
    by_rel = {e.rel: e for e in entries}
    previous, records = manifest.load(path)
    records = {k: v for k, v in records.items() if k in by_rel}
    finished = [k for k, r in records.items() if is_finished(r, by_rel[k], output_dir)]   # what this run skips
    made = [k for k, r in records.items() if (output_dir / str(r.get("output"))).is_file()]   # under any name
    diffs = manifest.settings_differences(previous, header)
    if made and diffs:
        raise ConfigError(f"{output_dir}: holds {len(made)} image(s) protected with another generator or "
                          f"other settings ({'; '.join(diffs)}); rerun with the same ones to resume, "
                          "add --overwrite to redo them, or choose another --output")
    moved = sum(records[k].get("class_index") != by_rel[k].label for k in finished)
    warnings = [f"{moved} image(s) already in {output_dir} were pushed to another class than this run "
                "assigns (the folders' contents changed); they are kept, --overwrite redoes them"] if moved else []
    return records, warnings


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


def spread(entries: list[Entry], n: int) -> list[Entry]:
    """``n`` entries evenly spread over the sorted list (first and last included)."""
    ordered = sorted(entries, key=lambda e: e.rel)
    if n >= len(ordered):
        return ordered
    if n == 1:
        return ordered[:1]
    return [ordered[round(i * (len(ordered) - 1) / (n - 1))] for i in range(n)]


def protect_folder(input_dir: Path, output_dir: Path, model: nn.Module, card: GeneratorCard,
                   cfg: ProtectConfig, device: torch.device, weights_path: Path | None = None,
                   on_error: Callable[[str, str], None] = lambda rel, reason: None,
                   progress: Progress = lambda phase, done, total: None) -> ProtectSummary:
    """Protect every image under ``input_dir`` (a folder, or one image file) into
    ``output_dir``; see the module docstring.

    ``on_error(rel, reason)`` is called for each unusable file; ``progress(phase, n,
    total)`` while images are read (``"read"``) and as noise steps finish
    (``"protect"``; ``n`` counts images, fractionally within a batch).  With
    ``cfg.preview`` only that many images are protected and written as side-by-side
    sheets (:mod:`preview`), with no manifest.
    """
    start = time.perf_counter()
    cfg.validate()
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
    summary = ProtectSummary(output_dir)
    if cfg.steps * cfg.alpha < cfg.radius:
        summary.warnings.append(f"--steps {cfg.steps} x --step-size {cfg.alpha * 255:g} levels cannot carry the "
                                f"noise across its bound of {cfg.radius_levels}: much of it stays random")

    def failed(rel: str, reason: str) -> None:
        summary.failed.append((rel, reason))
        on_error(rel, reason)

    protector = Protector(model, card, cfg, device)
    entries, label_warnings = scan(entries, protector, cfg, failed,
                                   progress=lambda n: progress("read", n, len(files)))
    summary.warnings += label_warnings + passed_over
    summary.classes = {e.group: card.class_names[e.label] for e in entries}
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
    header = manifest.header(input_dir, output_dir, weights_path, card, model_digest(model),
                             protector.noise_config, cfg, device)
    records, warnings = previous_records(output_dir, entries, header, cfg.overwrite)
    summary.warnings += warnings

    def done(e: Entry) -> bool:
        return not cfg.overwrite and is_finished(records.get(e.rel), e, output_dir)

    manifest.write(manifest_path, header, records, summary.failed)   # a crash leaves this run's header
    batches = make_batches(entries, cfg)
    pending_total = sum(not done(e) for e in entries)
    summary.skipped = len(entries) - pending_total
    progress("protect", 0, pending_total)
    written = 0
    last_manifest = time.perf_counter()
    for batch in batches:
        todo = [e for e in batch if not done(e)]
        if not todo:
            continue
        images, keep = read_batch(batch, todo, cfg, failed)
        if not keep:
            continue
        x_u8 = torch.stack([_to_tensor(img) for img in images])
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
            summary.processed += 1
        written += len(todo)
        manifest.append_journal(manifest_path, finished)
        if time.perf_counter() - last_manifest > MANIFEST_INTERVAL_S:
            manifest.write(manifest_path, header, records, summary.failed)
            last_manifest = time.perf_counter()
        progress("protect", written, pending_total)
    manifest.write(manifest_path, header, records, summary.failed)
    (output_dir / manifest.JOURNAL).unlink(missing_ok=True)
    summary.manifest_written = True
    new = [records[e.rel] for e in entries if e.rel in records]
    summary.psnr = [r["psnr"] for r in new if r["psnr"] is not None]  # type: ignore[misc]
    summary.worst_linf = max((int(r["linf"]) for r in new), default=0)  # type: ignore[arg-type]
    summary.bytes_in = sum(e.source.stat().st_size for e in entries if e.rel in records)
    summary.bytes_out = sum((output_dir / str(r["output"])).stat().st_size for r in new)
    summary.seconds = time.perf_counter() - start
    return summary


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
        x_u8 = torch.stack([_to_tensor(img) for img in images])
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
