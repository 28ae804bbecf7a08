"""TUE's class-conditional score estimator s_φ(x, y) ≈ ∇ₓ log p_σ(x | y) (Fang et al., Section 3.2).

Trained by denoising score matching (their Eq. 5): x̃ = x + σε, minimize
½‖s_φ(x̃, y) + (x̃ − x)/σ²‖².  The network predicts the noise ε̂(x̃, y) and the score is
−ε̂/σ (the usual ε-parameterization): the loss becomes ½σ⁻²‖ε̂ − ε‖², whose minimizer is
the same, with outputs of order one.  Figures are reported as the ε-loss per pixel,
½·mean (ε̂ − ε)², on which a zero score scores 0.5.

Choices (the paper names neither): one noise level σ = 0.05 (13/255), a little above the
noise radius ρ_u = 8/255, so the estimated field is smooth across the ball the noise
moves in; a small full-resolution residual net (width 24, 3 blocks, GroupNorm, SiLU, the
class entering as a learned scale and shift in every block), 33 M multiply-adds per
32×32 image, about the width-16 ResNet-18 generator's 35 M, so the score term adds about
one generator pass per noise step; 2,000 Adam steps train in minutes on a 2-core CPU.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from ..config import ScoreConfig
from ..engine import seeding
from ..io.atomic import atomic_path
from ..io.datasets import to_device
from ..models.weights import WeightsError, _open, state_tensors, tensors_digest

FORMAT = "unlearnable-score"
#: Prefix of the score estimator's tensors inside a TUE generator file.
PREFIX = "score."


class ScoreBlock(nn.Module):
    """conv → GroupNorm → class scale/shift → SiLU → conv, with a residual connection."""

    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, 1, 1)
        self.norm = nn.GroupNorm(8, width)
        self.film = nn.Embedding(num_classes, 2 * width)
        nn.init.zeros_(self.film.weight)          # starts as an unconditional block
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1)

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        scale, shift = self.film(y)[:, :, None, None].chunk(2, 1)
        out = self.norm(self.conv1(h)) * (1 + scale) + shift
        return h + self.conv2(F.silu(out))


class ScoreNet(nn.Module):
    """s_φ(x, y) for images ``(B, 3, H, W)`` in [0, 1] and labels ``(B,)``; returns ``(B, 3, H, W)``."""

    def __init__(self, num_classes: int, width: int = 24, depth: int = 3, sigma: float = 0.05) -> None:
        super().__init__()
        self.sigma = sigma
        self.stem = nn.Conv2d(3, width, 3, 1, 1)
        self.blocks = nn.ModuleList(ScoreBlock(width, num_classes) for _ in range(depth))
        self.head = nn.Conv2d(width, 3, 3, 1, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def noise(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """ε̂(x̃, y): the predicted Gaussian noise in x̃."""
        h = self.stem((x - 0.5) / 0.25)
        for block in self.blocks:
            h = block(h, y)
        return self.head(F.silu(h))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -self.noise(x, y) / self.sigma


def dsm_loss(model: ScoreNet, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """½·mean (ε̂(x + σε, y) − ε)²: Eq. 5 times σ², per pixel (0.5 for a zero score)."""
    return 0.5 * (model.noise(x + model.sigma * eps, y) - eps).pow(2).mean()


def build_score(arch: dict[str, object], num_classes: int) -> ScoreNet:
    """A score net from the architecture a card records (:attr:`ScoreConfig.arch`)."""
    if arch.get("name") != "scorenet":
        raise ValueError(f"unknown score architecture {arch.get('name')!r}")
    return ScoreNet(num_classes, int(arch["width"]), int(arch["depth"]), float(arch["sigma"]))  # type: ignore[arg-type]


@torch.no_grad()
def held_out_loss(model: ScoreNet, images: torch.Tensor, labels: torch.Tensor, device: torch.device,
                  seed: int = 0, batch_size: int = 256) -> float:
    """The DSM ε-loss per pixel on ``images`` (uint8) with a fixed, seeded ε."""
    g = seeding.generator(seed, "score-held-out")
    total, count = 0.0, 0
    for start in range(0, len(labels), batch_size):
        x = to_device(images[start:start + batch_size], device)
        eps = torch.randn(x.shape, generator=g).to(device)
        total += dsm_loss(model, x, labels[start:start + batch_size].to(device), eps).item() * len(x)
        count += len(x)
    return total / max(1, count)


def train_score(images: torch.Tensor, labels: torch.Tensor, num_classes: int, cfg: ScoreConfig,
                device: torch.device, seed: int = 0, held_out: tuple[torch.Tensor, torch.Tensor] | None = None,
                on_step: Callable[[int, float], None] | None = None,
                should_stop: Callable[[], bool] = lambda: False) -> tuple[ScoreNet, dict[str, object]]:
    """Train s_φ on uint8 ``images`` ``(N, 3, H, W)``; returns the model (eval mode) and its figures:
    the training loss over the last 100 steps and, with ``held_out``, the held-out loss
    before and after training.  Every draw is derived from (seed, step).  ``should_stop``
    is asked after every step (Ctrl-C): training then ends early and the caller discards it."""
    torch.manual_seed(seeding.derive_seed(seed, "score-init"))
    model = ScoreNet(num_classes, cfg.width, cfg.depth, cfg.sigma).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    figures: dict[str, object] = {"sigma": cfg.sigma, "steps": cfg.steps, "batch_size": cfg.batch_size, "lr": cfg.lr,
                                  "parameters": sum(p.numel() for p in model.parameters())}
    if held_out is not None and len(held_out[1]):
        figures["held_out_loss_before"] = round(held_out_loss(model, *held_out, device, seed), 5)
    start, recent = time.perf_counter(), []
    model.train()
    for step in range(cfg.steps):
        g = seeding.generator(seed, "score-step", step)
        idx = torch.randint(len(labels), (min(cfg.batch_size, len(labels)),), generator=g)
        x = to_device(images[idx], device)
        flip = torch.rand(len(idx), generator=g) < 0.5           # mirrored photos are photos of the class too
        x = torch.where(flip.to(device)[:, None, None, None], x.flip(3), x)
        eps = torch.randn(x.shape, generator=g).to(device)
        loss = dsm_loss(model, x, labels[idx].to(device), eps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        recent = (recent + [loss.item()])[-100:]
        if on_step is not None:
            on_step(step + 1, loss.item())
        if should_stop():
            break
    model.eval()
    figures["train_loss_last_100"] = round(sum(recent) / max(1, len(recent)), 5)
    if held_out is not None and len(held_out[1]):
        figures["held_out_loss"] = round(held_out_loss(model, *held_out, device, seed), 5)
        figures["held_out_images"] = len(held_out[1])
    figures["seconds"] = round(time.perf_counter() - start, 1)
    return model, figures


@dataclass
class ScoreFile:
    """A trained score estimator with what it was trained on: its architecture, classes,
    input size, training figures and the run's fingerprint (options and data)."""

    model: ScoreNet
    arch: dict[str, object]
    class_names: list[str]
    input_size: tuple[int, int]
    figures: dict[str, object]
    fingerprint: str = ""


