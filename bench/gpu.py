"""The stages of ``bench/gpu.sh``, each writing ``results/gpu-<stage>.json`` through the harness.

    python bench/gpu.py pack                       # here: the 10k efficacy subset as one array
    python bench/gpu.py tests   --device cuda      # 1. the suite's cuda-marked tests
    python bench/gpu.py speed   --device cuda      # 2. the engine against raw passes; one paper SEM step
    python bench/gpu.py train   --device cuda --seconds 300   # 3. a paper-size SEM generator
    (``--toy``: tiny sizes, for the dry run on a CPU)

``train`` unpacks the array into an image folder, runs the real ``train-generator
--preset paper`` under a time limit (SIGTERM makes it save a checkpoint and stop),
exports the generator from the checkpoint, and splits it into parts under 16 MiB for
the way back (``cat g.safetensors.part-* > g.safetensors`` joins them).  Each stage
records what it has as soon as it has it, so a stage cut short still returns its figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from common import ROOT, WORK, record
from subsets import cifar_per_class

if TYPE_CHECKING:
    import torch

PACK = WORK / "gpu" / "cifar10-10k.npz"
#: Parts the exported generator is split into on the way back (the device returns files of at most 16 MiB).
PART_BYTES = 15 * 1024 * 1024
#: H100 SXM dense peaks (TFLOP/s) the achieved rate is compared with; fp32 without tensor cores, tf32 with.
PEAK_TFLOPS = {"fp32": 67.0, "tf32": 495.0}


def out_dir() -> Path:
    """``$OUT`` on the device machine (what comes back), else ``bench/work/gpu/out``."""
    path = Path(os.environ.get("OUT") or WORK / "gpu" / "out")
    path.mkdir(parents=True, exist_ok=True)
    return path


def save(stage: str, results: dict[str, object], key: str) -> None:
    """Record ``results`` under ``key`` (device, and "toy" for a dry run) in ``results/gpu-<stage>.json``
    and copy the file to :func:`out_dir`."""
    data = record(f"gpu-{stage}", key, results)
    (out_dir() / f"gpu-{stage}.json").write_text(json.dumps(data, indent=1) + "\n")


def pack(per_class: int) -> None:
    """The first ``per_class`` CIFAR-10 training images per class as one uint8 array (decoded JPEG pixels)."""
    import numpy as np
    from PIL import Image
    files = cifar_per_class("train", per_class)
    names = sorted(files)
    images = np.stack([np.asarray(Image.open(f).convert("RGB")) for c in names for f in files[c]])
    labels = np.array([i for i, c in enumerate(names) for _ in files[c]], dtype=np.uint8)
    PACK.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(PACK, images=images, labels=labels, classes=np.array(names))
    print(f"{PACK}: {images.shape}, {PACK.stat().st_size / 2**20:.1f} MiB")


def unpack(dest: Path, limit: int | None) -> Path:
    """The packed array as an image folder (PNG, lossless: the same pixels); ``limit`` per class for toys."""
    import numpy as np
    from PIL import Image
    data = np.load(PACK)
    shutil.rmtree(dest, ignore_errors=True)
    counts: dict[int, int] = {}
    for i, (img, label) in enumerate(zip(data["images"], data["labels"])):
        counts[int(label)] = counts.get(int(label), 0) + 1
        if limit is not None and counts[int(label)] > limit:
            continue
        folder = dest / str(data["classes"][label])
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:05d}.png")
    return dest


def tests(device: str) -> None:
    """Stage 1: the cuda-marked tests, their outcome counted from pytest's summary line."""
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-m", "cuda", "-p", "no:cacheprovider",
                          "tests/test_cuda.py"], cwd=ROOT, capture_output=True, text=True)
    tail = (run.stdout + run.stderr).strip().splitlines()[-12:]
    save("tests", key=device, results={"device": device, "exit_code": run.returncode, "summary": tail[-1] if tail else "",
                   "output_tail": tail, "seconds": round(time.perf_counter() - start, 1)})
    print("\n".join(tail))


