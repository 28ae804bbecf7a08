"""The end of a training run: measure the generator, fill in its card, write the file.

The card's metrics: accuracy on a random sample of its own protected training images
(high is expected: it has learnt the noise), on the same images clean, and on the
held-out split clean and under a fixed PGD attack (the surrogate's robustness).
"""

from __future__ import annotations

import time

import torch

from .. import __version__
from ..engine import seeding
from ..engine.attacks import PGD
from ..config import DEFENDED_EVAL_IMAGES, EVAL_PGD
from ..io.datasets import to_device
from ..metrics import accuracy
from ..models.weights import GeneratorCard, save_generator
from .run import TrainingRun



def measure(run: TrainingRun) -> dict[str, object]:
    """The card's accuracies (see the module docstring) and how many steps were done."""
    n = min(DEFENDED_EVAL_IMAGES, len(run.train))
    g = seeding.generator(run.cfg.seed, "final-defended")
    # A random sample, not the first n: the training split is stored in class order.
    pick = torch.randperm(len(run.train), generator=g)[:n]
    images, labels = run.train.images[pick], run.train.labels[pick]
    x, y = to_device(images, run.device), labels.to(run.device)
    delta = run.method.final_noise(run, pick, x, y, g)
    metrics: dict[str, object] = {
        "defended_train_acc": accuracy(run.model, images, labels, run.device, noise=delta.cpu()),
        "clean_train_acc": accuracy(run.model, images, labels, run.device),
    }
    if len(run.val):
        metrics["val_clean_acc"] = accuracy(run.model, run.val.images, run.val.labels, run.device)
        metrics["val_pgd_acc"] = accuracy(run.model, run.val.images, run.val.labels, run.device,
                                          attack=PGD(run.model, **EVAL_PGD))  # type: ignore[arg-type]
        metrics["val_pgd_attack"] = {k: (v * 255 if k != "steps" else v) for k, v in EVAL_PGD.items()}
    metrics["steps_done"] = run.step
    return metrics


def finished_card(run: TrainingRun, started: float) -> GeneratorCard:
    """The full card of ``run``: skeleton, the method's additions, data, metrics, provenance."""
    metrics = measure(run)
    card = run.card_skeleton()
    hyper, method_metrics = run.method.card_extras()
    card.hyperparameters.update(hyper)
    metrics.update(method_metrics)
    card.dataset = {"name": run.dataset_name, "sha256": run.dataset_digest,
                    "train_images": len(run.train), "val_images": len(run.val)}
    card.metrics = metrics
    card.provenance = {"wall_time_s": round(run.elapsed + time.perf_counter() - started, 1),
                       "device": str(run.device), "processes": run.shard.count,
                       "torch": torch.__version__, "package_version": __version__,
                       **({"init": {"path": run.cfg.init, "sha256": run.init_digest}} if run.cfg.init else {}),
                       "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    return card


def write_generator(run: TrainingRun) -> GeneratorCard:
    """Measure the generator and write weights, the method's tensors and the card."""
    card = finished_card(run, time.perf_counter())
    save_generator(run.paths.weights, run.model, card, run.method.generator_tensors())
    return card
