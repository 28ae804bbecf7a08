"""Cost of one generator-training step on this machine, as ratios measured in one run.

- SEM step vs the time of its (K_u*J + K_a + 1) raw passes at the same batch size B:
  K_u*J + K_a forward + input-gradient passes and one training pass (forward, full
  backward, SGD step), all at B.  Also against raw passes at the chunk sizes the
  engine actually feeds the model (whole draws, at most --max-forward images).
- SEM vs REM vs EM time per step at equal K's (EM: one update plus the K_u-step
  noise of one minibatch, no EOT, no δʳ, no adversarial step).

Usage:  python bench/train_speed.py [--ks 10 5 10] [--reps 3] [--out bench/results/train_speed.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from unlearnable_cli.config import Preset, train_config  # noqa: E402
from unlearnable_cli.data import ImageFolderData  # noqa: E402
from unlearnable_cli.noise import Method, NoiseConfig, draws_per_chunk  # noqa: E402
from unlearnable_cli.train import RunPaths, Trainer  # noqa: E402


def synthetic(n: int = 2560) -> ImageFolderData:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    return ImageFolderData(images, torch.arange(n) % 10, [str(c) for c in range(10)],
                           [Path(f"{i}.png") for i in range(n)], Path("synthetic"))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def raw_input_pass(model, n: int) -> float:
    x = torch.rand(n, 3, 32, 32).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    y = torch.randint(0, 10, (n,))
    model.eval()
    return timed(lambda: torch.autograd.grad(F.cross_entropy(model(x), y), x))


def raw_train_pass(model, opt, n: int) -> float:
    x = torch.rand(n, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (n,))
    model.train()

    def go() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return timed(go)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ks", type=int, nargs=3, default=[10, 5, 10], metavar=("K_U", "J", "K_A"))
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rem-reps", type=int, default=1)
    ap.add_argument("--max-forward", type=int, default=NoiseConfig.max_forward,
                    help="largest model batch inside the noise engine")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "train_speed.json")
    args = ap.parse_args()
    k_u, j, k_a = args.ks
    b = args.batch_size
    data = synthetic()
    times: dict[str, list[float]] = {"sem": [], "raw_equivalent": [], "raw_at_b": [], "rem": [], "em": []}
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {}
        for method in Method:
            cfg = train_config(Preset.CPU, method=method, width=args.width, batch_size=b, noise_steps=k_u,
                               eot_samples=j, adv_steps=k_a, val_fraction=0.0, steps=100)
            trainers[method] = t = Trainer(data, RunPaths(Path(tmp) / f"{method.value}.safetensors"), cfg,
                                           torch.device("cpu"), show_progress=False)
            t.engine.config = replace(t.engine.config, max_forward=args.max_forward)
        sem = trainers[Method.SEM]
        em = trainers[Method.EM]
        sem.sem_step()  # warm-up
        for rep in range(args.reps):
            times["sem"].append(timed(sem.sem_step))
            model, opt = sem.model, sem.opt
            chunk = draws_per_chunk(j, b, args.max_forward) * b
            sizes = [min(chunk, j * b - s) for s in range(0, j * b, chunk)]
            raw_b = raw_input_pass(model, b)
            train_b = raw_train_pass(model, opt, b)
            chunks = sum(raw_b if n == b else raw_input_pass(model, n) for n in sizes)
            times["raw_equivalent"].append(k_u * chunks + k_a * raw_b + train_b)
            times["raw_at_b"].append((k_u * j + k_a) * raw_b + train_b)

            def em_step() -> None:   # one update + the noise of one minibatch, as in EM's rounds
                idx = torch.arange(b)
                x = em.train.images[idx].float().div(255).contiguous(memory_format=torch.channels_last)
                y = em.train.labels[idx]
                em.engine(x, y, torch.Generator().manual_seed(rep))
                em._update(x, y)
            times["em"].append(timed(em_step))
            print(rep, {k: round(v[-1], 2) for k, v in times.items() if v}, flush=True)
        for rep in range(args.rem_reps):
            times["rem"].append(timed(trainers[Method.REM].sem_step))
            print("rem", round(times["rem"][-1], 2), flush=True)
    med = {k: statistics.median(v) for k, v in times.items() if v}
    report = {
        "command": "python bench/train_speed.py " + " ".join(sys.argv[1:]),
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__, "python": platform.python_version()},
        "setup": {"arch": f"resnet18 width {args.width}", "batch_size": b, "K_u": k_u, "J": j, "K_a": k_a,
                  "max_forward": args.max_forward},
        "seconds_per_step_median": {k: round(v, 3) for k, v in med.items()},
        "sem_vs_raw_at_b": round(med["sem"] / med["raw_at_b"], 3),
        "sem_vs_raw_at_engine_chunks": round(med["sem"] / med["raw_equivalent"], 3),
        "paired_sem_vs_raw_at_b": round(statistics.median(
            s / r for s, r in zip(times["sem"], times["raw_at_b"])), 3),
        "rem_over_sem": round(med["rem"] / med["sem"], 2) if "rem" in med else None,
        "sem_over_em": round(med["sem"] / med["em"], 2),
        "runs": {k: [round(x, 3) for x in v] for k, v in times.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