def speed(device: str, toy: bool) -> None:
    """Stage 2: the noise engine's rate against raw forward + input-gradient passes of the same
    model and batch (target >= 0.95), one SEM step at the paper's K's, achieved TFLOP/s."""
    import torch
    from unlearnable_cli.config import NoiseConfig
    from unlearnable_cli.engine.noise import ErrorMinimizingNoise
    from unlearnable_cli.models import build_model
    dev = torch.device(device)
    width, batch, reps = (4, 8, 2) if toy else (64, 128, 5)
    model = build_model("resnet18", 10, width=width).to(dev, memory_format=torch.channels_last).eval()
    x, y = torch.rand(batch, 3, 32, 32, device=dev), torch.randint(0, 10, (batch,), device=dev)
    cfg = NoiseConfig(steps=10, eot_samples=5, max_forward=10 ** 9)
    engine = ErrorMinimizingNoise(model, cfg)

    def timed(fn) -> float:  # type: ignore[no-untyped-def]
        fn()                                  # warm-up
        sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
        sync()
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t)
        return sorted(times)[len(times) // 2]

    def raw() -> None:                        # the same K_u x J forward + input-gradient passes
        xj = x.repeat(cfg.eot_samples, 1, 1, 1)
        for _ in range(cfg.steps):
            xi = xj.clone().requires_grad_(True)
            torch.autograd.grad(torch.nn.functional.cross_entropy(model(xi), y.repeat(cfg.eot_samples)), xi)

    t_engine, t_raw = timed(lambda: engine(x, y, torch.Generator().manual_seed(0))), timed(raw)
    flops = 3 * forward_flops(model, x) * cfg.steps * cfg.eot_samples      # forward + two backward products
    results = {"device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu", "width": width,
               "batch": batch, "noise_steps": cfg.steps, "eot_samples": cfg.eot_samples,
               "engine_s": round(t_engine, 4), "raw_s": round(t_raw, 4), "engine_vs_raw": round(t_raw / t_engine, 3),
               "target": 0.95, "raw_tflops": round(flops / t_raw / 1e12, 3), "peak_tflops": PEAK_TFLOPS,
               "note": "one SEM step at the paper's K's: stage 3's steps per second (train-generator --preset paper)"}
    save("speed", results, f"{device}{' toy' if toy else ''}")
    print(json.dumps(results, indent=1))


def forward_flops(model: "torch.nn.Module", x: "torch.Tensor") -> float:
    """Multiply-adds x 2 of one forward pass over ``x``, counted on its convolutions and linear layers."""
    import torch
    total = [0.0]

    def hook(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        w = module.weight
        per_output = w[0].numel()                  # in/groups x kh x kw (conv) or in (linear)
        total[0] += 2.0 * out.numel() * per_output

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return total[0]


def train(device: str, toy: bool, seconds: float) -> None:
    """Stage 3: ``train-generator --preset paper`` for ``seconds``, then export and split."""
    work = WORK / "gpu"
    data = unpack(work / "cifar10k", 4 if toy else None)
    out = work / "sem-paper.safetensors"
    for stale in (out, out.with_suffix(".ckpt.safetensors"), out.with_suffix(".log.jsonl")):
        stale.unlink(missing_ok=True)
    size = ["--width", "4", "--steps", "200", "--batch-size", "8", "--noise-steps", "2", "--eot-samples", "2",
            "--adv-steps", "2", "--checkpoint-every", "5"] if toy else ["--checkpoint-every", "200"]
    cmd = [sys.executable, "-m", "unlearnable_cli", "train-generator", str(data), "-o", str(out), "--preset",
           "paper", "--device", device, "--quiet", *size]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT)
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)      # a graceful stop: the checkpoint is saved at the step's end
        proc.wait()
    wall = time.perf_counter() - start
    steps = [json.loads(line) for line in out.with_suffix(".log.jsonl").read_text().splitlines()] \
        if out.with_suffix(".log.jsonl").exists() else []
    results: dict[str, object] = {"command": " ".join(cmd[1:]), "exit_code": proc.returncode, "wall_s": round(wall, 1),
                                  "finished": out.exists()}
    if steps:
        last = [s for s in steps if "elapsed" in s][-1]
        total = 200 if toy else 5000
        results.update(steps_done=last["step"], train_s=last["elapsed"],
                       steps_per_s=round(last["step"] / last["elapsed"], 4),
                       full_run_hours=round(total / (last["step"] / last["elapsed"]) / 3600, 2), last=last)
    key = f"{device}{' toy' if toy else ''}"
    save("train", results, key)
    if not out.exists() and out.with_suffix(".ckpt.safetensors").exists():
        subprocess.run([*cmd, "--export-checkpoint"], cwd=ROOT, check=False)
    if out.exists():
        blob, parts = out.read_bytes(), []
        for k in range(0, len(blob), PART_BYTES):
            part = out_dir() / f"{out.name}.part-{k // PART_BYTES}"
            part.write_bytes(blob[k:k + PART_BYTES])
            parts.append(part.name)
        results["parts"] = parts
        save("train", results, key)
    print(json.dumps(results, indent=1))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("stage", choices=["pack", "tests", "speed", "train"])
    p.add_argument("--device", default="cuda")
    p.add_argument("--toy", action="store_true", help="tiny sizes: the dry run on a CPU")
    p.add_argument("--seconds", type=float, default=300, help="train: stop after this long")
    p.add_argument("--per-class", type=int, default=1000, help="pack: images per class (1,000: the 10k subset)")
    args = p.parse_args()
    if args.stage == "pack":
        pack(args.per_class)
    elif args.stage == "tests":
        tests(args.device)
    elif args.stage == "speed":
        speed(args.device, args.toy)
    else:
        train(args.device, args.toy, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
