"""``unlearnable protect``: options -> :class:`ProtectConfig` -> :func:`protect_folder`."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import DeviceOpt, QuietOpt, app
from ..config import EOT_SAMPLES, ConfigError, Device, ProtectConfig, TransformSpec, resolve_device
from ..config import Budget
from ..config.protect import DEFAULT_STRENGTH, STRENGTHS, Against, CloakConfig, CloakObjective, Color, Strength
from ..config import OutputFormat
from ..protect.job import ProtectSummary
from .console import Command, command_errors, console, err_console, fail, progress_bar, stop_requests
from .options import config_fields

PROTECT = ProtectConfig()                 # the defaults the help names
STRENGTH_HELP = ("How strongly to protect, against how visible (default " + DEFAULT_STRENGTH.value + "); measured: "
                 + "; ".join(f"{s.value}: {level.measured}" for s, level in STRENGTHS.items())
                 + ". --budget, --highpass and --color given beside it win (docs/protect.md).")
#: Options that shape the noise optimization; a method may refuse the ones it does not read.
OPTIMIZATION = ("steps", "step_size", "eot_samples", "random_radius", "eot_grayscale", "eot_scale", "score_step",
                "highpass")


@app.command(cls=Command)
def protect(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="A folder of your images (searched recursively) or one image file.")],
    output: Annotated[Optional[Path], typer.Option("-o", "--output", help="Output folder (default: <INPUT>-protected beside the input; <INPUT>-preview with --preview).")] = None,
    weights: Annotated[Optional[str], typer.Option(metavar="NAME|FILE", help="A shipped generator's name (see `unlearnable info`) or a generator .safetensors file (default: the shipped default).")] = None,
    radius: Annotated[Optional[int], typer.Option(help=f"Largest change per pixel, in whole levels out of 255 (ρ_u; default {PROTECT.radius_levels}); larger protects more and shows more.")] = None,
    steps: Annotated[Optional[int], typer.Option(help=f"Noise optimization steps (K_u; default {PROTECT.steps}); at least 1.")] = None,
    step_size: Annotated[Optional[float], typer.Option(help="Change per step in levels (α_u; default radius/5).")] = None,
    eot_samples: Annotated[Optional[int], typer.Option(help=f"Random transformations averaged per step (J; default {EOT_SAMPLES}, 1 for EM generators).")] = None,
    random_radius: Annotated[Optional[float], typer.Option(help="Radius of the random perturbation in levels (ρ_r; default: the generator's adversarial radius ρ_a).")] = None,
    eot_grayscale: Annotated[Optional[float], typer.Option(help=f"Chance that each random transformation is also seen in grayscale, so the protection survives a trainer's grayscale conversion; weaker against plain training (default {PROTECT.eot_grayscale:g}; see docs/protect.md).")] = None,
    labels: Annotated[Optional[str], typer.Option(metavar="MODE", help="folders | names | predict | CLASSNAME: which generator class each image is pushed to (default folders).")] = None,
    output_format: Annotated[Optional[OutputFormat], typer.Option("--format", help="png (default), or webp: lossless WebP, smaller; both keep the bound exact (grayscale is stored as RGB in WebP).")] = None,
    strength: Annotated[Optional[Strength], typer.Option(help=STRENGTH_HELP)] = None,
    budget: Annotated[Optional[Budget], typer.Option(help="uniform (the default strength's): every pixel may change by the radius; texture: less in flat areas such as sky or skin, where a change is visible (the bound is unchanged).")] = None,
    score_step: Annotated[Optional[float], typer.Option(help="TUE generators: data-collapse step in levels (α_s; default: the generator's).")] = None,
    eot_scale: Annotated[Optional[float], typer.Option(help=f"Photos: smallest side of the random crops the noise must work through, as a share of the image (default: the generator's, {TransformSpec().min_scale:g}); smaller makes the noise work at finer scales too.")] = None,
    highpass: Annotated[Optional[int], typer.Option(metavar="PX", help="Photos: keep the noise finer than PX pixels, so it cannot form visible bands or blotches on skin or sky (0 = off, the default strength's; try 16; see docs/protect.md). The bound is unchanged.")] = None,
    color: Annotated[Optional[Color], typer.Option(help="rgb (default): R, G and B each get their own change; luma: the same change on all three, so the noise alters brightness only: no coloured bands, and a trainer's grayscale conversion cannot remove it (any method). Measured: it costs the faces generator most of its protection (0.81 of clean against 0.37); on CIFAR-10 with --method pil it survives grayscale training (0.16); docs/results.md.")] = None,
    against: Annotated[Optional[Against], typer.Option(help="training (default): noise against models trained on the photos from scratch; recognizers: a cloak against pretrained face recognizers that enrol them (dlib's, as in face_recognition; needs the faces extra; one target per folder, so put one person per folder); both: the noise, then the cloak, within the same bound (docs/cloak.md).")] = None,
    cloak_objective: Annotated[Optional[CloakObjective], typer.Option(help="With --against recognizers or both: target (default): move each face's descriptor towards another identity's (Fawkes' choice); away: away from the photo's own; both: the two together (measured: docs/results.md).")] = None,
    preview: Annotated[Optional[int], typer.Option(metavar="N", help="Protect only N images spread over the input and write side-by-side sheets (original | protected | noise amplified) to judge visibility; nothing else is written.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help=f"Images of equal size protected together (default {PROTECT.batch_size}).")] = None,
    device: DeviceOpt = Device.AUTO,
    seed: Annotated[Optional[int], typer.Option(help=f"Same seed, options and device give the same bytes (default {PROTECT.seed}).")] = None,
    overwrite: Annotated[bool, typer.Option(help="Redo outputs that already exist (needed to change the generator or settings of a folder that holds outputs).")] = False,
    keep_exif: Annotated[bool, typer.Option(help="Copy EXIF (camera, date, GPS location) into the outputs.")] = False,
    max_pixels: Annotated[Optional[int], typer.Option(help=f"Refuse images with more pixels, as possible decompression bombs (default {PROTECT.max_pixels:,}).")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Name the generator class each folder was pushed towards even when there are more than 3 folders.")] = False,
    shard_spec: Annotated[Optional[str], typer.Option("--shard", metavar="K/N", help="Do only part K of N, for schedulers that start independent processes (Slurm arrays, indexed Jobs); then a run without --shard writes the manifest. Under torchrun the processes split the work themselves (docs/distributed.md).")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Add small, bounded noise to your images so that models trained on them learn less from them."""
    from .. import distributed
    from ..protect.folders import default_output_dir
    from ..protect.job import check_options, protect_folder
    from ..models.weights import load_generator_file, resolve_weights
    given = [f"--{k.replace('_', '-')}" for k, v in locals().items() if v is not None and k in OPTIMIZATION]
    cfg = build_config(dict(locals()))
    output_dir = output or default_output_dir(input_path, preview=cfg.preview > 0)
    report_failure = functools.partial(print_failure, input_path.parent if input_path.is_file() else input_path)
    kept = "no previews were finished" if cfg.preview else "finished images are saved, rerun the same command to do the rest"
    shard = distributed.launched()
    with command_errors(kept, shard):
        cfg.validate()
        if shard_spec is not None:
            if shard.torchrun:
                raise ConfigError("--shard splits a run over independent processes, torchrun over ranks; use one")
            shard = distributed.parse_shard(shard_spec)
        dev = resolve_device(device)
        distributed.start(shard, dev)
        dev = distributed.local_device(dev)
        weights_path = resolve_weights(weights)
        generator = load_generator_file(weights_path, dev)
        check_options(generator.card, given, weights_path)
        with stop_requests(), progress_bar("images", quiet or not shard.leader) as progress:
            summary = protect_folder(input_path, output_dir, generator.model, generator.card, cfg, dev,
                                     weights_path, on_error=report_failure, shard=shard, extras=generator.extras,
                                     progress=lambda phase, n, total: progress(phase, n, total))
    if shard.leader:                       # rank 0 speaks for the whole job
        print_summary(summary, cfg, verbose)


def build_config(params: dict[str, object]) -> ProtectConfig:
    """The command's parameters as a :class:`ProtectConfig` (levels to [0, 1], the cloak's objective nested)."""
    from ..config import protect_config
    objective = params.get("cloak_objective")
    return protect_config(**config_fields(params, ProtectConfig, {"eot_scale": "eot_min_scale", "radius": "radius_levels"}),
                          cloak=None if objective is None else CloakConfig(objective=objective))  # type: ignore[arg-type]


def print_failure(root: Path, rel: str, reason: str) -> None:
    """One red line for a file that could not be protected."""
    err_console.print(f"[red]failed[/red] {root / rel}: {reason}", highlight=False, soft_wrap=True)


def print_summary(summary: "ProtectSummary", cfg: "ProtectConfig", verbose: bool) -> None:
    """Warnings, each folder's class, the plain-words summary; exit 1 if a file failed."""
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
