"""The unauthorized trainer of ``eval``: one victim classifier trained from scratch.

The whole training set is one tensor on the device (airbench style); augmentation
(pad-4 crop + flip), per-batch defenses and Madry PGD are batched.  Every random draw
of an epoch is derived from (seed, epoch), so the same recipe and data give the same
victim.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from . import defenses
from ..engine import seeding, transforms
from ..engine.attacks import PGD
from ..config import VictimConfig
from ..config.evaluate import EVAL_BATCH, VICTIM_PAD, WARMUP_SHARE
from ..io.datasets import to_device
from ..metrics import accuracy
from ..models.architectures import CIFAR_MEAN, CIFAR_STD, build_model
from ..models.weights import model_digest


@dataclass
class Setting:
    """One evaluation condition: adversarial-training radius ([0, 1] units) and defense."""

    adv_radius: float
    defense: defenses.Defense

    @property
    def label(self) -> str:
        adv = f"adv {self.adv_radius * 255:g}/255" if self.adv_radius else "standard"
        return adv if self.defense.name == "none" else f"{adv} + {self.defense.label}"


@dataclass
class Trained:
    """A trained victim: accuracy (%) per epoch on each eval set, and its final weights'
    SHA-256 (two victims with equal digests are the same victim, whatever they score)."""

    history: dict[str, list[float]]
    weights_sha256: str


def train_victim(train_x: torch.Tensor, train_y: torch.Tensor, evals: dict[str, tuple[torch.Tensor, torch.Tensor]],
                 num_classes: int, cfg: VictimConfig, setting: Setting, device: torch.device,
                 on_epoch: Callable[[int], None] = lambda epoch: None) -> Trained:
    """Train one victim from scratch and measure it on each named eval set every epoch.

    ``evals`` maps a name to (uint8 images, labels); a test-time defense (grayscale)
    is applied to them too.
    """
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.arch, num_classes, width=cfg.width, mean=CIFAR_MEAN, std=CIFAR_STD)
    model = model.to(device, memory_format=torch.channels_last)
    steps_per_epoch = max(1, len(train_y) // cfg.batch_size)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                          nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps_per_epoch,
                                                pct_start=WARMUP_SHARE, anneal_strategy="linear")
    x_all = to_device(train_x, device)
    if setting.defense.name in defenses.ONCE:
        x_all = defenses.apply_once(setting.defense, x_all)
    eval_sets = {}
    for name, (ex, ey) in evals.items():
        ex = to_device(ex, device)
        eval_sets[name] = (defenses.apply_once(setting.defense, ex) if setting.defense.applies_to_test else ex,
                           ey.to(device))
    y_all = train_y.to(device)
    batch_defense = defenses.BatchDefense(setting.defense) if setting.defense.name in defenses.PER_BATCH else None
    radius = setting.adv_radius
    step = cfg.adv_step_size if cfg.adv_step_size else 2.5 * radius / max(1, cfg.adv_steps)
    attack = PGD(model, radius, step, cfg.adv_steps) if radius > 0 else None
    spec = transforms.TransformSpec(pad=VICTIM_PAD, flip=True) if cfg.augment else transforms.TransformSpec.identity()
    size = (cfg.image_size, cfg.image_size)
    history: dict[str, list[float]] = {name: [] for name in evals}
    for epoch in range(cfg.epochs):
        g = seeding.generator(cfg.seed, "victim-epoch", epoch)
        perm = torch.randperm(len(y_all), generator=g).to(device)
        model.train()
        for k in range(steps_per_epoch):
            idx = perm[k * cfg.batch_size:(k + 1) * cfg.batch_size]
            x = transforms.apply(x_all[idx], transforms.sample_params(spec, len(idx), size, size, g, device))
            y = y_all[idx]
            batch = (batch_defense(x, y, g) if batch_defense
                     else defenses.MixedBatch(x, y, y, torch.ones(len(y), device=device)))
            inputs = attack(batch.images, y, g) if attack else batch.images
            loss = batch.loss(model(inputs))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        for name, (ex, ey) in eval_sets.items():
            history[name].append(100 * accuracy(model, ex, ey, batch_size=EVAL_BATCH))
        on_epoch(epoch + 1)
    return Trained(history, model_digest(model))
