"""Command layer: thin Typer commands that build a config and call a library function.

Domain errors (bad input, bad options, unusable weights) become one red line and
exit code 1; everything else is in the library modules.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from .. import __version__
from ..config import ConfigError, Device, EvalConfig, Method, Preset, ProtectConfig, VictimRuns, levels, resolve_device, train_config
from .console import Command, Group, command_errors, console, err_console, fail, os_failure, progress_bar, stop_requests
from ..engine.budget import Budget
from ..io.images import OutputFormat
from ..models.weights import WeightsError

app = typer.Typer(add_completion=False, no_args_is_help=True, cls=Group,
                  help="Protect your own images against unauthorized use as training data.")


def version_callback(value: bool) -> None:
    if value:
        console.print(f"unlearnable {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[Optional[bool], typer.Option("--version", callback=version_callback,
                                                         is_eager=True, help="Show the version.")] = None) -> None:
    """unlearnable: small, bounded noise that makes your images less useful as training data."""


PROTECT = ProtectConfig()                 # the defaults the commands' help names
EVAL = EvalConfig()

DeviceOpt = Annotated[Device, typer.Option(help="auto = CUDA when available, else CPU.")]
QuietOpt = Annotated[bool, typer.Option(help="No progress bar.")]


@app.command(cls=Command)
def protect(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="A folder of your images (searched recursively) or one image file.")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Output folder (default: <INPUT>-protected beside the input; <INPUT>-preview with --preview).")] = None,
    weights: Annotated[Optional[str], typer.Option(metavar="NAME|FILE", help="A shipped generator's name (see `unlearnable info`) or a generator .safetensors file (default: the shipped default).")] = None,
    radius: Annotated[Optional[float], typer.Option(help=f"Largest change per pixel, in levels out of 255 (ρ_u; default {PROTECT.radius * 255:g}); larger protects more and shows more.")] = None,
    steps: Annotated[Optional[int], typer.Option(help=f"Noise optimization steps (K_u; default {PROTECT.steps}); at least 1.")] = None,
    step_size: Annotated[Optional[float], typer.Option(help="Change per step in levels (α_u; default radius/5).")] = None,
    eot_samples: Annotated[Optional[int], typer.Option(help="Random transformations averaged per step (J; default 5, 1 for EM generators).")] = None,
    random_radius: Annotated[Optional[float], typer.Option(help="Radius of the random perturbation in levels (ρ_r; default: the generator's adversarial radius ρ_a).")] = None,
    eot_grayscale: Annotated[Optional[float], typer.Option(help="Chance that each random transformation is also seen in grayscale, so the protection survives a trainer's grayscale conversion; weaker against plain training (default 0; see docs/protect.md).")] = None,
    labels: Annotated[Optional[str], typer.Option(metavar="MODE", help="folders | names | predict | CLASSNAME: which generator class each image is pushed to (default folders).")] = None,
    output_format: Annotated[Optional[OutputFormat], typer.Option("--format", help="png (default), or webp: lossless WebP, smaller; both keep the bound exact (grayscale is stored as RGB in WebP).")] = None,
    budget: Annotated[Optional[Budget], typer.Option(help="uniform (default): every pixel may change by the radius; texture: less in flat areas such as sky or skin, where a change is visible (the bound is unchanged).")] = None,
    score_step: Annotated[Optional[float], typer.Option(help="TUE generators: data-collapse step in levels (α_s; default: the generator's).")] = None,
    eot_scale: Annotated[Optional[float], typer.Option(help="Photos: smallest side of the random crops the noise must work through, as a share of the image (default: the generator's, 0.8); smaller makes the noise work at finer scales too.")] = None,
    highpass: Annotated[Optional[int], typer.Option(metavar="PX", help="Photos: keep the noise finer than PX pixels, so it cannot form visible bands or blotches on skin or sky (0 = off, the default; try 16; see docs/protect.md). The bound is unchanged.")] = None,
    preview: Annotated[Optional[int], typer.Option(metavar="N", help="Protect only N images spread over the input and write side-by-side sheets (original | protected | noise amplified) to judge visibility; nothing else is written.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help=f"Images of equal size protected together (default {PROTECT.batch_size}).")] = None,
    device: DeviceOpt = Device.AUTO,
    seed: Annotated[Optional[int], typer.Option(help="Same seed, options and device give the same bytes (default 0).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Redo outputs that already exist (needed to change the generator or settings of a folder that holds outputs).")] = False,
    keep_exif: Annotated[bool, typer.Option(help="Copy EXIF (camera, date, GPS location) into the outputs.")] = False,
    max_pixels: Annotated[Optional[int], typer.Option(help=f"Refuse images with more pixels, as possible decompression bombs (default {PROTECT.max_pixels:,}).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Name the generator class each folder was pushed towards even when there are more than 3 folders.")] = False,
    shard: Annotated[Optional[str], typer.Option(metavar="K/N", help="Do only part K of N, for schedulers that start independent processes (Slurm arrays, indexed Jobs); then a run without --shard writes the manifest. Under torchrun the processes split the work themselves (docs/distributed.md).")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Add small, bounded noise to your images so that models trained on them learn less from them."""
    from .. import distributed
    from ..config import protect_config
    from ..protect.folders import default_output_dir
    from ..protect.job import check_options, protect_folder
    from ..models.weights import load_generator_file, resolve_weights

    cfg = protect_config(radius=None if radius is None else levels(radius), steps=steps,
                         step_size=None if step_size is None else levels(step_size), eot_samples=eot_samples,
                         random_radius=None if random_radius is None else levels(random_radius),
                         eot_grayscale=eot_grayscale, labels=labels, batch_size=batch_size, seed=seed,
                         overwrite=overwrite, keep_exif=keep_exif, max_pixels=max_pixels,
                         output_format=output_format, preview=preview, budget=budget, eot_min_scale=eot_scale,
                         highpass=highpass, score_step=None if score_step is None else levels(score_step))
    output_dir = output or default_output_dir(input_path, preview=cfg.preview > 0)
    root = input_path.parent if input_path.is_file() else input_path

    def report_failure(rel: str, reason: str) -> None:
        err_console.print(f"[red]failed[/red] {root / rel}: {reason}", highlight=False, soft_wrap=True)

    kept = ("no previews were finished" if cfg.preview else
            "finished images are saved, rerun the same command to do the rest")
    part = distributed.launched()
    given = {"--steps": steps, "--step-size": step_size, "--eot-samples": eot_samples,
             "--random-radius": random_radius, "--eot-grayscale": eot_grayscale, "--eot-scale": eot_scale,
             "--score-step": score_step, "--highpass": highpass}
    with command_errors(kept, part):
        cfg.validate()
        if shard is not None:
            if part.talks:
                raise ConfigError("--shard splits a run over independent processes, torchrun over ranks; use one")
            part = distributed.parse_shard(shard)
        dev = resolve_device(device)
        distributed.start(part, dev)
        dev = distributed.local_device(dev)
        weights_path = resolve_weights(weights)
        generator = load_generator_file(weights_path, dev)
        check_options(generator.card, [k for k, v in given.items() if v is not None], weights_path)
        with stop_requests(), progress_bar("images", quiet or not part.leader) as progress:
            summary = protect_folder(input_path, output_dir, generator.model, generator.card, cfg, dev,
                                     weights_path, on_error=report_failure, shard=part, extras=generator.extras,
                                     progress=lambda phase, n, total: progress(phase, n, total))
    if not part.leader:                   # rank 0 speaks for the whole job
        return
    for w in summary.warnings:
        err_console.print(f"[yellow]warning:[/yellow] {w}", highlight=False, soft_wrap=True)
    from ..protect.summary import class_lines, plain_summary, preview_summary
    if not cfg.preview:
        for line in class_lines(summary.classes, verbose):
            console.print(line, highlight=False, soft_wrap=True)
    console.print(preview_summary(summary, cfg) if cfg.preview else plain_summary(summary, cfg),
                  highlight=False, soft_wrap=True)
    if summary.failed:
        raise fail(f"{len(summary.failed)} file(s) could not be protected (listed above"
                   f"{' and in the manifest' if summary.manifest_written else ''})")


