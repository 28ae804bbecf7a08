"""Is the protective noise a linear shortcut? (Yu et al., "Availability attacks create shortcuts", KDD 2022)

Fits a linear softmax classifier to the noise alone (protected − clean, as 3072-dim
vectors in [−ρ, ρ]) on 1,500 images of a protected folder and reports its accuracy on
the other 500. Noise that a linear model separates by class is a shortcut a victim can
learn instead of the images.

    python bench/noise_separability.py CLEAN_DIR PROTECTED_DIR [PROTECTED_DIR ...]
    # e.g. bench/work/ablation/clean-200 bench/work/ablation/rr4-200 bench/work/cand/prot-s300
"""
from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
import torch.nn.functional as F

from unlearnable_cli.evaluate import load_pairs

OUT = Path(__file__).resolve().parent / "results" / "noise_separability.json"
TRAIN, STEPS, LR, SEED = 1500, 300, 0.01, 0   # split size, Adam steps on the full batch, step size, seed
IMAGE_SIZE = 32                               # CIFAR-10: pairs are loaded at their own size


def noise_matrix(clean: Path, protected: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3·H·W) noises in [0, 1] units and their class indices, paired as ``eval`` pairs them."""
    clean_u8, prot_u8, labels, _, _ = load_pairs(clean, protected, IMAGE_SIZE, allow_missing=False)
    return (prot_u8.float() - clean_u8.float()).flatten(1) / 255, labels


def linear_accuracy(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Train and held-out accuracy of a linear softmax classifier on ``x``."""
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(SEED))
    tr, te = perm[:TRAIN], perm[TRAIN:]
    w = torch.zeros(x.shape[1], int(y.max()) + 1, requires_grad=True)
    b = torch.zeros(w.shape[1], requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=LR)
    for _ in range(STEPS):
        opt.zero_grad()
        F.cross_entropy(x[tr] @ w + b, y[tr]).backward()
        opt.step()
    with torch.no_grad():
        return tuple(((x[i] @ w + b).argmax(1) == y[i]).float().mean().item() for i in (tr, te))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("clean", type=Path)
    ap.add_argument("protected", type=Path, nargs="+")
    args = ap.parse_args()
    results = {}
    for prot in args.protected:
        train_acc, held_out = linear_accuracy(*noise_matrix(args.clean, prot))
        results[prot.name] = {"train_acc": round(train_acc, 3), "held_out_acc": round(held_out, 3)}
        print(prot.name, results[prot.name], flush=True)
    OUT.write_text(json.dumps({"command": "python bench/noise_separability.py " + " ".join(
        str(p) for p in [args.clean, *args.protected]), "machine": platform.platform(),
        "setup": {"train": TRAIN, "adam_steps": STEPS, "lr": LR, "seed": SEED}, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
