"""The training loop: steps of the run's method until M steps, with checkpoints and a log.

The loop knows nothing of methods: it asks the method for one step (or round) at a
time (:meth:`~unlearnable_cli.methods.base.UnlearnableMethod.train_step`), logs and
checkpoints, and stops between steps when ``should_stop()`` says a stop was requested
(Ctrl-C or SIGTERM, caught by the command layer), after saving a checkpoint.  Every
random draw of step s comes from (seed, s) and a checkpoint holds the model, the
optimizer, the method's state and the step, so ``--resume`` reproduces an
uninterrupted run.  Progress goes to ``progress(phase, done, total, status)``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import torch

from .. import distributed
from ..config import ConfigError, Interrupted, TrainConfig
from ..io.datasets import load_image_folder
from ..distributed import SINGLE, Shard
from ..models.weights import GeneratorCard
from . import checkpoints
from .card import write_generator
from .checkpoints import RunPaths, check_previous_run, default_dataset_name
from .run import TrainingRun, lr_at

#: ``progress(phase, done, total, status)``: phase is ``"score estimator"`` or ``"train <method>"``.
Progress = Callable[[str, int, int, str], None]
#: ``should_stop()``: the number of the signal that asked to stop, 0 while none did.
StopCheck = Callable[[], int]


def save_checkpoint(run: TrainingRun) -> None:
    if run.shard.leader:
        checkpoints.save(run.paths.checkpoint, run.model, run.opt, run.method.checkpoint_tensors(),
                         step=run.step, elapsed=run.elapsed,
                         fingerprint=checkpoints.fingerprint(run.cfg, run.dataset_digest))


def load_checkpoint(run: TrainingRun, truncate_log: bool = True) -> None:
    state = checkpoints.load(run.paths.checkpoint, run.model, run.opt,
                             checkpoints.fingerprint(run.cfg, run.dataset_digest))
    run.method.load_checkpoint_tensors(state.extra)
    run.step, run.elapsed = state.step, state.elapsed
    if truncate_log and run.shard.leader:
        checkpoints.truncate_log(run.paths.log, run.step)


def log(run: TrainingRun, record: dict[str, object]) -> None:
    if run.shard.leader:
        checkpoints.append_log(run.paths.log, record)


def status(record: dict[str, object]) -> str:
    """The progress line of a step's log record: its loss and its training accuracy."""
    acc = record.get("acc", record.get("adv_acc_defended", 0.0))
    return f"loss {record['loss']:.3f} acc {acc:.1%}"


def train_steps(run: TrainingRun, progress: Progress, should_stop: StopCheck) -> None:
    """The method's first phase, then its steps to M (or its own stop), checkpointed."""
    cfg, method = run.cfg, run.method
    method.prepare(run, lambda n, loss: progress("score estimator", n, cfg.score_steps, f"loss {loss:.4f}"),
                   should_stop)
    if should_stop():
        raise Interrupted("while training the score estimator (nothing of it was kept); "
                          "rerun with --resume to start it again", should_stop())
    phase = f"train {cfg.method.value}"
    progress(phase, run.step, cfg.steps, "")
    while run.step < cfg.steps and not method.finished(run):
        start = time.perf_counter()
        record = method.train_step(run)
        run.elapsed += time.perf_counter() - start
        record.update(lr=lr_at(cfg, run.step - 1), elapsed=round(run.elapsed, 2))
        if method.every_step_recorded or run.step % cfg.log_every == 0 or run.step == cfg.steps:
            log(run, record)
        progress(phase, run.step, cfg.steps, status(record))
        if method.every_step_recorded or run.step % cfg.checkpoint_every == 0:
            save_checkpoint(run)
        stop = distributed.any_rank(should_stop()) if run.shard.torchrun else should_stop()
        if stop:                               # every rank stops at the same step when any was asked to
            save_checkpoint(run)
            raise Interrupted(f"at step {run.step}; checkpoint saved to {run.paths.checkpoint}; "
                              "rerun with --resume to continue", stop)
    save_checkpoint(run)


def run_training(run: TrainingRun, resume: bool, export_only: bool, progress: Progress,
                 should_stop: StopCheck) -> GeneratorCard:
    """Train to M steps (continuing from the checkpoint with ``resume``) and save; with
    ``export_only`` write weights from the checkpoint as it is (``steps_done`` says how far)."""
    if export_only:
        if not run.paths.checkpoint.exists():
            raise ConfigError(f"{run.paths.checkpoint}: no checkpoint to export")
        load_checkpoint(run, truncate_log=False)
        return write_generator(run)
    if resume and run.paths.checkpoint.exists():
        load_checkpoint(run)
    elif run.paths.log.exists() and run.shard.leader:
        run.paths.log.unlink()
    train_steps(run, progress, should_stop)
    if not run.shard.leader:                   # rank 0 measures and writes the generator
        return run.card_skeleton()
    card = write_generator(run)
    log(run, {"step": run.step, "final": card.metrics, "wall_time_s": card.provenance["wall_time_s"]})
    return card


def check_output(output: Path) -> RunPaths:
    """The run's files beside ``output``; :class:`ConfigError` if it cannot be written there."""
    if output.suffix != ".safetensors":
        raise ConfigError(f"{output}: the output must end in .safetensors")
    if output.is_dir():
        raise ConfigError(f"{output}: is a directory")
    parent = output.parent if str(output.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{output}: cannot create its folder ({e.strerror or e})") from e
    if not os.access(parent, os.W_OK):
        raise ConfigError(f"{output}: folder {parent} is not writable")
    return RunPaths(output)


def train_generator(data_dir: Path, output: Path, cfg: TrainConfig, device: torch.device,
                    resume: bool = False, export_only: bool = False, overwrite: bool = False,
                    dataset_name: str | None = None, shard: Shard = SINGLE,
                    progress: Progress = lambda phase, done, total, status: None,
                    should_stop: StopCheck = lambda: 0) -> GeneratorCard:
    """Train a generator on an image-folder data set and save it to ``output`` (.safetensors).

    ``export_only``: write weights from ``output``'s checkpoint without training further.
    An existing ``output`` or checkpoint is never discarded without ``overwrite``
    (:func:`check_previous_run`).  ``dataset_name`` goes into the card (default
    ``parent/folder`` of ``data_dir``).  ``shard``: this rank of a torchrun job (the
    process group already started).  ``should_stop``: asked between steps; when it
    returns a signal number the run saves a checkpoint and raises :class:`Interrupted`.
    """
    paths = check_output(Path(output))
    check_previous_run(paths, cfg, resume, overwrite, export_only)
    data = load_image_folder(Path(data_dir), cfg.image_size, cfg.per_class)
    if export_only and shard.torchrun:
        raise ConfigError("--export-only writes one file; run it without torchrun")
    run = TrainingRun(data, paths, cfg, device, cfg.method_class()(),
                      dataset_name or default_dataset_name(data_dir), shard)
    if overwrite and not export_only and not resume and shard.leader:
        paths.checkpoint.unlink(missing_ok=True)     # asked to start over: the old run is discarded
        paths.score.unlink(missing_ok=True)
    return run_training(run, resume, export_only, progress, should_stop)