def save_score(path: Path, score: ScoreFile) -> None:
    """Write a score estimator on its own (``<weights>.score.safetensors``), atomically."""
    tensors = state_tensors(score.model)
    meta = {"format": FORMAT, "arch": json.dumps(score.arch), "class_names": json.dumps(score.class_names),
            "input_size": json.dumps(list(score.input_size)), "figures": json.dumps(score.figures),
            "fingerprint": score.fingerprint, "tensors_sha256": tensors_digest(tensors)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load_score(path: Path, device: torch.device | str = "cpu") -> ScoreFile:
    """A score estimator from its own file or from a TUE generator file; :class:`WeightsError`
    names the file and the reason for anything unusable."""
    meta, tensors = _open(Path(path), load=True)
    if meta.get("tensors_sha256") != tensors_digest(tensors):
        raise WeightsError(f"{path}: tensor data does not match its recorded SHA-256; "
                           "the file is corrupted or was modified")
    try:
        if meta.get("format") == FORMAT:
            arch, names = json.loads(meta["arch"]), json.loads(meta["class_names"])
            size, figures = tuple(json.loads(meta["input_size"])), json.loads(meta.get("figures", "{}"))
            own = tensors
        elif meta.get("format") == "unlearnable-generator" and json.loads(meta.get("method", '""')) == "tue":
            hyper = json.loads(meta["hyperparameters"])
            arch, names = hyper["score_arch"], json.loads(meta["class_names"])
            size = tuple(json.loads(meta["input_size"]))
            figures = json.loads(meta.get("metrics", "{}")).get("score", {})
            own = {k[len(PREFIX):]: v for k, v in tensors.items() if k.startswith(PREFIX)}
        else:
            raise WeightsError(f"{path}: neither a score estimator nor a TUE generator")
        model = build_score(arch, len(names))
        model.load_state_dict(own, strict=True)
    except (KeyError, ValueError, RuntimeError) as e:
        raise WeightsError(f"{path}: unusable score estimator ({' '.join(str(e).split())[:200]})") from e
    return ScoreFile(model.to(device).eval(), arch, names, size, figures, meta.get("fingerprint", ""))  # type: ignore[arg-type]
