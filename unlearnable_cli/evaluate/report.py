"""Presenting evaluation results: a Rich table, warnings in plain words, accuracy curves
(the JSON report is :meth:`EvalReport.write`)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from rich.table import Table

from ..io.atomic import atomic_path
from .scenarios import EvalReport, Run
from ..metrics import ratio_interval, wilson_interval


def _by_condition(report: EvalReport) -> dict[tuple[float, str], list[Run]]:
    """Runs by (adversarial radius in levels, defense, attacker), the attacker named in the
    defense's label when it is a recognizer."""
    groups: dict[tuple[float, str], list[Run]] = defaultdict(list)
    for run in report.runs:
        label = run.defense if run.attacker == "scratch" else f"{run.defense}, {run.attacker}"
        groups[(run.adv_levels, label)].append(run)
    return groups


def evaluated_images(report: EvalReport) -> int:
    """How many images each accuracy in the report is measured on."""
    key = "target_heldout_images" if report.settings.get("scenario") == "personal-folder" else "test_images"
    return int(report.settings.get(key, 0))  # type: ignore[call-overload]


def interval(acc_percent: float, n: int) -> tuple[float, float]:
    """95% interval (percent) of an accuracy measured on ``n`` images."""
    lo, hi = wilson_interval(acc_percent / 100 * n, n)
    return 100 * lo, 100 * hi


def _cell(run: Run, n: int) -> str:
    lo, hi = interval(run.final_acc, n)
    return f"{run.final_acc:.1f} [{lo:.0f}–{hi:.0f}] / {run.best_acc:.1f}"


def ratio_cell(protected_percent: float, clean_percent: float, n: int) -> str:
    """``protected / clean`` with its 95% interval (``metrics.ratio_interval``), or ``—`` when
    the clean victim recognized nothing."""
    if not clean_percent:
        return "—"
    ratio = protected_percent / clean_percent
    bounds = ratio_interval(protected_percent / 100 * n, n, clean_percent / 100 * n, n)
    return f"{ratio:.2f}" if bounds is None else f"{ratio:.2f} [{bounds[0]:.2f}–{bounds[1]:.2f}]"


def results_table(report: EvalReport) -> Table:
    """One row per condition and protected copy: clean vs protected final accuracy with its
    95% interval, best epoch, and the ratio of the final accuracies with its 95% interval."""
    personal = report.settings.get("scenario") == "personal-folder"
    metric = "target recognition %" if personal else "test accuracy %"
    n = evaluated_images(report)
    table = Table(title=f"eval: {metric} on {n} images, final [95% interval] / best epoch; "
                        "ratio = protected / clean, final [95% interval]")
    recognizers = any(r.attacker != "scratch" for r in report.runs)
    for col in ("adv", "defense, attacker" if recognizers else "defense", "copy", "clean", "protected", "ratio"):
        table.add_column(col)
    for (radius, defense), runs in _by_condition(report).items():
        clean = next((r for r in runs if r.data == "clean"), None)
        clean_cell = _cell(clean, n) if clean else "—"
        protected = [r for r in runs if r.data == "protected"]
        for run in protected:
            ratio = ratio_cell(run.final_acc, clean.final_acc, n) if clean else "—"
            table.add_row(f"{radius:g}/255", defense, run.name, clean_cell, _cell(run, n), ratio)
        if not protected:
            table.add_row(f"{radius:g}/255", defense, "—", clean_cell, "—", "—")
    if personal:
        for run in (r for r in report.runs if "false_alarm_acc" in r.extra):
            others, alarms = (float(run.extra[k]) for k in ("background_acc", "false_alarm_acc"))  # type: ignore[arg-type]
            table.caption = (table.caption or "") + (
                f"adv {run.adv_levels:g}/255, {run.defense}"
                f"{'' if run.attacker == 'scratch' else ', ' + run.attacker}, {run.name}: "
                f"accuracy on everyone else {others:.1f}%, "
                f"calls them you {alarms:.1f}%  ")
    for name, q in report.imperceptibility.items():
        table.caption = (table.caption or "") + (
            f"{name}: L∞ max {q['linf_max']} levels, PSNR mean {q['psnr_mean']:.2f} dB (min {q['psnr_min']:.2f}), "
            f"SSIM mean {q['ssim_mean']:.4f} (min {q['ssim_min']:.4f})  ")
    return table


def result_warnings(report: EvalReport) -> list[str]:
    """Plain-words warnings where the figures cannot carry a conclusion.

    A clean-trained victim whose accuracy interval reaches chance did not learn, so no
    ratio against it means anything (below twice chance it barely learnt); a protected victim whose interval overlaps the
    clean one's is not shown to differ from it on this many images.
    """
    n = evaluated_images(report)
    classes = len(report.settings.get("classes") or []) or int(report.settings.get("background_classes", 0)) + 1  # type: ignore[arg-type, call-overload]
    chance = 100 / max(1, classes)
    lines = []
    for (radius, defense), runs in _by_condition(report).items():
        where = f"adv {radius:g}/255, {defense}"
        clean = next((r for r in runs if r.data == "clean"), None)
        if clean is None:
            continue
        lo, hi = interval(clean.final_acc, n)
        if lo <= chance:
            lines.append(f"{where}: the clean-trained victim did not learn ({clean.final_acc:.1f}%, chance is "
                         f"{chance:.1f}%): the results are meaningless; train longer or on more images")
            continue
        if clean.final_acc < 2 * chance:
            lines.append(f"{where}: the clean-trained victim barely learnt ({clean.final_acc:.1f}%, chance is "
                         f"{chance:.1f}%): a ratio against it says little; train longer or on more images")
        alarm = float(clean.extra.get("false_alarm_acc", -1.0))  # type: ignore[arg-type]
        if lo <= alarm:
            lines.append(f"{where}: the clean-trained victim recognizes you in {clean.final_acc:.1f}% "
                         f"[{lo:.0f}–{hi:.0f}] of your held-out images but also calls {alarm:.1f}% "
                         "of everyone else's held-out images you: it does not tell you apart, so the "
                         "comparison means little; train longer or on more background images")
        for run in (r for r in runs if r.data == "protected"):
            plo, phi = interval(run.final_acc, n)
            if plo <= hi and lo <= phi:
                lines.append(f"{where}, {run.name}: {run.final_acc:.1f}% [{plo:.0f}–{phi:.0f}] vs clean "
                             f"{clean.final_acc:.1f}% [{lo:.0f}–{hi:.0f}]: the 95% intervals on {n} images "
                             "overlap, so this does not show a difference; evaluate on more images")
    return lines


def plot_curves(report: EvalReport, path: Path) -> None:
    """Test accuracy per epoch, clean vs protected, one panel per condition."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _by_condition(report)
    fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 3.6), squeeze=False)
    for ax, ((radius, defense), runs) in zip(axes[0], groups.items()):
        for run in runs:
            epochs = range(1, len(run.acc_per_epoch) + 1)
            ax.plot(epochs, run.acc_per_epoch, label=run.name, linestyle="-" if run.data == "clean" else "--")
        ax.set_title(f"adv {radius:g}/255, {defense}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("accuracy %")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
