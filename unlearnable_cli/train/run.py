"""The state of one generator-training run, shared by the loop and the method's step.

:class:`TrainingRun` holds the data split, the surrogate, its optimizer, the noise
engine and the adversarial attack of one run, plus the step counter; it knows the
shared pieces of a step (the minibatch of step s, one SGD update) and nothing of
any method.  All randomness of step s is derived from (seed, s).

Under torchrun only the SGD step goes through DistributedDataParallel (it averages
the gradients); the noise and PGD take input gradients of the plain module.  BatchNorm
uses each rank's own batch statistics and rank 0's running averages (docs/distributed.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import torch
import torch.nn.functional as F

from .. import distributed
from ..engine import seeding
from ..engine.attacks import PGD
from ..config import ConfigError, TrainConfig
from ..io.datasets import ImageFolderData
from ..distributed import SINGLE, Shard
from ..methods.base import UnlearnableMethod
from ..models.architectures import CIFAR_MEAN, CIFAR_STD
from ..engine.noise import ErrorMinimizingNoise
from ..models.weights import GeneratorCard, WeightsError, load_generator
from .checkpoints import RunPaths


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Step-decay schedule: lr × 0.1 at each milestone fraction of M (2000 and 4000 of 5000)."""
    passed = sum(step >= round(m * cfg.steps) for m in cfg.lr_milestones)
    return cfg.lr * (0.1 ** passed)


class TrainingRun:
    """Data, model, optimizer, engine and step of one run (see the module docstring)."""

    def __init__(self, data: ImageFolderData, paths: RunPaths, cfg: TrainConfig, device: torch.device,
                 method: UnlearnableMethod, dataset_name: str, shard: Shard = SINGLE) -> None:
        self.cfg, self.device, self.paths, self.shard, self.method = cfg, device, paths, shard, method
        if shard.torchrun and method.single_process:
            raise ConfigError("EM trains in one process (its noise of the whole training set is updated "
                              "between SGD steps); run it without torchrun, or use --method sem / rem")
        if shard.torchrun and cfg.batch_size % shard.count:
            raise ConfigError(f"--batch-size {cfg.batch_size} is the global minibatch; under torchrun it must "
                              f"split evenly over the {shard.count} processes")
        self.dataset_digest = data.digest()
        self.dataset_name = dataset_name
        self.train, self.val = data.split(cfg.val_fraction, cfg.seed)
        if len(self.train) < 2:
            raise ConfigError(f"{data.root}: too few training images ({len(self.train)})")
        self.class_names = data.class_names
        self.noise_cfg = method.train_noise_config(cfg)
        torch.manual_seed(cfg.seed)
        self.model = self.card_skeleton().build().to(device, memory_format=torch.channels_last)
        self.init_digest = self._warm_start(Path(cfg.init)) if cfg.init else None
        self.opt = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                   weight_decay=cfg.weight_decay)
        self.engine = ErrorMinimizingNoise(self.model, self.noise_cfg, (cfg.image_size, cfg.image_size))
        self.trained: torch.nn.Module = self.model
        if shard.torchrun:
            from torch.nn.parallel import DistributedDataParallel
            self.trained = DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == "cuda" else None)
        self.attack = PGD(self.model, cfg.adv_radius, cfg.adv_step_size, cfg.adv_steps)
        self.step = 0
        self.elapsed = 0.0
        method.start(self)

    def card_skeleton(self) -> GeneratorCard:
        """The card of this run before its metrics are known (also builds the model)."""
        hyper = self.cfg.to_dict()
        hyper["noise_eot_samples"] = self.noise_cfg.eot_samples
        return GeneratorCard(
            arch=self.cfg.arch, arch_kwargs=self.cfg.arch_kwargs, class_names=list(self.class_names),
            input_size=(self.cfg.image_size, self.cfg.image_size), mean=CIFAR_MEAN, std=CIFAR_STD,
            method=self.cfg.method.value, hyperparameters=hyper,
            transform=dataclasses.asdict(self.noise_cfg.transform))

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

    def batch_indices(self) -> torch.Tensor:
        """The minibatch of the current step: epochs are seeded permutations, the last partial batch dropped."""
        n = len(self.train)
        bs = min(self.cfg.batch_size, n)
        epoch, k = divmod(self.step, n // bs)
        perm = torch.randperm(n, generator=seeding.generator(self.cfg.seed, "epoch", epoch))
        return perm[k * bs:(k + 1) * bs]

    def update(self, inputs: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        """One SGD step on ``inputs`` in train mode at the current step's lr; returns (loss, accuracy)."""
        for group in self.opt.param_groups:
            group["lr"] = lr_at(self.cfg, self.step)
        self.model.train()
        logits = self.trained(inputs)
        loss = F.cross_entropy(logits, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        figures = [loss.item(), (logits.argmax(1) == y).float().mean().item()]
        if self.shard.torchrun:              # the job's figures, not this rank's share
            figures = distributed.mean_over_ranks(figures)
            # The noise of the next step runs in eval mode on BatchNorm's running averages:
            # every rank takes rank 0's, so rank 0's checkpoint is the whole job's state.
            distributed.broadcast_buffers(self.model)
        return figures[0], figures[1]
