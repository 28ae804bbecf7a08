"""What the commands tell a person, in plain words: protect's closing summary, the
class each folder was pushed to, and a generator's card."""

from __future__ import annotations

import json

from rich.table import Table

from ..config import ProtectConfig
from ..config import OutputFormat
from ..config.protect import STRENGTHS, Against
from .job import ProtectSummary
from ..models.weights import DEFAULT_GENERATOR, SHIPPED, GeneratorCard, WeightsError, read_card, shipped_path

#: What each training metric of a card means (``train-generator`` measures them).
METRIC_MEANINGS = {
    "defended_train_acc": ("on its own protected training images",
                           "high is expected: it has learnt the noise"),
    "clean_train_acc": ("on clean training images", ""),
    "val_clean_acc": ("on held-out clean images",
                      "low is expected: the generator learns the noise, not the images"),
    "val_pgd_acc": ("on held-out images under a PGD attack", "robustness of the surrogate"),
}
#: Where a method's metric means something else.
METHOD_MEANINGS = {
    "pil": {"defended_train_acc": ("on its own protected training images",
                                   "near chance is expected: PIL's noise leaves the linear surrogate no evidence "
                                   "of the class in them"),
            "val_clean_acc": ("on held-out clean images",
                              "a linear classifier's own accuracy: it is fitted on clean images, not on noise")},
}


