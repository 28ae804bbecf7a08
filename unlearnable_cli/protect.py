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
from .imageio import DecodedImage, FolderScan, ImageReadError, read_image, scan_folder, write_png
from .metrics import psnr
from .noise import ErrorMinimizingNoise, Method, NoiseConfig
from .weights import GeneratorCard, model_digest

#: The full manifest is rewritten at most this often (and at the end); in between,
#: finished records go to the journal (:mod:`manifest`).
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
        return self.output_dir / manifest.MANIFEST


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
    diffs = manifest.settings_differences(previous, header)
    if finished and diffs:
        raise ConfigError(f"{output_dir}: holds {len(finished)} image(s) protected with another generator or "
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
    return lines


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
    found = scan_folder(input_dir, exclude=output_dir)
    files, passed_over = found.images, passed_over_warnings(found, input_dir)
    if not files:
        raise ConfigError(f"{input_dir}: no images found (looked for "
                          "jpg, jpeg, png, webp, bmp, tif, tiff, gif, heic, avif)"
                          + "".join(f"; {w}" for w in passed_over))
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
    summary.warnings += passed_over
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
        manifest.append_journal(manifest_path, finished)
        if time.perf_counter() - last_manifest > MANIFEST_INTERVAL_S:
            manifest.write(manifest_path, header, records, summary.failed)
            last_manifest = time.perf_counter()
        progress(written, pending_total)
    manifest.write(manifest_path, header, records, summary.failed)
    (output_dir / manifest.JOURNAL).unlink(missing_ok=True)
    new = [records[e.rel] for e in entries if e.rel in records]
    summary.psnr = [r["psnr"] for r in new if r["psnr"] is not None]  # type: ignore[misc]
    summary.worst_linf = max((int(r["linf"]) for r in new), default=0)  # type: ignore[arg-type]
    summary.seconds = time.perf_counter() - start
    return summary
