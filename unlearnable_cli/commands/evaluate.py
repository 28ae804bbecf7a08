"""``unlearnable eval``: options -> :class:`EvalConfig` -> :func:`run_evaluation`, then the table."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from .app import DeviceOpt, QuietOpt, app
from ..config import Attacker, ConfigError, Device, EvalConfig, RecognizerConfig, VictimRuns, from_levels, resolve_device
from .console import Command, command_errors, console, err_console, os_failure, progress_bar, stop_requests

if TYPE_CHECKING:
    from ..evaluate.scenarios import EvalReport

EVAL = EvalConfig()                       # the defaults the help names
RECOGNIZER = RecognizerConfig()


@app.command("eval", cls=Command)
def eval_cmd(
    clean: Annotated[Optional[Path], typer.Option(help="Clean training set (image-folder layout).")] = None,
    protected: Annotated[Optional[list[str]], typer.Option(metavar="[NAME=]DIR", help="Protected copy of --clean; repeat as NAME=DIR to compare several.")] = None,
    test: Annotated[Optional[Path], typer.Option(help="Clean test set (same class folders).")] = None,
    target: Annotated[Optional[Path], typer.Option(help="Personal scenario: your clean images (one folder).")] = None,
    target_protected: Annotated[Optional[Path], typer.Option(help="Personal scenario: their protected copy.")] = None,
    background: Annotated[Optional[Path], typer.Option(help="Personal scenario: everyone else's images (class folders).")] = None,
    target_holdout: Annotated[Optional[float], typer.Option(help=f"Fraction of your clean images held out for testing (default {EVAL.target_holdout:g}).")] = None,
    attacker: Annotated[Attacker, typer.Option(help="Who trains on the photos: scratch (a classifier from random weights, the default); embedding (dlib's pretrained face recognizer enrols them: 1-NN with its 0.6 threshold, and a linear classifier); finetune (the same network with a new head, fine-tuned: the head alone, and the whole network). embedding and finetune need the faces extra.")] = Attacker.SCRATCH,
    preset: Annotated[str, typer.Option(help="quick (fast CNN, CPU) or paper (ResNet-18, 100 epochs, GPU).")] = "quick",
    arch: Annotated[Optional[str], typer.Option(help="Victim architecture: convnet, resnet18, mobilenetv2 (give --width too: 16 and 8 train in reasonable time on a CPU).")] = None,
    width: Annotated[Optional[int], typer.Option(help="Victim width.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help=f"Training epochs (default {EVAL.victim.epochs}; fine-tuning {RECOGNIZER.epochs}).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help=f"Training batch size (default {EVAL.victim.batch_size}; fine-tuning {RECOGNIZER.batch_size}).")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate (SGD, one-cycle).")] = None,
    image_size: Annotated[Optional[int], typer.Option(help="Images are resized to this square size.")] = None,
    per_class: Annotated[Optional[int], typer.Option(help="Use the first N training images of each class.")] = None,
    test_per_class: Annotated[Optional[int], typer.Option(help="Use the first N test images of each class.")] = None,
    adv_radius: Annotated[Optional[list[float]], typer.Option(metavar="LEVELS", help="Adversarial training radius in levels (repeatable; 0 = standard).")] = None,
    adv_steps: Annotated[Optional[int], typer.Option(help="PGD steps of adversarial training.")] = None,
    adv_step_size: Annotated[Optional[float], typer.Option(help="PGD step size in levels (default 2.5·radius/steps).")] = None,
    defense: Annotated[Optional[list[str]], typer.Option(metavar="DEFENSE", help="Countermeasure (repeatable): none, grayscale, jpeg:Q, median:K, mean:K, gaussian:K, cutout, mixup, cutmix, ueraser-lite.")] = None,
    poison_ratio: Annotated[Optional[float], typer.Option(help=f"Fraction of training images that are protected, the rest clean (default {EVAL.poison_ratio:g}).")] = None,
    allow_missing: Annotated[bool, typer.Option(help="Evaluate matched images when the folders differ.")] = False,
    runs: Annotated[VictimRuns, typer.Option(help="Train both victims, or only the clean baseline (then --protected "
                                             "may be omitted) or only the protected ones, e.g. to reuse a baseline.")] = VictimRuns.BOTH,
    seed: Annotated[Optional[int], typer.Option(help=f"Same seed and recipe for every victim (default {EVAL.victim.seed}).")] = None,
    device: DeviceOpt = Device.AUTO,
    report: Annotated[Optional[Path], typer.Option(help="Write the full report as JSON; finished victims are kept beside it, so an interrupted run resumes when rerun.")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Plot test accuracy per epoch (needs matplotlib).")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Train fresh models on clean and on protected images and compare their test accuracy."""
    from ..config import eval_config, named_folders, victim_config
    from ..evaluate.defenses import DefenseError
    from ..evaluate.journal import journal_path
    from ..evaluate.scenarios import run_evaluation

    kept = (f"finished victims are kept in {journal_path(report)}, rerun the same command to train the rest"
            if report else "nothing was kept (give --report to make an evaluation resumable)")
    with command_errors(kept, extra=(DefenseError,)):
        victim = victim_config(preset, arch=arch, width=width, epochs=epochs, batch_size=batch_size, lr=lr,
                               image_size=image_size, adv_steps=adv_steps, seed=seed,
                               adv_step_size=None if adv_step_size is None else from_levels(adv_step_size))
        recognizer = RecognizerConfig(**{k: v for k, v in dict(epochs=epochs, batch_size=batch_size,
                                                                seed=seed).items() if v is not None})
        cfg = eval_config(victim=victim, attacker=attacker, recognizer=recognizer, clean=clean,
                          protected=named_folders(protected or []), test=test,
                          target=target, target_protected=target_protected, background=background,
                          target_holdout=target_holdout,
                          adv_radii=tuple(from_levels(r) for r in adv_radius) if adv_radius else None,
                          defenses=tuple(defense) if defense else None, poison_ratio=poison_ratio,
                          allow_missing=allow_missing, runs=runs, per_class=per_class,
                          test_per_class=test_per_class, report=report)
        check_plot(plot)
        check_attacker_options(attacker, preset, arch=arch, width=width, lr=lr, image_size=image_size, adv_steps=adv_steps, adv_step_size=adv_step_size)
        dev = resolve_device(device)
        with stop_requests(), progress_bar("epochs", quiet, elapsed=True) as progress:
            result = run_evaluation(cfg, dev, lambda label, epoch, total: progress(label, epoch, total))
    print_result(result, cfg, report, plot)