@app.command(cls=Command)
def info(weights: Annotated[Optional[str], typer.Argument(metavar="[NAME|FILE]", help="A shipped generator's name or a generator .safetensors file (default: list the shipped generators and show the default one).")] = None,
         as_json: Annotated[bool, typer.Option("--json", help="Print the whole card as JSON.")] = False) -> None:
    """Show a generator's card (architecture, classes, data, accuracies), after checking its file."""
    import dataclasses

    from ..protect.summary import card_rows, metric_lines, shipped_table
    from ..models.weights import load_generator, resolve_weights
    try:
        path = resolve_weights(weights)
        _, card = load_generator(path)           # verifies the tensors' SHA-256, as protect does
    except WeightsError as e:
        raise fail(str(e))
    if as_json:
        console.print_json(json.dumps(dataclasses.asdict(card)))
        return
    if weights is None:
        console.print(shipped_table())
    table = Table(title=str(path), show_header=False)
    for k, v in card_rows(card):
        table.add_row(k, v)
    console.print(table)
    for line in metric_lines(card.metrics):
        console.print(f"accuracy: {line}", highlight=False, soft_wrap=True)
    console.print("[green]verified[/green]: the tensors match the SHA-256 recorded in the file", highlight=False)


@app.command("eval", cls=Command)
def eval_cmd(
    clean: Annotated[Optional[Path], typer.Option(help="Clean training set (image-folder layout).")] = None,
    protected: Annotated[Optional[list[str]], typer.Option(metavar="[NAME=]DIR", help="Protected copy of --clean; repeat as NAME=DIR to compare several.")] = None,
    test: Annotated[Optional[Path], typer.Option(help="Clean test set (same class folders).")] = None,
    target: Annotated[Optional[Path], typer.Option(help="Personal scenario: your clean images (one folder).")] = None,
    target_protected: Annotated[Optional[Path], typer.Option(help="Personal scenario: their protected copy.")] = None,
    background: Annotated[Optional[Path], typer.Option(help="Personal scenario: everyone else's images (class folders).")] = None,
    target_holdout: Annotated[Optional[float], typer.Option(help=f"Fraction of your clean images held out for testing (default {EVAL.target_holdout:g}).")] = None,
    preset: Annotated[str, typer.Option(help="quick (fast CNN, CPU) or paper (ResNet-18, 100 epochs, GPU).")] = "quick",
    arch: Annotated[Optional[str], typer.Option(help="Victim architecture: convnet, resnet18, mobilenetv2 (give --width too: 16 and 8 train in reasonable time on a CPU).")] = None,
    width: Annotated[Optional[int], typer.Option(help="Victim width.")] = None,
    epochs: Annotated[Optional[int], typer.Option(help="Training epochs.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Training batch size.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate (SGD, one-cycle).")] = None,
    image_size: Annotated[Optional[int], typer.Option(help="Images are resized to this square size.")] = None,
    per_class: Annotated[Optional[int], typer.Option(help="Use the first N training images of each class.")] = None,
    test_per_class: Annotated[Optional[int], typer.Option(help="Use the first N test images of each class.")] = None,
    adv_radius: Annotated[Optional[list[float]], typer.Option(metavar="LEVELS", help="Adversarial training radius in levels (repeatable; 0 = standard).")] = None,
    adv_steps: Annotated[Optional[int], typer.Option(help="PGD steps of adversarial training.")] = None,
    adv_step_size: Annotated[Optional[float], typer.Option(help="PGD step size in levels (default 2.5·radius/steps).")] = None,
    defense: Annotated[Optional[list[str]], typer.Option(metavar="DEFENSE", help="Countermeasure (repeatable): none, grayscale, jpeg:Q, median:K, mean:K, gaussian:K, cutout, mixup, cutmix, ueraser-lite.")] = None,
    poison_ratio: Annotated[Optional[float], typer.Option(help="Fraction of training images that are protected, the rest clean (default 1).")] = None,
    allow_missing: Annotated[bool, typer.Option(help="Evaluate matched images when the folders differ.")] = False,
    runs: Annotated[VictimRuns, typer.Option(help="Train both victims, or only the clean baseline (then --protected "
                                             "may be omitted) or only the protected ones, e.g. to reuse a baseline.")] = VictimRuns.BOTH,
    seed: Annotated[Optional[int], typer.Option(help="Same seed and recipe for every victim (default 0).")] = None,
    device: DeviceOpt = Device.AUTO,
    report: Annotated[Optional[Path], typer.Option(help="Write the full report as JSON; finished victims are kept beside it, so an interrupted run resumes when rerun.")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Plot test accuracy per epoch (needs matplotlib).")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Train fresh models on clean and on protected images and compare their test accuracy."""
    from ..config import eval_config, named_folders, victim_config
    from ..evaluate.defenses import DefenseError
    from ..evaluate.scenarios import run_evaluation, save_report
    from ..evaluate.journal import journal_path
    from ..evaluate.report import plot_curves, result_warnings, results_table

    kept = (f"finished victims are kept in {journal_path(report)}, rerun the same command to train the rest"
            if report else "nothing was kept (give --report to make an evaluation resumable)")
    with command_errors(kept, extra=(DefenseError,)):
        victim = victim_config(preset, arch=arch, width=width, epochs=epochs, batch_size=batch_size, lr=lr,
                               image_size=image_size, adv_steps=adv_steps, seed=seed,
                               adv_step_size=None if adv_step_size is None else levels(adv_step_size))
        cfg = eval_config(victim=victim, clean=clean, protected=named_folders(protected or []), test=test,
                          target=target, target_protected=target_protected, background=background,
                          target_holdout=target_holdout,
                          adv_radii=tuple(levels(r) for r in adv_radius) if adv_radius else None,
                          defenses=tuple(defense) if defense else None, poison_ratio=poison_ratio,
                          allow_missing=allow_missing, runs=runs, per_class=per_class,
                          test_per_class=test_per_class, report=report)
        if plot is not None:
            import importlib.util
            if importlib.util.find_spec("matplotlib") is None:
                raise ConfigError("--plot needs matplotlib: pip install 'unlearnable[plot]'")
        dev = resolve_device(device)
        with stop_requests(), progress_bar("epochs", quiet, elapsed=True) as progress:
            result = run_evaluation(cfg, dev, lambda label, epoch, total: progress(label, epoch, total))
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


@app.command("train-generator", cls=Command)
def train_generator_cmd(
    data_dir: Annotated[Path, typer.Argument(help="Image-folder data set: one subfolder per class.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Weights file to write (.safetensors).")],
    method: Annotated[Method, typer.Option(help="sem (stable EM), rem (robust EM), em (error-minimizing) or tue (transferable: adds a score estimator's data-collapse term).")] = Method.SEM,
    preset: Annotated[Preset, typer.Option(help="paper = official SEM CIFAR-10 recipe; cpu = measured 2-core budget.")] = Preset.CPU,
    arch: Annotated[Optional[str], typer.Option(help="Architecture from the model registry (resnet18, convnet, mobilenetv2).")] = None,
    width: Annotated[Optional[int], typer.Option(help="Base width of the architecture (64 = paper's ResNet-18).")] = None,
    stem_stride: Annotated[Optional[int], typer.Option(help="2: ResNet-18's first convolution halves the input, so a 64-px generator costs what a 32-px one does (default 1, the CIFAR stem).")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Optimizer steps (M).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Minibatch size.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="SGD learning rate (×0.1 at 40% and 80% of M).")] = None,
    radius: Annotated[Optional[float], typer.Option(help="Noise bound in levels out of 255 (ρ_u).")] = None,
    step_size: Annotated[Optional[float], typer.Option(help="Noise step in levels (α_u).")] = None,
    noise_steps: Annotated[Optional[int], typer.Option(help="Noise PGD steps (K_u).")] = None,
    eot_samples: Annotated[Optional[int], typer.Option(help="Random transformations and perturbations per noise step (J).")] = None,
    adv_radius: Annotated[Optional[float], typer.Option(help="Adversarial-training radius in levels (ρ_a; 0 for EM).")] = None,
    adv_step_size: Annotated[Optional[float], typer.Option(help="Adversarial PGD step in levels (α_a).")] = None,
    adv_steps: Annotated[Optional[int], typer.Option(help="Adversarial PGD steps (K_a).")] = None,
    random_radius: Annotated[Optional[float], typer.Option(help="Random perturbation radius in levels (ρ_r; default ρ_a).")] = None,
    image_size: Annotated[Optional[int], typer.Option(help="Square input size of the generator.")] = None,
    val_fraction: Annotated[Optional[float], typer.Option(help="Held-out fraction for reporting.")] = None,
    per_class: Annotated[Optional[int], typer.Option(help="Use only the first N images of each class.")] = None,
    checkpoint_every: Annotated[Optional[int], typer.Option(help="Steps between checkpoints.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for every random draw (default 0).")] = None,
    init: Annotated[Optional[Path], typer.Option(help="Start from this generator's weights (fine-tune; same arch, width and classes).")] = None,
    class_wise: Annotated[bool, typer.Option(help="EM only: one noise pattern per class instead of one per image (the cheapest protection; protect adds the pattern, no optimization).")] = False,
    highpass: Annotated[Optional[int], typer.Option(metavar="PX", help="Keep the training noise finer than PX generator pixels, so the generator learns to rely on fine noise (0 = off, the default); protect such a generator with --highpass at the photo's scale (docs/train-generator.md).")] = None,
    score_step: Annotated[Optional[float], typer.Option(help="TUE: data-collapse step in levels (α_s; default 0.8).")] = None,
    score_sigma: Annotated[Optional[float], typer.Option(help="TUE: noise level of the score estimator's denoising score matching, in levels (σ; default 12.75).")] = None,
    score_steps: Annotated[Optional[int], typer.Option(help="TUE: Adam steps training the score estimator (default 2000).")] = None,
    score_model: Annotated[Optional[Path], typer.Option(help="TUE: reuse this score estimator (a .score.safetensors file or a TUE generator) instead of training one.")] = None,
    tue_eot: Annotated[bool, typer.Option(help="TUE: also average the loss term over SEM's random transforms and uniform perturbation (off: as the TUE paper).")] = False,
    device: DeviceOpt = Device.AUTO,
    dataset_name: Annotated[Optional[str], typer.Option(help="Name of the training data for the card (default: parent/folder of DATA_DIR, e.g. cifar10/train).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from OUTPUT's checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing OUTPUT, or discard its unfinished checkpoint and start over.")] = False,
    export_checkpoint: Annotated[bool, typer.Option(help="Write OUTPUT from its checkpoint now, without training further (same options as the run).")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Train a noise generator (surrogate classifier) on an image-folder data set."""
    from .. import distributed
    from ..train import train_generator

    def lv(v: Optional[float]) -> Optional[float]:
        return None if v is None else levels(v)

    part = distributed.launched()
    with command_errors("the last checkpoint is kept, rerun with --resume to continue", part):
        cfg = train_config(preset, method=method, arch=arch, width=width, stem_stride=stem_stride, steps=steps,
                           batch_size=batch_size, lr=lr, radius=lv(radius), step_size=lv(step_size),
                           noise_steps=noise_steps, eot_samples=eot_samples,
                           adv_radius=lv(adv_radius), adv_step_size=lv(adv_step_size),
                           adv_steps=adv_steps, random_radius=lv(random_radius),
                           image_size=image_size, val_fraction=val_fraction, per_class=per_class,
                           checkpoint_every=checkpoint_every, seed=seed,
                           init=None if init is None else str(init), class_wise=class_wise or None,
                           highpass=highpass,
                           score_step=lv(score_step), score_sigma=lv(score_sigma), score_steps=score_steps,
                           score_model=None if score_model is None else str(score_model), tue_eot=tue_eot or None)
        dev = resolve_device(device)
        distributed.start(part, dev)
        with stop_requests(graceful=True) as stop, \
                progress_bar("", quiet or not part.leader, status=True, transient=False) as progress:
            card = train_generator(data_dir, output, cfg, distributed.local_device(dev), resume=resume,
                                   export_only=export_checkpoint, overwrite=overwrite, dataset_name=dataset_name,
                                   shard=part, progress=progress, should_stop=stop)
    if not part.leader:                   # rank 0 wrote the generator and speaks for the job
        return
    from ..protect.summary import metric_lines
    console.print(f"[green]saved[/green] {output}  ({card.provenance['wall_time_s']} s)")
    for line in metric_lines(card.metrics):
        console.print("  " + line, highlight=False)