def _size(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


#: What the outputs are protected against, and what not, per ``--against`` (figures: README).
AGAINST = {
    Against.TRAINING: "A model trained on these files learns less from them; how much depends on how it is "
                      "trained (measured figures: README). Pretrained face recognizers still recognize the "
                      "faces in them (--against recognizers or both cloaks them).",
    Against.RECOGNIZERS: "The faces in them are cloaked against pretrained face recognizers (dlib's, as used by "
                         "face_recognition): each photo's face descriptor was moved towards another person's, one "
                         "target per folder (measured figures: README). Not protected against models trained on "
                         "them from scratch (--against both); a face dlib's detector missed is not cloaked, and a "
                         "recognizer trained later to resist cloaks may undo it (docs/cloak.md).",
    Against.BOTH: "A model trained on these files learns less from them, and the faces in them are cloaked against "
                  "pretrained face recognizers (dlib's, as used by face_recognition), one target per folder "
                  "(measured figures: README; a face dlib's detector missed is not cloaked; docs/cloak.md).",
}


def plain_summary(summary: ProtectSummary, cfg: ProtectConfig) -> str:
    """The closing lines of ``protect``: what was done, the promise, what it does not do."""
    done = summary.processed + summary.skipped
    if not done:
        return "No image could be protected; nothing was written."
    skipped = f" ({summary.skipped} were already done and kept)" if summary.skipped else ""
    psnr = (f", mean PSNR {sum(summary.psnr) / len(summary.psnr):.1f} dB" if summary.psnr else "")
    lines = [
        f"Protected {summary.processed} image(s) into {summary.output_dir}{skipped}.",
        f"Every pixel changed by at most {cfg.radius_levels} of 255 levels "
        f"(largest change found: {summary.worst_linf}{psnr}).",
        strength_line(cfg),
        AGAINST[cfg.against] + " They are not hidden, encrypted or watermarked: people can still see, "
        "share and recognize them, and re-encoding, resizing or editing them weakens the protection.",
    ]
    if summary.bytes_in:
        factor = summary.bytes_out / summary.bytes_in
        hint = (" Both formats are lossless; --format webp is usually smaller."
                if cfg.output_format is OutputFormat.PNG else "")
        lines.append(f"The outputs take {_size(summary.bytes_out)} as {cfg.output_format.value.upper()} "
                     f"({factor:.1f}x the {_size(summary.bytes_in)} of the originals).{hint}")
    if summary.shard_label:
        lines[0] = f"Part {summary.shard_label}: " + lines[0]
        lines.append(f"This part's records are in a journal in {summary.output_dir} ({summary.seconds:.1f} s). "
                     "When every part has finished, run the same command without --shard: it writes "
                     f"{summary.manifest.name} and protects only what no part did.")
    else:
        lines.append(f"Settings and one record per image: {summary.manifest} ({summary.seconds:.1f} s).")
    return "\n".join(lines)


def strength_line(cfg: ProtectConfig) -> str:
    """Which ``--strength`` ran and what it was measured to do (or that options changed it)."""
    level = STRENGTHS[cfg.strength]
    if cfg.strength_as_measured:
        return f"Strength {cfg.strength.value}, measured: {level.measured} (docs/results.md)."
    return (f"Strength {cfg.strength.value}, changed by your options (budget {cfg.budget.value}, highpass "
            f"{cfg.highpass}, color {cfg.color.value}): its measured figures ({level.measured}) do not apply.")


def preview_summary(summary: ProtectSummary, cfg: ProtectConfig) -> str:
    """The closing lines of ``protect --preview``."""
    if not summary.previews:
        return "No preview could be made; nothing was written."
    names = "\n".join(f"  {p}" for p in summary.previews)
    return (f"Wrote {len(summary.previews)} preview(s): original | protected | the change, amplified so that "
            f"±{cfg.radius_levels} levels span black to white (grey: no change).\n{names}\n"
            "Nothing else was written; run without --preview to protect every image.")


#: Up to this many folders, protect's summary names each one's class without --verbose.
SHORT_CLASS_LIST = 3


def class_lines(classes: dict[str, str], verbose: bool = False, limit: int = 50) -> list[str]:
    """``folder `cats` → generator class `deer` ...`` for each folder (at most ``limit``),
    and why any class is fine, in plain words.  Without ``verbose`` and with more than
    :data:`SHORT_CLASS_LIST` folders, one line says how many and that ``--verbose`` names them."""
    if not classes:
        return []
    if not verbose and len(classes) > SHORT_CLASS_LIST:
        return [f"The {len(classes)} folders were each pushed towards one of the generator's classes "
                "(--verbose lists which; manifest.json records each image's)."]
    lines = [f"folder `{group if group != '.' else '(top folder)'}` → pushed towards generator class `{name}`"
             for group, name in sorted(classes.items())[:limit]]
    if len(classes) > limit:
        lines.append(f"… and {len(classes) - limit} more folders")
    lines.append("Any distinct class per folder works: a model trained on the outputs learns "
                 "\"this noise means this folder\" instead of what the images show. The class is only the "
                 "generator's target: to a person the photos do not look like it (with a face generator, "
                 "the faces are not made to look like that person).")
    return lines


def metric_lines(metrics: dict[str, object], method: str = "") -> list[str]:
    """A card's accuracies as percentages, each with what it measures (for ``method``)."""
    meanings = {**METRIC_MEANINGS, **METHOD_MEANINGS.get(method, {})}
    lines = []
    for key, value in metrics.items():
        if not key.endswith("_acc") or not isinstance(value, (int, float)):
            continue
        what, meaning = meanings.get(key, (key, ""))
        if key == "val_pgd_acc" and isinstance(metrics.get("val_pgd_attack"), dict):
            what += f" ({metrics['val_pgd_attack'].get('eps', '?'):g}/255)"  # type: ignore[union-attr]
        lines.append(f"{value:.1%} {what}" + (f" ({meaning})" if meaning else ""))
    return lines


def card_rows(card: GeneratorCard) -> list[tuple[str, str]]:
    """Rows of ``unlearnable info`` (its accuracies follow the table: :func:`metric_lines`)."""
    h = card.hyperparameters
    return [
        ("architecture", f"{card.arch} {card.arch_kwargs}"),
        ("method", card.method + (" class-wise: one fixed pattern per class, added by protect without optimization"
                                  if h.get("class_wise") else "")),
        ("classes", f"{card.num_classes}: {', '.join(card.class_names)}"),
        ("input size", f"{card.input_size[0]}x{card.input_size[1]}, values in {list(card.value_range)}"),
        ("radii (levels/255)", ", ".join(f"{k} {h[k] * 255:g}" for k in
                                         ("radius", "step_size", "adv_radius", "adv_step_size", "random_radius")
                                         if k in h)),
        ("steps", ", ".join(f"{k} {h[k]}" for k in ("steps", "noise_steps", "eot_samples", "adv_steps",
                                                     "batch_size") if k in h)),
        ("transform", json.dumps(card.transform)),
        ("training data", json.dumps(card.dataset)),
        ("provenance", json.dumps(card.provenance)),
    ] + score_rows(card)


def score_rows(card: GeneratorCard) -> list[tuple[str, str]]:
    """TUE: the score estimator's architecture, σ, α_s and its own training figures."""
    if card.method != "tue":
        return []
    h, m = card.hyperparameters, card.metrics.get("score", {})
    arch = h.get("score_arch", {})
    loss = (f"held-out denoising loss {m['held_out_loss']:.4f} per pixel, from {m['held_out_loss_before']:.4f} "
            f"untrained (a zero score gives 0.5), {m.get('held_out_images', '?')} images"
            if "held_out_loss" in m else "no held-out figure")
    return [("score estimator", f"{arch.get('name')} width {arch.get('width')} depth {arch.get('depth')}, "
                                f"σ {float(arch.get('sigma', 0)) * 255:g} levels, {m.get('steps', '?')} steps; {loss}"),
            ("data collapse", f"α_s {float(h.get('score_step', 0)) * 255:g} levels per noise step"
                              + (", with SEM's EOT" if h.get("tue_eot") else ""))]


def shipped_table() -> Table:
    """The shipped generators: name, file, training data, classes, input size."""
    table = Table(title="shipped generators (protect --weights NAME)")
    for col in ("name", "file", "trained on", "classes", "input"):
        table.add_column(col)
    for name, file in sorted(SHIPPED.items()):
        label = name + (" (default)" if name == DEFAULT_GENERATOR else "")
        try:
            card = read_card(shipped_path(name))
        except WeightsError as e:
            table.add_row(label, file, f"not usable: {e}", "", "")
            continue
        table.add_row(label, file, str(card.dataset.get("name", "?")), str(card.num_classes),
                      f"{card.input_size[0]}x{card.input_size[1]}")
    return table
