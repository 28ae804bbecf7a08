"""Speed of one generator-training step against the passes it is made of.

One SEM (and, with ``--rem-steps``, REM) step runs K_u·J forward + input-gradient
passes for the noise, K_a for the adversarial example and one training pass, all at
batch B.  This benchmark times real steps of the public ``train_generator`` (its log
records the step timer every step) on synthetic 32x32 data, and right after each run
the same passes as raw model calls, so the ratio SEM / raw says what the training loop
adds (target <= 1.15).  Medians over the logged steps after the first (warm-up).

    python bench/train_speed.py [--ks 10 1 5] [--width 16] [--steps 6] [--rem-steps 3] [--tue-steps 6]
                                                      # -> results/train_speed.{json,md}
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from common import load, machine_line, record, table, write_markdown
from unlearnable_cli.config import Method, Preset, train_config
from unlearnable_cli.models.architectures import build_model
from unlearnable_cli.train import train_generator


def synthetic_folder(root: Path, size: int = 32, n: int = 1280) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / f"c{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return root


def step_seconds(data: Path, out: Path, method: Method, ks: list[int], width: int, batch: int, steps: int,
                 size: int = 32, stem_stride: int = 1) -> list[float]:
    """Per-step wall seconds of ``steps`` real training steps (the first dropped as warm-up).
    TUE's score estimator is trained for 2 steps only: its phase is not a step's cost."""
    k_u, j, k_a = ks
    cfg = train_config(Preset.CPU, method=method, width=width, batch_size=batch, noise_steps=k_u, eot_samples=j,
                       adv_steps=k_a, steps=steps, val_fraction=0.0, log_every=1, checkpoint_every=10 ** 6,
                       image_size=size, stem_stride=stem_stride,
                       **({"score_steps": 2} if method is Method.TUE else {}))
    train_generator(data, out, cfg, torch.device("cpu"), overwrite=True)
    elapsed = [json.loads(line)["elapsed"] for line in out.with_suffix(".log.jsonl").read_text().splitlines()
               if '"final"' not in line]
    return [b - a for a, b in zip(elapsed, elapsed[1:])]


def raw_seconds(width: int, ks: list[int], batch: int, reps: int = 3, size: int = 32, stem_stride: int = 1) -> float:
    """Median seconds of the step's passes as plain model calls: (K_u·J + K_a) input-gradient
    passes and one training pass, at batch ``batch``."""
    k_u, j, k_a = ks
    model = build_model("resnet18", 10, width=width, stem_stride=stem_stride).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.rand(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    times = []
    for _ in range(reps + 1):
        start = time.perf_counter()
        model.eval()
        for _ in range(k_u * j + k_a):
            xg = x.clone().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(model(xg), y), xg)
        model.train()
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ks", type=int, nargs=3, default=[10, 1, 5], metavar=("K_U", "J", "K_A"))
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--image-size", type=int, default=32, help="generator input size (64 and more for photos)")
    ap.add_argument("--stem-stride", type=int, default=1)
    ap.add_argument("--steps", type=int, default=6, help="SEM steps timed (the first is warm-up)")
    ap.add_argument("--rem-steps", type=int, default=0, help="REM steps timed (0: skip REM)")
    ap.add_argument("--tue-steps", type=int, default=0, help="TUE steps timed (0: skip TUE); J is 1 for TUE")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        size = args.image_size
        data = synthetic_folder(Path(tmp) / "data", size)
        sem = step_seconds(data, Path(tmp) / "sem.safetensors", Method.SEM, args.ks, args.width, args.batch_size,
                           args.steps, size, args.stem_stride)
        raw = raw_seconds(args.width, args.ks, args.batch_size, size=size, stem_stride=args.stem_stride)
        rem = (step_seconds(data, Path(tmp) / "rem.safetensors", Method.REM, args.ks, args.width, args.batch_size,
                            args.rem_steps, size, args.stem_stride) if args.rem_steps > 1 else [])
        tue = (step_seconds(data, Path(tmp) / "tue.safetensors", Method.TUE, args.ks, args.width, args.batch_size,
                            args.tue_steps, size, args.stem_stride) if args.tue_steps > 1 else [])
    results = {"setup": {"arch": f"resnet18 width {args.width}", "batch_size": args.batch_size,
                         "K_u": args.ks[0], "J": args.ks[1], "K_a": args.ks[2], "image_size": size,
                         "stem_stride": args.stem_stride},
               "seconds_per_step": {"sem": [round(t, 3) for t in sem], "rem": [round(t, 3) for t in rem],
                                    "tue": [round(t, 3) for t in tue]},
               "raw_seconds_median": round(raw, 3),
               "sem_vs_raw": round(statistics.median(sem) / raw, 3),
               "rem_over_sem": round(statistics.median(rem) / statistics.median(sem), 2) if rem else None,
               "tue_over_sem": round(statistics.median(tue) / statistics.median(sem), 2) if tue else None}
    k_u, j, k_a = args.ks
    record("train_speed", f"w{args.width}-k{k_u}-j{j}-ka{k_a}" + (f"-{size}px-b{args.batch_size}" if size != 32 else "") + (f"-stem{args.stem_stride}" if args.stem_stride != 1 else ""),
           results)
    summarize()


def summarize() -> None:
    rows = []
    for rec in load("train_speed")["records"]:
        r, s = rec["results"], rec["results"]["setup"]
        sem = r.get("sem_vs_raw", r.get("sem_vs_raw_at_b"))
        per_step = r.get("seconds_per_step_median", {}).get("sem") or statistics.median(r["seconds_per_step"]["sem"])
        stem = f", stem stride {s['stem_stride']}" if s.get("stem_stride", 1) != 1 else ""
        rows.append({"setup": f"{s['arch']}{stem}, {s.get('image_size', 32)} px, K {s['K_u']}/{s['J']}/{s['K_a']}, "
                              f"B {s['batch_size']}",
                     "sem": round(per_step, 2), "ratio": sem, "rem": r.get("rem_over_sem") or "—",
                     "tue": r.get("tue_over_sem") or "—",
                     "machine": machine_line(rec["environment"])})
    write_markdown("train_speed", "Generator training step", table(rows, [
        ("setup", "setup"), ("sem", "SEM s/step"), ("ratio", "SEM / raw passes"), ("rem", "REM / SEM"),
        ("tue", "TUE / SEM"), ("machine", "machine")]))


if __name__ == "__main__":
    main()
