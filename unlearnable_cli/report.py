"""Presenting evaluation results: a Rich table, the JSON report and accuracy curves."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from rich.table import Table

from .atomic import atomic_path
from .evaluate import EvalReport, Run


def _by_condition(report: EvalReport) -> dict[tuple[float, str], list[Run]]:
    groups: dict[tuple[float, str], list[Run]] = defaultdict(list)
    for run in report.runs:
        groups[(run.adv_radius, run.defense)].append(run)
    return groups


def results_table(report: EvalReport) -> Table:
    """One row per condition and protected copy: clean vs protected final/best accuracy and their ratio."""
    personal = report.settings.get("scenario") == "personal-folder"
    metric = "target recognition %" if personal else "test accuracy %"
    table = Table(title=f"eval: {metric}, final / best epoch; ratio = protected / clean, final")
    for col in ("adv", "defense", "copy", "clean", "protected", "ratio"):
        table.add_column(col)
    for (radius, defense), runs in _by_condition(report).items():
        clean = next((r for r in runs if r.data == "clean"), None)
        clean_cell = f"{clean.final_acc:.1f} / {clean.best_acc:.1f}" if clean else "—"
        protected = [r for r in runs if r.data == "protected"]
        for run in protected:
            ratio = f"{run.final_acc / clean.final_acc:.2f}" if clean and clean.final_acc else "—"
            table.add_row(f"{radius:g}/255", defense, run.name, clean_cell,
                          f"{run.final_acc:.1f} / {run.best_acc:.1f}", ratio)
        if not protected:
            table.add_row(f"{radius:g}/255", defense, "—", clean_cell, "—", "—")
    for name, q in report.imperceptibility.items():
        table.caption = (table.caption or "") + (
            f"{name}: L∞ max {q['linf_max']} levels, PSNR mean {q['psnr_mean']:.2f} dB (min {q['psnr_min']:.2f}), "
            f"SSIM mean {q['ssim_mean']:.4f} (min {q['ssim_min']:.4f})  ")
    return table


def write_report(report: EvalReport, path: Path) -> None:
    """Write the JSON report atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(report.to_dict(), indent=1))


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