def check_attacker_options(attacker: Attacker, preset: str, **victim_only: object) -> None:
    """The from-scratch victim's options mean nothing to a pretrained recognizer: refuse them
    rather than ignore them (``--epochs`` and ``--batch-size`` apply to fine-tuning)."""
    given = [f"--{k.replace('_', '-')}" for k, v in victim_only.items() if v is not None]
    given += ["--preset"] if preset != "quick" else []
    if attacker is not Attacker.SCRATCH and given:
        raise ConfigError(f"{', '.join(given)}: options of the from-scratch victim; --attacker {attacker.value} "
                          "uses dlib's pretrained network (docs/eval.md)")


def check_plot(plot: Optional[Path]) -> None:
    """``--plot`` needs matplotlib (the ``plot`` extra): say so before any training."""
    import importlib.util
    if plot is not None and importlib.util.find_spec("matplotlib") is None:
        raise ConfigError("--plot needs matplotlib: pip install 'unlearnable[plot]'")


def print_result(result: "EvalReport", cfg: "EvalConfig", report: Optional[Path], plot: Optional[Path]) -> None:
    """The table and warnings, then the JSON report and the plot (a failed write says what is kept)."""
    from ..evaluate.journal import journal_path
    from ..evaluate.report import plot_curves, result_warnings, results_table
    from ..evaluate.scenarios import save_report

    if result.reused_runs:
        err_console.print(f"reused {result.reused_runs} finished victim(s) from {journal_path(report)}",  # type: ignore[arg-type]
                          highlight=False)
    console.print(results_table(result))
    for w in result_warnings(result):
        err_console.print(f"[yellow]warning:[/yellow] {w}", highlight=False, soft_wrap=True)
    try:
        save_report(result, cfg)
        if report:
            console.print(f"report: {report}")
        if plot:
            plot_curves(result, plot)
            console.print(f"plot: {plot}")
    except OSError as e:
        raise os_failure(e, "the results are in the table above" +
                         (f" and the finished victims in {journal_path(report)}"
                          if report and journal_path(report).exists() else ""))
