"""``unlearnable train-generator``: options -> :class:`TrainConfig` -> :func:`train_generator`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .app import DeviceOpt, QuietOpt, app
from ..config import Device, Method, Preset, TrainConfig, resolve_device, train_config
from .console import Command, command_errors, console, progress_bar, stop_requests
from .options import config_fields

TRAIN = TrainConfig()                     # the defaults the help names


@app.command("train-generator", cls=Command)
def train_generator_cmd(
    data_dir: Annotated[Path, typer.Argument(help="Image-folder data set: one subfolder per class.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Weights file to write (.safetensors).")],
    method: Annotated[Method, typer.Option(help="sem (stable EM), rem (robust EM), em (error-minimizing), tue (transferable: adds a score estimator's data-collapse term) or pil (a linear surrogate: minutes on a CPU).")] = Method.SEM,
    preset: Annotated[Preset, typer.Option(help="paper = official SEM CIFAR-10 recipe; cpu = measured 2-core budget.")] = Preset.CPU,
    arch: Annotated[Optional[str], typer.Option(help="Architecture from the model registry (resnet18, convnet, mobilenetv2; linear for --method pil, its default).")] = None,
    width: Annotated[Optional[int], typer.Option(help="Base width of the architecture (64 = paper's ResNet-18).")] = None,
    stem_stride: Annotated[Optional[int], typer.Option(help=f"2: ResNet-18's first convolution halves the input, so a 64-px generator costs what a 32-px one does (default {TRAIN.stem_stride}, the CIFAR stem).")] = None,
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
    seed: Annotated[Optional[int], typer.Option(help=f"Seed for every random draw (default {TRAIN.seed}).")] = None,
    init: Annotated[Optional[Path], typer.Option(help="Start from this generator's weights (fine-tune; same arch, width and classes).")] = None,
    class_wise: Annotated[bool, typer.Option(help="EM only: one noise pattern per class instead of one per image (the cheapest protection; protect adds the pattern, no optimization).")] = False,
    highpass: Annotated[Optional[int], typer.Option(metavar="PX", help="Keep the training noise finer than PX generator pixels, so the generator learns to rely on fine noise (0 = off, the default); protect such a generator with --highpass at the photo's scale (docs/train-generator.md).")] = None,
    score_step: Annotated[Optional[float], typer.Option(help=f"TUE: data-collapse step in levels (α_s; default {TRAIN.score_step * 255:g}).")] = None,
    score_sigma: Annotated[Optional[float], typer.Option(help=f"TUE: noise level of the score estimator's denoising score matching, in levels (σ; default {TRAIN.score_sigma * 255:g}).")] = None,
    score_steps: Annotated[Optional[int], typer.Option(help=f"TUE: Adam steps training the score estimator (default {TRAIN.score_steps}).")] = None,
    score_model: Annotated[Optional[Path], typer.Option(help="TUE: reuse this score estimator (a .score.safetensors file or a TUE generator) instead of training one.")] = None,
    pil_lambda: Annotated[Optional[float], typer.Option(help=f"PIL: weight λ of the linear-shortcut term against the no-information term (default {TRAIN.pil_lambda:g}, the paper's).")] = None,
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

    options, shard = config_fields(dict(locals()), TrainConfig), distributed.launched()
    with command_errors("the last checkpoint is kept, rerun with --resume to continue", shard):
        cfg = train_config(preset, **options)
        dev = resolve_device(device)
        distributed.start(shard, dev)
        with stop_requests(graceful=True) as stop, \
                progress_bar("", quiet or not shard.leader, status=True, transient=False) as progress:
            card = train_generator(data_dir, output, cfg, distributed.local_device(dev), resume=resume,
                                   export_only=export_checkpoint, overwrite=overwrite, dataset_name=dataset_name,
                                   shard=shard, progress=progress, should_stop=stop)
    if not shard.leader:                   # rank 0 wrote the generator and speaks for the job
        return
    from ..protect.summary import metric_lines
    console.print(f"[green]saved[/green] {output}  ({card.provenance['wall_time_s']} s)")
    for line in metric_lines(card.metrics, card.method):
        console.print("  " + line, highlight=False)
