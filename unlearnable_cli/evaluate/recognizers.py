"""A pretrained face recognizer as the unauthorized trainer: dlib's network (the port).

What a person is most likely to meet is not a classifier trained from scratch but a
pretrained recognizer that enrols their photos, or a team that fine-tunes one on them.
Each variant here takes face chips (:mod:`unlearnable_cli.faces.enrol`) of the training
photos and is measured on chips of clean held-out photos, like a victim of
:mod:`.victims`, and returns the same :class:`~.victims.Trained`:

- ``embedding:1nn``: face_recognition's way: the nearest enrolled descriptor, a match
  only within Euclidean distance 0.6 (else "unknown", which is never right);
- ``embedding:linear``: a multinomial logistic regression on the descriptors;
- ``finetune:head``: a new linear head on the frozen network, trained on randomly flipped chips;
- ``finetune:whole``: the same head and every layer of the network trained together.

Training photos in which no face was found cannot be enrolled and are left out; held-out
photos without a face count as not recognized (a site cannot name a face it does not find).
A recognizer left with no face to train on recognizes nobody: every accuracy is 0.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..config.evaluate import EVAL_BATCH, RecognizerConfig
from ..engine import seeding
from ..io.datasets import data_digest
from ..models.weights import model_digest
from .victims import Trained

Evals = dict[str, tuple[torch.Tensor, torch.Tensor]]
#: The prediction for a face the recognizer does not know, or a photo without a face.
UNKNOWN = -1


def _chips(u8: torch.Tensor, device: torch.device) -> torch.Tensor:
    return u8.to(device).float() / 255


@torch.no_grad()
def embed(net: nn.Module, chips_u8: torch.Tensor, device: torch.device, flip: bool = False) -> torch.Tensor:
    """(N, 128) descriptors of uint8 chips (N, 3, 150, 150), in batches; ``flip``: mirrored."""
    net.eval()
    out = [net(_chips(c, device).flip(-1) if flip else _chips(c, device)) for c in chips_u8.split(EVAL_BATCH)]
    return torch.cat(out) if out else torch.zeros(0, 128, device=device)


def _faces(chips: torch.Tensor) -> torch.Tensor:
    from ..faces.enrol import has_face
    return has_face(chips)


def nearest(train_emb: torch.Tensor, train_y: torch.Tensor, emb: torch.Tensor, threshold: float) -> torch.Tensor:
    """1-NN labels of ``emb``, :data:`UNKNOWN` where the nearest is farther than ``threshold``."""
    if len(emb) == 0 or len(train_emb) == 0:
        return torch.full((len(emb),), UNKNOWN, dtype=torch.long)
    dist, idx = torch.cdist(emb.double(), train_emb.double()).min(1)
    return torch.where((dist <= threshold).cpu(), train_y.cpu()[idx.cpu()], torch.tensor(UNKNOWN))


def fit_linear(x: torch.Tensor, y: torch.Tensor, classes: int, cfg: RecognizerConfig) -> nn.Linear:
    """Multinomial logistic regression on descriptors, full-batch L-BFGS from zero weights."""
    head = nn.Linear(x.shape[1], classes).to(x.device).double()
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    opt = torch.optim.LBFGS(head.parameters(), max_iter=cfg.linear_iterations, line_search_fn="strong_wolfe")
    xd, yd = x.double(), y.to(x.device)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(head(xd), yd) + cfg.linear_l2 * head.weight.square().sum()
        loss.backward()
        return loss
    opt.step(closure)
    return head


def _score(pred: torch.Tensor, labels: torch.Tensor) -> float:
    return 100 * float((pred.cpu() == labels.cpu()).double().mean()) if len(labels) else 0.0


def _predict(classify: Callable[[torch.Tensor], torch.Tensor], chips: torch.Tensor) -> torch.Tensor:
    """Labels of chips, :data:`UNKNOWN` for those without a face."""
    found = _faces(chips)
    pred = torch.full((len(chips),), UNKNOWN, dtype=torch.long)
    if found.any():
        pred[found] = classify(chips[found]).cpu()
    return pred


def enrol(net: nn.Module, train_x: torch.Tensor, train_y: torch.Tensor, evals: Evals, classes: int,
          cfg: RecognizerConfig, variant: str, device: torch.device) -> Trained:
    """``embedding:1nn`` or ``embedding:linear``: one measurement (a one-entry history)."""
    found = _faces(train_x)
    if not found.any():
        return Trained({name: [0.0] for name in evals}, data_digest(train_y))
    emb, y = embed(net, train_x[found], device), train_y[found]
    if variant == "embedding:1nn":
        def classify(chips: torch.Tensor) -> torch.Tensor:
            return nearest(emb, y, embed(net, chips, device), cfg.match_threshold)
        digest = data_digest(emb.float().cpu(), y)
    else:
        head = fit_linear(emb, y, classes, cfg)

        def classify(chips: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return head(embed(net, chips, device).double()).argmax(1)
        digest = model_digest(head)
    history = {name: [_score(_predict(classify, ex), ey)] for name, (ex, ey) in evals.items()}
    return Trained(history, digest)


def finetune(net: nn.Module, train_x: torch.Tensor, train_y: torch.Tensor, evals: Evals, classes: int,
             cfg: RecognizerConfig, whole: bool, device: torch.device,
             on_epoch: Callable[[int], None] = lambda epoch: None) -> Trained:
    """A new linear head on the network, trained with Adam on randomly flipped chips;
    ``whole``: the network's layers too (else they stay frozen).  Measured every epoch."""
    found = _faces(train_x)
    if not found.any():
        on_epoch(cfg.epochs)
        return Trained({name: [0.0] * cfg.epochs for name in evals}, data_digest(train_y))
    torch.manual_seed(cfg.seed)
    x_all, y_all = train_x[found], train_y[found].to(device)
    head = nn.Linear(128, classes).to(device)
    for p in net.parameters():
        p.requires_grad_(whole)
    groups = [{"params": head.parameters(), "lr": cfg.head_lr}]
    if whole:
        groups.append({"params": net.parameters(), "lr": cfg.net_lr})
    opt = torch.optim.Adam(groups)
    frozen = None if whole else (embed(net, x_all, device), embed(net, x_all, device, flip=True))
    history: dict[str, list[float]] = {name: [] for name in evals}
    steps = max(1, len(y_all) // cfg.batch_size)
    for epoch in range(cfg.epochs):
        g = seeding.generator(cfg.seed, "recognizer-epoch", epoch)
        perm = torch.randperm(len(y_all), generator=g)
        flips = torch.rand(len(y_all), generator=g) < 0.5 if cfg.flip else torch.zeros(len(y_all), dtype=torch.bool)
        net.train(whole)
        for k in range(steps):
            idx = perm[k * cfg.batch_size:(k + 1) * cfg.batch_size]
            if frozen is None:
                chips = _chips(x_all[idx], device)
                chips = torch.where(flips[idx].to(device).view(-1, 1, 1, 1), chips.flip(-1), chips)
                feats = net(chips)
            else:
                feats = torch.where(flips[idx].to(device).view(-1, 1), frozen[1][idx.to(device)],
                                    frozen[0][idx.to(device)])
            loss = F.cross_entropy(head(feats), y_all[idx.to(device)])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            for name, (ex, ey) in evals.items():
                history[name].append(_score(_predict(lambda c: head(embed(net, c, device)).argmax(1), ex), ey))
        on_epoch(epoch + 1)
    for p in net.parameters():
        p.requires_grad_(False)
    return Trained(history, model_digest(nn.ModuleList([net, head])) if whole else model_digest(head))


def train_recognizer(train_x: torch.Tensor, train_y: torch.Tensor, evals: Evals, classes: int,
                     cfg: RecognizerConfig, variant: str, device: torch.device,
                     on_epoch: Callable[[int], None] = lambda epoch: None) -> Trained:
    """One recognizer variant (``embedding:1nn``, ``embedding:linear``, ``finetune:head``,
    ``finetune:whole``) trained on chips ``train_x`` and measured on each eval set's chips;
    a fresh copy of the pretrained network every time."""
    from ..faces import load_face_net
    net = load_face_net(device=device)                         # frozen, in eval mode
    if variant.startswith("embedding:"):
        trained = enrol(net, train_x, train_y, evals, classes, cfg, variant, device)
        on_epoch(1)
        return trained
    return finetune(net, train_x, train_y, evals, classes, cfg, variant == "finetune:whole", device, on_epoch)
