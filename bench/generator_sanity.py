"""Is the shipped generator's 0% held-out PGD accuracy a bug, or the expected shortcut?

The SEM surrogate only ever trains on t(x + δᵘ) + δᵃ, so it should be accurate and
robust (PGD at ρ_a) on *protected* images, and may be weak on clean ones. This measures
both on 500 random images of the efficacy benchmark's protected subset (run
`bench/efficacy.py --stage protect` first). Writes bench/results/generator_sanity.json.

Usage: python bench/generator_sanity.py [--images 500]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
from pathlib import Path

import torch

from unlearnable_cli.attacks import PGD
from unlearnable_cli.data import load_files
from unlearnable_cli.train import accuracy
from unlearnable_cli.weights import load_generator

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "weights" / "sem-resnet18w16-cifar10.safetensors"
SUBSET = ROOT / "bench" / "work" / "cifar10-train-1000pc"
PROTECTED = ROOT / "bench" / "work" / "protected-sem"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=500)
    args = parser.parse_args()
    model, _ = load_generator(WEIGHTS)
    records = json.loads((PROTECTED / "manifest.json").read_text())["images"]
    random.Random(0).shuffle(records)
    records = records[:args.images]
    labels = torch.tensor([r["class_index"] for r in records])
    cpu = torch.device("cpu")
    result: dict[str, object] = {"weights": WEIGHTS.name, "images": len(records),
                                 "attack": "PGD-10, eps 4/255, step 0.8/255, random start",
                                 "machine": platform.processor() or platform.machine(),
                                 "torch": torch.__version__}
    for name, folder, key in [("clean", SUBSET, "source"), ("protected", PROTECTED, "output")]:
        images = load_files([folder / r[key] for r in records])
        result[name] = {"acc": accuracy(model, images, labels, cpu),
                        "pgd_acc": accuracy(model, images, labels, cpu, attack=PGD(model))}
        print(name, result[name])
    out = ROOT / "bench" / "results" / "generator_sanity.json"
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
