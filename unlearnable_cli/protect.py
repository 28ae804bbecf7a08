"""The ``protect`` job: a folder tree of photos in, protected PNGs and a manifest out.

Steps: check options and folders before any work; scan and decode every image once
(bad files are reported and skipped, shapes and thumbnails collected); choose a
generator class per image (:mod:`labels`); split the images into batches of equal
shape, each with its own seeded random stream; run the noise engine at full
resolution; quantize with the exact integer bound; write each PNG atomically, journal
its manifest record after every batch, and rewrite the manifest now and then.  Batches are formed over *all* readable images,
so a resumed run computes exactly the batches (and bytes) of an uninterrupted one.
"""

from __future__ import annotations

import json
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

from . import __version__, labels as labelling, seeding, transforms
from .atomic import atomic_path
from .config import ConfigError, ProtectConfig
from .imageio import DecodedImage, ImageReadError, find_images, read_image, write_png
from .metrics import psnr
from .noise import ErrorMinimizingNoise, Method, NoiseConfig
from .weights import GeneratorCard

MANIFEST = "manifest.json"
#: Records of finished images, appended after every batch (O(1) per batch); the full
#: manifest is rewritten at most every MANIFEST_INTERVAL_S seconds and at the end, when
#: the journal is removed.  A resumed run reads both.
JOURNAL = ".manifest.journal.jsonl"
MANIFEST_INTERVAL_S = 30.0


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

    @property
    def manifest(self) -> Path:
        return self.output_dir / MANIFEST


def default_output_dir(input_dir: Path) -> Path:
    """``<INPUT_DIR>-protected`` beside the input folder."""
    resolved = input_dir.resolve()
    return resolved.with_name(resolved.name + "-protected")


def check_folders(input_dir: Path, output_dir: Path) -> None:
    """Refuse missing input, output = input or an ancestor of it, and unwritable output."""
    if not input_dir.exists():
        raise ConfigError(f"{input_dir}: input folder does not exist")
    if not input_dir.is_dir():
        raise ConfigError(f"{input_dir}: input is not a folder")
    src, dst = input_dir.resolve(), output_dir.resolve()
    if src == dst:
        raise ConfigError(f"{output_dir}: the output folder is the input folder; originals are never "
                          "overwritten, choose another output")
    if dst in src.parents:
        raise ConfigError(f"{output_dir}: the output folder contains the input folder; outputs could "
                          "land on originals, choose another output")
    try:
        dst.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=dst, prefix=".write-test-"):
            pass
    except OSError as e:
        raise ConfigError(f"{output_dir}: output folder is not writable ({e.strerror or e})") from e


