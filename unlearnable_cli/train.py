"""Generator training: SEM's Algorithm 1, with the REM and EM baselines.

SEM / REM, per step (minibatch x, y):
  1. δᵘ = noise engine (K_u sign-PGD steps minimizing the loss over J draws of
     (t_j, δʳ_j)); SEM draws δʳ uniformly, REM by PGD maximization;
  2. t ~ T, δᵃ = PGD(t(x + δᵘ)) maximizing within ρ_a (K_a steps, random start);
  3. one SGD step on f(t(x + δᵘ) + δᵃ) in train mode.
EM (Huang et al.'s min-min bi-level loop): a persistent noise per training image
(or, ``class_wise``, one pattern per class: :mod:`classwise`); rounds of
``em_train_steps`` SGD steps on x + δ followed by a noise update of the whole training
set; stop when accuracy on x + δ exceeds ``em_stop_accuracy``.

All randomness of step s is derived from (seed, s), and checkpoints hold model,
optimizer, (EM) noise and the step, so ``--resume`` reproduces an uninterrupted run.

Under torchrun (SEM / REM) every rank takes its share of each step's global
minibatch, computes δᵘ and δᵃ for it with its own stream (seed, s, rank, ranks), and
DistributedDataParallel averages the gradients; BatchNorm uses each rank's own batch
statistics and rank 0's running averages.  Rank 0 writes checkpoints, the log and the
weights (docs/distributed.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from . import __version__, checkpoints, classwise, distributed, seeding, transforms
from .attacks import PGD
from .checkpoints import RunPaths, check_previous_run, default_dataset_name, stop_requests
from .config import ConfigError, Method, TrainConfig
from .data import ImageFolderData, load_image_folder, to_device
from .distributed import SINGLE, Shard
from .metrics import accuracy
from .models import CIFAR_MEAN, CIFAR_STD
from .noise import ErrorMinimizingNoise
from .score import PREFIX as SCORE_PREFIX, ScoreFile, load_score, save_score, train_score
from .weights import GeneratorCard, WeightsError, load_generator, save_generator, state_tensors

#: Held-out robustness is always measured with the same attack, whatever ρ_a was used.
EVAL_PGD = dict(eps=4 / 255, alpha=1 / 255, steps=10)
#: Images of the training split used to report accuracy on defended data.
DEFENDED_EVAL_IMAGES = 1000


class Interrupted(Exception):
    """Training stopped on request (Ctrl-C / SIGTERM) after saving a checkpoint."""

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.signum = signum


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Step-decay schedule: lr × 0.1 at each milestone fraction of M (2000 and 4000 of 5000)."""
    passed = sum(step >= round(m * cfg.steps) for m in cfg.lr_milestones)
    return cfg.lr * (0.1 ** passed)


def batch_indices(n: int, cfg: TrainConfig, step: int) -> torch.Tensor:
    """The minibatch of ``step``: epochs are seeded permutations, the last partial batch dropped."""
    bs = min(cfg.batch_size, n)
    per_epoch = n // bs
    epoch, k = divmod(step, per_epoch)
    perm = torch.randperm(n, generator=seeding.generator(cfg.seed, "epoch", epoch))
    return perm[k * bs:(k + 1) * bs]


