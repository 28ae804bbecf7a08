"""PIL's noise against its own surrogate, by protect's step settings: does the paper's 30 x 0.8
(against protect's default 10 x 1.6) change the noise?

On 500 images of the efficacy subset (50 per class) with a PIL generator, for each setting:
the surrogate's accuracy on x + δ, its mean entropy there (log 10 = 2.30 is uniform), how
often −δ alone is classified as the image's class (the shortcut), and the share of values
at the bound.  Recorded in ``results/efficacy.json`` as ``pil-steps``.

    python bench/pil_steps.py --weights bench/work/pil-cifar10-s0.safetensors
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common import WORK, record

SETTINGS = [(10, 1.6), (30, 0.8), (100, 0.8)]     # (steps, step size in levels)


def main() -> None:
    from unlearnable_cli.config import NoiseConfig, Perturbation, TransformSpec
    from unlearnable_cli.methods.pil import LinearNoise
    from unlearnable_cli.models.weights import load_generator_file
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", type=Path, required=True)
    args = ap.parse_args()
    gen = load_generator_file(args.weights)
    model = gen.model.eval()
    src = WORK / "cifar10-train-1000pc"
    files = [(ci, f) for ci, c in enumerate(gen.card.class_names) for f in sorted((src / c).iterdir())[:50]]
    x = torch.tensor(np.stack([np.asarray(Image.open(f).convert("RGB")) for _, f in files])).permute(0, 3, 1, 2) / 255
    y = torch.tensor([ci for ci, _ in files])
    rows = []
    for steps, size in SETTINGS:
        cfg = NoiseConfig(perturbation=Perturbation.NONE, steps=steps, step_size=size / 255, eot_samples=1,
                          random_radius=0.0, transform=TransformSpec.identity())
        d = LinearNoise(model, cfg, tuple(gen.card.input_size), 0.9)(x.float(), y, torch.Generator().manual_seed(0))
        with torch.no_grad():
            p = model(x + d).softmax(1)
            rows.append({"steps": steps, "step_levels": size,
                         "surrogate_acc_protected": float((p.argmax(1) == y).float().mean()),
                         "entropy_protected": round(float(-(p * p.log()).sum(1).mean()), 3),
                         "shortcut_acc": float((model(-d).argmax(1) == y).float().mean()),
                         "share_at_bound": round(float(((d.abs() * 255) > 7.9).float().mean()), 4)})
        print(rows[-1])
    with torch.no_grad():
        p = model(x).softmax(1)
    record("efficacy", "pil-steps", {"weights": str(args.weights), "images": len(y), "settings": rows,
                                     "surrogate_acc_clean": float((p.argmax(1) == y).float().mean()),
                                     "entropy_clean": round(float(-(p * p.log()).sum(1).mean()), 3)},
           command=f"python bench/pil_steps.py --weights {args.weights}")


if __name__ == "__main__":
    main()