def output_names(rels: list[str]) -> list[str]:
    """Output path per input: the same relative path with a ``.png`` suffix.

    When several inputs would share an output name (``a.jpg`` and ``a.png``), each
    keeps its original extension in the name (``a.jpg.png``, ``a.png.png``); names
    are compared case-insensitively so outputs also stay distinct on such file systems.
    """
    plain = [Path(r).with_suffix(".png").as_posix() for r in rels]
    count: dict[str, int] = defaultdict(int)
    for p in plain:
        count[p.casefold()] += 1
    names = [p if count[p.casefold()] == 1 else f"{r}.png" for p, r in zip(plain, rels)]
    seen: set[str] = set()
    unique = []
    for name in names:
        candidate, k = name, 2
        while candidate.casefold() in seen:
            candidate = f"{Path(name).with_suffix('').as_posix()}~{k}.png"
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
            step_size=cfg.step_size if cfg.step_size is not None else cfg.radius / 5,
            steps=cfg.steps,
            eot_samples=cfg.eot_samples or (1 if deterministic else 5),
            random_radius=card.adv_radius if cfg.random_radius is None else cfg.random_radius,
            adv_step_size=float(hyper.get("adv_step_size", 0.8 / 255)),
            adv_steps=int(hyper.get("adv_steps", 10)),
            transform=spec)
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

    def protect(self, x_u8: torch.Tensor, labels: torch.Tensor,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Protect a batch ``(B, C, H, W)`` uint8 (C = 1 grayscale or 3 RGB).

        Returns (protected uint8 of the same shape, surrogate loss of the protected images).
        """
        gray = x_u8.shape[1] == 1
        x = x_u8.to(self.device).float() / 255
        x3 = x.expand(-1, 3, -1, -1) if gray else x
        labels = labels.to(self.device)
        delta = self.engine(x3, labels, generator, shared_channels=gray)
        out = quantize(x_u8.to(self.device), delta, self.cfg.radius_levels)
        out3 = (out.float() / 255).expand(-1, 3, -1, -1)
        after = -self.log_probs(self.thumbnails(out3)).gather(1, labels.cpu()[:, None])[:, 0]
        return out.cpu(), after


def _to_tensor(img: DecodedImage) -> torch.Tensor:
    return torch.from_numpy(img.pixels).permute(2, 0, 1)


def scan(entries: list[Entry], protector: Protector, cfg: ProtectConfig,
         on_error: Callable[[str, str], None], chunk: int = 256) -> tuple[list[Entry], list[str]]:
    """Decode every image once: record shape and alpha, assign labels, note the loss before.

    Thumbnails go through the generator in chunks (batched, bounded memory).
    Returns the readable entries and the labelling warnings.
    """
    ok: list[Entry] = []
    thumbs: list[torch.Tensor] = []
    log_probs: list[torch.Tensor] = []
    for e in entries:
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


def load_manifest(path: Path) -> dict[str, dict[str, object]]:
    """Records of a previous run by source path, from the manifest and its journal.

    Unreadable parts count as absent (those images are simply protected again); a
    journal line cut short by a crash is ignored.
    """
    records: dict[str, dict[str, object]] = {}
    try:
        records = {r["source"]: r for r in json.loads(path.read_text())["images"]}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        lines = (path.parent / JOURNAL).read_text().splitlines()
    except (OSError, ValueError):
        return records
    for line in lines:
        try:
            record = json.loads(line)
            records[record["source"]] = record
        except (ValueError, KeyError, TypeError):
            continue
    return records


def append_journal(path: Path, records: list[dict[str, object]]) -> None:
    """Append finished records to the journal beside the manifest, durably."""
    with open(path.parent / JOURNAL, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records))
        f.flush()
        os.fsync(f.fileno())


def write_manifest(path: Path, header: dict[str, object], records: dict[str, dict[str, object]],
                   failed: list[tuple[str, str]]) -> None:
    """Write the manifest atomically."""
    body = dict(header, images=[records[k] for k in sorted(records)],
                failed=[{"source": s, "reason": r} for s, r in failed])
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(body, indent=1))


def manifest_header(input_dir: Path, output_dir: Path, weights_path: Path | None, card: GeneratorCard,
                    nc: NoiseConfig, cfg: ProtectConfig, device: torch.device) -> dict[str, object]:
    """The run-level part of the manifest: folders, generator and the settings actually used."""
    return {
        "tool": "unlearnable", "version": __version__, "input": str(input_dir.resolve()),
        "output": str(output_dir.resolve()),
        "generator": {"path": str(weights_path) if weights_path else None, "arch": card.arch,
                      "arch_kwargs": card.arch_kwargs, "method": card.method,
                      "dataset": card.dataset.get("name"), "classes": card.class_names},
        "settings": {"radius_levels": cfg.radius_levels, "steps": nc.steps,
                     "step_size_levels": round(nc.step_size * 255, 4), "eot_samples": nc.eot_samples,
                     "random_radius_levels": round(nc.random_radius * 255, 4), "labels": cfg.labels,
                     "batch_size": cfg.batch_size, "seed": cfg.seed, "keep_exif": cfg.keep_exif,
                     "device": str(device)},
    }


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
                   progress: Callable[[int, int], None] = lambda done, total: None) -> ProtectSummary:
    """Protect every image under ``input_dir`` into ``output_dir``; see the module docstring.

    ``on_error(rel, reason)`` is called for each unusable file; ``progress(n, total)``
    after each written batch (``total`` = images that need work).
    """
    start = time.perf_counter()
    cfg.validate()
    try:
        labelling.validate_mode(cfg.labels, card.class_names)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    check_folders(input_dir, output_dir)
    files = find_images(input_dir, exclude=output_dir)
    if not files:
        raise ConfigError(f"{input_dir}: no images found (looked for "
                          "jpg, jpeg, png, webp, bmp, tif, tiff, gif)")
    rels = [f.relative_to(input_dir).as_posix() for f in files]
    entries = [Entry(f, r, o) for f, r, o in zip(files, rels, output_names(rels))]
    if cfg.labels == labelling.NAMES:     # folder names are known before any image is decoded
        try:
            labelling.classes_by_name([e.group for e in entries], card.class_names)
        except labelling.LabelError as e:
            raise ConfigError(f"{input_dir}: {e}") from e
    summary = ProtectSummary(output_dir)

    def failed(rel: str, reason: str) -> None:
        summary.failed.append((rel, reason))
        on_error(rel, reason)

    protector = Protector(model, card, cfg, device)
    entries, summary.warnings = scan(entries, protector, cfg, failed)
    manifest_path = output_dir / MANIFEST
    if cfg.overwrite:
        (output_dir / JOURNAL).unlink(missing_ok=True)
    records = {} if cfg.overwrite else load_manifest(manifest_path)
    records = {k: v for k, v in records.items() if k in {e.rel for e in entries}}

    def done(e: Entry) -> bool:
        rec = records.get(e.rel)
        return (not cfg.overwrite and rec is not None and rec.get("output") == e.output_rel
                and (output_dir / e.output_rel).is_file())

    header = manifest_header(input_dir, output_dir, weights_path, card, protector.noise_config, cfg, device)
    batches = make_batches(entries, cfg)
    pending_total = sum(not done(e) for e in entries)
    summary.skipped = len(entries) - pending_total
    progress(0, pending_total)
    written = 0
    last_manifest = time.perf_counter()
    for batch in batches:
        todo = [e for e in batch if not done(e)]
        if not todo:
            continue
        images, keep = [], []
        for e in batch:
            try:
                images.append(read_image(e.source, cfg.max_pixels))
                keep.append(e)
            except ImageReadError as err:  # changed since the scan
                if e in todo:
                    failed(e.rel, err.reason)
        if not keep:
            continue
        g = seeding.generator(cfg.seed, "protect", *[e.rel for e in batch])
        x_u8 = torch.stack([_to_tensor(img) for img in images])
        labels = torch.tensor([e.label for e in keep])
        out, after = protector.protect(x_u8, labels, g)
        finished = []
        for i, (e, img) in enumerate(zip(keep, images)):
            if e not in todo:
                continue
            pixels = out[i].permute(1, 2, 0).numpy()
            write_png(output_dir / e.output_rel, pixels, img.alpha, img.icc,
                      img.exif if cfg.keep_exif else None)
            records[e.rel] = image_record(e, card, out[i], x_u8[i], after[i].item())
            finished.append(records[e.rel])
            summary.processed += 1
            written += 1
        append_journal(manifest_path, finished)
        if time.perf_counter() - last_manifest > MANIFEST_INTERVAL_S:
            write_manifest(manifest_path, header, records, summary.failed)
            last_manifest = time.perf_counter()
        progress(written, pending_total)
    write_manifest(manifest_path, header, records, summary.failed)
    (output_dir / JOURNAL).unlink(missing_ok=True)
    new = [records[e.rel] for e in entries if e.rel in records]
    summary.psnr = [r["psnr"] for r in new if r["psnr"] is not None]  # type: ignore[misc]
    summary.worst_linf = max((int(r["linf"]) for r in new), default=0)  # type: ignore[arg-type]
    summary.seconds = time.perf_counter() - start
    return summary