class Trainer:
    """One generator training run; ``run()`` returns the card of the saved generator."""

    def __init__(self, data: ImageFolderData, paths: RunPaths, cfg: TrainConfig,
                 device: torch.device, dataset_name: str = "", show_progress: bool = True,
                 shard: Shard = SINGLE) -> None:
        self.cfg, self.device, self.paths, self.shard = cfg, device, paths, shard
        self.show_progress = show_progress and shard.leader
        if shard.talks and cfg.method is Method.EM:
            raise ConfigError("EM trains in one process (its noise of the whole training set is updated "
                              "between SGD steps); run it without torchrun, or use --method sem / rem")
        if shard.talks and cfg.batch_size % shard.count:
            raise ConfigError(f"--batch-size {cfg.batch_size} is the global minibatch; under torchrun it must "
                              f"split evenly over the {shard.count} processes")
        self.dataset_digest = data.digest()
        self.dataset_name = dataset_name or default_dataset_name(data.root)
        self.train, self.val = data.split(cfg.val_fraction, cfg.seed)
        if len(self.train) < 2:
            raise ConfigError(f"{data.root}: too few training images ({len(self.train)})")
        self.class_names = data.class_names
        noise_cfg = cfg.noise_config()
        self.noise_cfg = noise_cfg
        torch.manual_seed(cfg.seed)
        self.model = self._card_skeleton().build().to(device, memory_format=torch.channels_last)
        self.init_digest = self._warm_start(Path(cfg.init)) if cfg.init else None
        self.opt = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay)
        self.engine = ErrorMinimizingNoise(self.model, noise_cfg, (cfg.image_size, cfg.image_size))
        # Only the SGD step goes through DDP (it averages the gradients); the noise and
        # PGD take input gradients of the plain module, which DDP does not see.
        self.trained: torch.nn.Module = self.model
        if shard.talks:
            from torch.nn.parallel import DistributedDataParallel
            self.trained = DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None)
        self.attack = PGD(self.model, cfg.adv_radius, cfg.adv_step_size, cfg.adv_steps)
        self.step = 0
        self.elapsed = 0.0
        self.score: ScoreFile | None = None       # TUE's score estimator (prepare_score)
        self.score_source: dict[str, object] = {}
        self.em_noise = torch.zeros(0)
        if cfg.method is Method.EM and cfg.class_wise:
            self.em_noise = classwise.initial_patterns(len(self.class_names), (cfg.image_size, cfg.image_size),
                                                       cfg.radius, seeding.generator(cfg.seed, "em-init"))
        elif cfg.method is Method.EM:
            g = seeding.generator(cfg.seed, "em-init")
            u = torch.rand(self.train.images.shape, generator=g)
            self.em_noise = (2 * u - 1) * cfg.radius

    def _card_skeleton(self) -> GeneratorCard:
        """The card of this run before its metrics are known (also builds the model)."""
        hyper = self.cfg.to_dict()
        hyper["noise_eot_samples"] = self.noise_cfg.eot_samples
        return GeneratorCard(
            arch=self.cfg.arch, arch_kwargs=self.cfg.arch_kwargs,
            class_names=list(self.class_names),
            input_size=(self.cfg.image_size, self.cfg.image_size),
            mean=CIFAR_MEAN, std=CIFAR_STD, method=self.cfg.method.value,
            hyperparameters=hyper, transform=dataclasses.asdict(self.noise_cfg.transform))

    def _warm_start(self, path: Path) -> str:
        """Copy the weights of generator ``path`` (same architecture and classes) into the model.

        Fine-tuning a trained generator for more steps is the cheap way to a longer
        schedule; returns the file's SHA-256 for the card.
        """
        try:
            model, card = load_generator(path)
        except (WeightsError, OSError) as e:
            raise ConfigError(f"--init {e}") from e
        wanted = (self.cfg.arch, self.cfg.arch_kwargs, list(self.class_names),
                  (self.cfg.image_size, self.cfg.image_size))
        found = (card.arch, card.arch_kwargs, list(card.class_names), tuple(card.input_size))
        if found != wanted:
            raise ConfigError(f"{path}: --init generator is {found[0]} {found[1]}, input {found[3]}, "
                              f"classes {found[2]}; this run needs {wanted[0]} {wanted[1]}, "
                              f"input {wanted[3]}, classes {wanted[2]}")
        self.model.load_state_dict(model.state_dict())
        return hashlib.sha256(path.read_bytes()).hexdigest()

    # ----------------------------------------------------------------- checkpoints
    def _config_fingerprint(self) -> str:
        d = self.cfg.to_dict()
        d.pop("checkpoint_every"), d.pop("log_every")
        for key, before in TrainConfig.ADDED_LATER.items():   # checkpoints from before these existed resume
            if d.get(key, before) == before:
                d.pop(key, None)
        return json.dumps({"config": d, "data": self.dataset_digest}, sort_keys=True)

    def save_checkpoint(self) -> None:
        if not self.shard.leader:
            return
        extra = {"em.noise": self.em_noise} if self.cfg.method is Method.EM else {}
        checkpoints.save(self.paths.checkpoint, self.model, self.opt, extra,
                         step=self.step, elapsed=self.elapsed, fingerprint=self._config_fingerprint())

    def load_checkpoint(self, truncate_log: bool = True) -> None:
        state = checkpoints.load(self.paths.checkpoint, self.model, self.opt, self._config_fingerprint())
        self.em_noise = state.extra.get("em.noise", self.em_noise)
        self.step, self.elapsed = state.step, state.elapsed
        if truncate_log and self.shard.leader:
            checkpoints.truncate_log(self.paths.log, self.step)

    def _log(self, record: dict[str, object]) -> None:
        if self.shard.leader:
            checkpoints.append_log(self.paths.log, record)

    # ----------------------------------------------------------------- TUE's score estimator
    def _score_fingerprint(self) -> str:
        return json.dumps({"score": dataclasses.asdict(self.cfg.score_config()), "seed": self.cfg.seed,
                           "classes": list(self.class_names), "size": self.cfg.image_size,
                           "data": self.dataset_digest}, sort_keys=True)

    def prepare_score(self, on_step: Callable[[int, float], None] | None = None,
                      should_stop: Callable[[], bool] = lambda: False) -> None:
        """TUE's first phase: take ``--score-model``, or the run's own score file when it was
        made with these options and data (a resumed run), or train one and save it."""
        cfg, size = self.cfg, (self.cfg.image_size, self.cfg.image_size)
        if cfg.score_model:
            path = Path(cfg.score_model)
            try:
                score = load_score(path, self.device)
            except WeightsError as e:
                raise ConfigError(f"--score-model {e}") from e
            if score.class_names != list(self.class_names) or tuple(score.input_size) != size:
                raise ConfigError(f"{path}: --score-model was trained for classes {score.class_names} at "
                                  f"{tuple(score.input_size)}; this run has {list(self.class_names)} at {size}")
            self.score_source = {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        else:
            exists = self.paths.score.exists()
            if self.shard.talks:              # every rank decides on the same view of the folder
                distributed.barrier()
            if not exists and self.shard.leader:
                model, figures = train_score(self.train.images, self.train.labels, len(self.class_names),
                                             cfg.score_config(), self.device, cfg.seed,
                                             held_out=(self.val.images, self.val.labels), on_step=on_step,
                                             should_stop=should_stop)
                if should_stop():             # cut short: not kept, a rerun trains it again
                    return
                save_score(self.paths.score, ScoreFile(model, cfg.score_config().arch, list(self.class_names),
                                                       size, figures, self._score_fingerprint()))
            if self.shard.talks:              # rank 0 trained it; the others read its file
                distributed.barrier()
            try:
                score = load_score(self.paths.score, self.device)
            except WeightsError as e:
                raise ConfigError(f"{e}; delete it to train the score estimator again") from e
            if score.fingerprint != self._score_fingerprint():
                raise ConfigError(f"{self.paths.score}: a score estimator made with other options or data is "
                                  "there; add --overwrite to train it again, or choose another -o")
            self.score_source = {"trained_by_this_run": True, **({"reused": True} if exists else {})}
        self.score = score
        self.engine.score_model = score.model

    # ----------------------------------------------------------------- steps
    def _update(self, inputs: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """One SGD step on ``inputs`` in train mode; returns (loss, accuracy)."""
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.cfg, self.step)
        self.model.train()
        logits = self.trained(inputs)
        loss = F.cross_entropy(logits, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        figures = [loss.item(), (logits.argmax(1) == y).float().mean().item()]
        if self.shard.talks:              # the job's figures, not this rank's share
            figures = distributed.mean_over_ranks(figures)
            # The noise of the next step runs in eval mode on BatchNorm's running averages:
            # every rank takes rank 0's, so rank 0's checkpoint is the whole job's state.
            distributed.broadcast_buffers(self.model)
        return figures[0], figures[1]

    def sem_step(self) -> tuple[float, float]:
        """Algorithm 1, lines 2-12 (REM differs only inside the noise engine)."""
        g = seeding.generator(self.cfg.seed, "step", self.step)
        idx = batch_indices(len(self.train), self.cfg, self.step)
        if self.shard.talks:              # this rank's share of the global minibatch, its own draws
            g = seeding.generator(self.cfg.seed, "step", self.step, "rank", self.shard.index, self.shard.count)
            idx = idx[self.shard.index::self.shard.count]
        x = to_device(self.train.images[idx], self.device)
        y = self.train.labels[idx].to(self.device)
        delta = self.engine(x, y, g)
        size = (self.cfg.image_size, self.cfg.image_size)
        params = transforms.sample_params(self.cfg.transform_spec(), len(y), size, size, g, self.device)
        xt = transforms.apply(x + delta, params)
        return self._update(self.attack(xt, y, g), y)

    def em_noise_of(self, idx: torch.Tensor) -> torch.Tensor:
        """The current EM noise of training images ``idx`` (their class's pattern when class-wise)."""
        return self.em_noise[self.train.labels[idx]] if self.cfg.class_wise else self.em_noise[idx]

    def em_round(self) -> tuple[float, float]:
        """EM: ``em_train_steps`` updates on x + δ, then one noise pass over the training set."""
        loss = acc = 0.0
        for _ in range(self.cfg.em_train_steps):
            if self.step >= self.cfg.steps:
                break
            idx = batch_indices(len(self.train), self.cfg, self.step)
            x = to_device(self.train.images[idx], self.device)
            inputs = x + self.em_noise_of(idx).to(x)
            if self.cfg.class_wise:       # a shared pattern can leave [0, 1]; protect's output is clipped too
                inputs = inputs.clamp(0, 1)
            loss, acc = self._update(inputs, self.train.labels[idx].to(self.device))
            self.step += 1
        if self.cfg.class_wise:
            self.em_noise = classwise.update_patterns(self.model, self.train.images, self.train.labels,
                                                      self.em_noise, self.cfg.noise_steps, self.cfg.step_size,
                                                      self.cfg.radius, self.device, self.cfg.batch_size)
            return loss, acc
        g = seeding.generator(self.cfg.seed, "em-noise", self.step)
        for idx in torch.arange(len(self.train)).split(self.cfg.batch_size):
            x = to_device(self.train.images[idx], self.device)
            y = self.train.labels[idx].to(self.device)
            self.em_noise[idx] = self.engine(x, y, g, init=self.em_noise[idx].to(x)).cpu()
        return loss, acc

    def em_accuracy(self) -> float:
        """Accuracy on the whole training set with its current EM noise (the stop condition)."""
        return accuracy(self.model, self.train.images, self.train.labels, self.device,
                        noise=self.em_noise_of(torch.arange(len(self.train))))

    # ----------------------------------------------------------------- run
    def run(self, resume: bool = False, export_only: bool = False) -> GeneratorCard:
        """Train to M steps (continuing from the checkpoint with ``resume``) and save.

        ``export_only`` writes weights from the checkpoint as it is, without training
        further (the card's ``steps_done`` says how far it got).
        """
        if export_only:
            if not self.paths.checkpoint.exists():
                raise ConfigError(f"{self.paths.checkpoint}: no checkpoint to export")
            self.load_checkpoint(truncate_log=False)
            return self.finish(log=False)
        if resume and self.paths.checkpoint.exists():
            self.load_checkpoint()
        elif self.paths.log.exists() and self.shard.leader:
            self.paths.log.unlink()
        cfg = self.cfg
        columns = [TextColumn("[bold]{task.description}"), BarColumn(),
                   TextColumn("{task.completed}/{task.total}"), TextColumn("{task.fields[status]}"),
                   TimeElapsedColumn(), TimeRemainingColumn()]
        em_done = False
        with stop_requests() as flag, Progress(*columns, disable=not self.show_progress) as bar:
            if cfg.method is Method.TUE:
                score_task = bar.add_task("score estimator", total=cfg.score_steps, status="")
                self.prepare_score(lambda n, loss: bar.update(score_task, completed=n, status=f"loss {loss:.4f}"),
                                   lambda: bool(flag["stop"]))
                bar.update(score_task, completed=cfg.score_steps)
                if flag["stop"]:
                    raise Interrupted("while training the score estimator (nothing of it was kept); "
                                      "rerun with --resume to start it again", flag["stop"])
            task = bar.add_task(f"train {cfg.method.value}", total=cfg.steps, completed=self.step, status="")
            while self.step < cfg.steps and not em_done:
                start = time.perf_counter()
                if cfg.method is Method.EM:
                    loss, acc = self.em_round()
                    em_acc = self.em_accuracy()
                    em_done = em_acc >= cfg.em_stop_accuracy
                    record = {"step": self.step, "loss": loss, "acc": acc, "em_defended_acc": em_acc}
                else:
                    loss, acc = self.sem_step()
                    self.step += 1
                    record = {"step": self.step, "loss": loss, "adv_acc_defended": acc}
                self.elapsed += time.perf_counter() - start
                record.update(lr=lr_at(cfg, self.step - 1), elapsed=round(self.elapsed, 2))
                if cfg.method is Method.EM or self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    self._log(record)
                bar.update(task, completed=self.step, status=f"loss {loss:.3f} acc {acc:.1%}")
                if cfg.method is Method.EM or self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                if self.shard.talks:      # every rank stops at the same step when any was asked to
                    flag["stop"] = distributed.any_rank(flag["stop"])
                if flag["stop"]:
                    self.save_checkpoint()
                    raise Interrupted(f"at step {self.step}; checkpoint saved to "
                                      f"{self.paths.checkpoint}; rerun with --resume to continue",
                                      flag["stop"])
            self.save_checkpoint()
        if not self.shard.leader:         # rank 0 measures and writes the generator
            return self._card_skeleton()
        return self.finish()

    def finish(self, log: bool = True) -> GeneratorCard:
        """Measure the generator, write weights + card, and (with ``log``) log the summary."""
        start = time.perf_counter()
        n = min(DEFENDED_EVAL_IMAGES, len(self.train))
        g = seeding.generator(self.cfg.seed, "final-defended")
        # A random sample, not the first n: the training split is stored in class order.
        pick = torch.randperm(len(self.train), generator=g)[:n]
        images, labels = self.train.images[pick], self.train.labels[pick]
        x = to_device(images, self.device)
        y = labels.to(self.device)
        if self.cfg.method is Method.EM and self.cfg.class_wise:
            delta = self.em_noise_of(pick).to(x)
        else:
            delta = torch.cat([self.engine(xb, yb, g) for xb, yb in zip(x.split(128), y.split(128))])
        metrics = {
            "defended_train_acc": accuracy(self.model, images, labels, self.device, noise=delta.cpu()),
            "clean_train_acc": accuracy(self.model, images, labels, self.device),
        }
        if len(self.val):
            metrics["val_clean_acc"] = accuracy(self.model, self.val.images, self.val.labels, self.device)
            metrics["val_pgd_acc"] = accuracy(self.model, self.val.images, self.val.labels, self.device,
                                              attack=PGD(self.model, **EVAL_PGD))
            metrics["val_pgd_attack"] = {k: (v * 255 if k != "steps" else v) for k, v in EVAL_PGD.items()}
        metrics["steps_done"] = self.step
        card = self._card_skeleton()
        extras: dict[str, torch.Tensor] = {}
        if self.score is not None:
            card.hyperparameters["score_arch"] = self.score.arch
            metrics["score"] = {**self.score.figures, **self.score_source}
            extras = {SCORE_PREFIX + k: v for k, v in state_tensors(self.score.model).items()}
        card.dataset = {"name": self.dataset_name, "sha256": self.dataset_digest,
                        "train_images": len(self.train), "val_images": len(self.val)}
        card.metrics = metrics
        card.provenance = {"wall_time_s": round(self.elapsed + time.perf_counter() - start, 1),
                           "device": str(self.device), "processes": self.shard.count,
                           "torch": torch.__version__,
                           "package_version": __version__,
                           **({"init": {"path": self.cfg.init, "sha256": self.init_digest}} if self.cfg.init else {}),
                           "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        if self.cfg.method is Method.EM and self.cfg.class_wise:
            extras = {classwise.PATTERNS: self.em_noise}
        save_generator(self.paths.weights, self.model, card, extras)
        if log:
            self._log({"step": self.step, "final": metrics, "wall_time_s": card.provenance["wall_time_s"]})
        return card


def train_generator(data_dir: Path, output: Path, cfg: TrainConfig, device: torch.device,
                    resume: bool = False, show_progress: bool = True, export_only: bool = False,
                    overwrite: bool = False, dataset_name: str | None = None,
                    shard: Shard = SINGLE) -> GeneratorCard:
    """Train a generator on an image-folder data set and save it to ``output`` (.safetensors).

    ``export_only``: write weights from ``output``'s checkpoint without training further.
    An existing ``output`` or checkpoint is never discarded without ``overwrite``
    (:func:`check_previous_run`).  ``dataset_name`` goes into the card (default
    ``parent/folder`` of ``data_dir``).  ``shard``: this rank of a torchrun job (the
    process group already started).
    """
    output = Path(output)
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
    paths = RunPaths(output)
    check_previous_run(paths, cfg, resume, overwrite, export_only)
    data = load_image_folder(Path(data_dir), cfg.image_size, cfg.per_class)
    if export_only and shard.talks:
        raise ConfigError("--export-only writes one file; run it without torchrun")
    trainer = Trainer(data, paths, cfg, device, dataset_name or default_dataset_name(data_dir), show_progress,
                      shard)
    if overwrite and not export_only and not resume and shard.leader:
        paths.checkpoint.unlink(missing_ok=True)     # asked to start over: the old run is discarded
        paths.score.unlink(missing_ok=True)
    return trainer.run(resume=resume, export_only=export_only)
