"""Speed of `protect` on this machine, as ratios measured within one run.

Measures, interleaved and repeated (medians reported):
- raw: forward + input-gradient backward of the generator on random 32x32 inputs,
  at the chunk sizes the engine feeds it (whole draws, <= 128 images: 96 + 64 for
  B=32, J=5) and at B (protect's --batch-size);
- engine: the noise engine on B 32x32 images (K_u steps, J draws), counted as
  B*K_u*J passes;
- official-style: the same SEM noise step written like the official code (loop
  over J, per-image crop/flip loop) as a reference;
- protect: the real `protect_folder` on CIFAR-10 test JPEGs from disk (decode,
  labels, noise, PNG writes, manifest), counted as images*K_u*J passes; raw at the
  engine's chunk sizes is measured before and after it in each repetition, and both
  are also reported per process-CPU-second (immune to the VM's steal);
- transforms: our batched resampling transform vs kornia's RandomCrop+Flip,
  forward+backward on the J*B batch;
- a 12-megapixel photo through the CLI: wall time and peak memory (separate process).

Usage:  python bench/protect_speed.py [--reps 5] [--images 1000]   # -> results/protect_speed.{json,md}
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

from common import ROOT, SHARED, load, machine_line, record, table, twelve_mp, write_markdown

sys.path.insert(0, str(ROOT))

from unlearnable_cli.engine import transforms
from unlearnable_cli.config import ProtectConfig
from unlearnable_cli.engine.noise import ErrorMinimizingNoise, NoiseConfig, draws_per_chunk
from unlearnable_cli.protect.job import protect_folder
from unlearnable_cli.models.weights import GeneratorCard, save_generator

CIFAR_TEST = SHARED / "cifar10" / "test"


def generator_model() -> tuple[torch.nn.Module, GeneratorCard]:
    """The shipped architecture (ResNet-18 width 16); speed does not depend on the weights."""
    card = GeneratorCard(arch="resnet18", arch_kwargs={"width": 16},
                         class_names=[d.name for d in sorted(CIFAR_TEST.iterdir())] if CIFAR_TEST.exists()
                         else [str(i) for i in range(10)],
                         hyperparameters={"adv_radius": 4 / 255})
    torch.manual_seed(0)
    return card.build().to(memory_format=torch.channels_last).eval(), card


class Timing(NamedTuple):
    """Wall and process-CPU seconds of one call.

    CPU seconds are immune to the VM taking the cores away (steal), which makes the
    wall-clock rate of short runs swing by up to 2x on this machine.
    """

    wall: float
    cpu: float


def timed(fn) -> Timing:
    """Wall and process-CPU seconds of ``fn()``."""
    start, cpu = time.perf_counter(), time.process_time()
    fn()
    return Timing(time.perf_counter() - start, time.process_time() - cpu)


def raw_pass(model: torch.nn.Module, n: int, reps: int) -> Timing:
    """Seconds for ``reps`` forward+input-backward passes of n images."""
    x = torch.rand(n, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (n,))

    def go() -> None:
        for _ in range(reps):
            xi = x.clone().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(model(xi), y), xi)
    return timed(go)


def official_style_step(model, x, y, cfg: NoiseConfig) -> torch.Tensor:
    """SEM noise as the official code writes it: loop over J, per-image transform loop."""
    import torchvision.transforms as T
    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()])
    delta = (torch.rand_like(x) * 2 - 1) * cfg.radius
    for _ in range(cfg.steps):
        delta.requires_grad_(True)
        grad = torch.zeros_like(x)
        for _ in range(cfg.eot_samples):
            xt = torch.stack([tf(xi) for xi in (x + delta)]).contiguous(memory_format=torch.channels_last)
            r = (torch.rand_like(xt) * 2 - 1) * cfg.random_radius
            loss = F.cross_entropy(model(xt + r), y)
            grad += torch.autograd.grad(loss, delta)[0]
        delta = (delta.detach() - cfg.step_size * grad.sign()).clamp(-cfg.radius, cfg.radius)
        delta = (x + delta).clamp(0, 1) - x
    return delta


def transform_overhead(n: int, reps: int) -> dict[str, float]:
    """Forward+backward seconds of one J*B transform: ours vs kornia."""
    import kornia.augmentation as K
    x = torch.rand(n, 3, 32, 32, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    aug = K.AugmentationSequential(K.RandomCrop((32, 32), padding=4), K.RandomHorizontalFlip())

    def ours() -> None:
        for _ in range(reps):
            p = transforms.sample_params(transforms.TransformSpec(), n, (32, 32), (32, 32), g)
            torch.autograd.grad(transforms.apply(x, p).sum(), x)

    def kornia() -> None:
        for _ in range(reps):
            torch.autograd.grad(aug(x).sum(), x)
    return {"ours_s": timed(ours).wall / reps, "kornia_s": timed(kornia).wall / reps}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--images", type=int, default=320, help="CIFAR test images for the end-to-end run")
    args = ap.parse_args()

    model, card = generator_model()
    cfg = ProtectConfig()
    b = cfg.batch_size
    noise_cfg = NoiseConfig(radius=cfg.radius, step_size=cfg.radius / 5, steps=cfg.steps, eot_samples=5,
                            random_radius=4 / 255)
    j, k = noise_cfg.eot_samples, noise_cfg.steps
    engine = ErrorMinimizingNoise(model, noise_cfg)
    x, y = torch.rand(b, 3, 32, 32), torch.randint(0, 10, (b,))
    chunk = draws_per_chunk(j, b, noise_cfg.max_forward) * b
    sizes = [min(chunk, j * b - s) for s in range(0, j * b, chunk)]
    results: dict[str, list[float]] = {"raw_chunks": [], "raw_b": [], "engine": [], "official": [], "protect": []}
    cpu_rates: dict[str, list[float]] = {}    # passes per process-CPU-second

    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        weights = tmp / "g.safetensors"
        save_generator(weights, model, card)
        subset = tmp / "cifar"
        if CIFAR_TEST.exists():
            per = max(1, args.images // 10)
            for d in sorted(CIFAR_TEST.iterdir()):
                (subset / d.name).mkdir(parents=True)
                for f in sorted(d.iterdir())[:per]:
                    (subset / d.name / f.name).symlink_to(f)
        raw_pass(model, j * b, 1)  # warm-up
        def raw_chunks() -> Timing:
            """Seconds of one engine call's worth of raw passes."""
            runs = [raw_pass(model, n, k) for n in sizes]
            return Timing(sum(t.wall for t in runs), sum(t.cpu for t in runs))

        for rep in range(args.reps):
            raw_before = raw_chunks()
            results["raw_b"].append(b * k * j / raw_pass(model, b, k * j).wall)
            results["engine"].append(b * k * j / timed(lambda: engine(x, y, torch.Generator().manual_seed(rep))).wall)
            results["official"].append(b * k * j / timed(lambda: official_style_step(model, x, y, noise_cfg)).wall)
            if CIFAR_TEST.exists():
                out = tmp / f"out{rep}"
                seconds, protect_cpu = timed(lambda: protect_folder(subset, out, model, card, cfg, torch.device("cpu")))
                n = len(list(out.rglob("*.png")))
                results["protect"].append(n * k * j / seconds)
                results.setdefault("protect_images_per_s", []).append(n / seconds)
            # raw measured before and after the long runs, so it spans the same time window
            raw_after = raw_chunks()
            results["raw_chunks"].append(2 * j * b * k / (raw_before.wall + raw_after.wall))
            cpu_rates.setdefault("raw_chunks", []).append(2 * j * b * k / (raw_before.cpu + raw_after.cpu))
            if CIFAR_TEST.exists():
                cpu_rates.setdefault("protect", []).append(n * k * j / protect_cpu)
            print(rep, {key: round(v[-1], 1) for key, v in results.items() if v}, flush=True)
        overhead = transform_overhead(j * b, 20)
        big = twelve_mp(weights, tmp)

    med = {key: statistics.median(v) for key, v in results.items() if v}
    ratios = {f"{name}_vs_raw_chunks": med[name] / med["raw_chunks"] for name in ("engine", "official", "protect") if name in med}
    ratios.update({f"{name}_vs_raw_b": med[name] / med["raw_b"] for name in ("engine", "official", "protect") if name in med})
    paired = {"engine_vs_raw_chunks": statistics.median(e / r for e, r in zip(results["engine"], results["raw_chunks"]))}
    if results["protect"]:
        paired["protect_vs_raw_chunks"] = statistics.median(p / r for p, r in zip(results["protect"], results["raw_chunks"]))
    report = {
        "setup": {"model": "resnet18 width 16 (channels_last)", "batch_size": b, "eot_samples": j,
                  "engine_chunks": sizes,
                  "steps": k, "image_size": 32, "end_to_end_images": args.images, "reps": args.reps},
        "passes_per_s_median": {key: round(v, 1) for key, v in med.items()},
        "ratios_of_medians": {key: round(v, 3) for key, v in ratios.items()},
        "paired_ratio_medians": {key: round(v, 3) for key, v in paired.items()},
        "runs": {key: [round(v, 1) for v in vals] for key, vals in results.items()},
        "cpu_time": {"passes_per_cpu_s": {key: [round(v, 1) for v in vals] for key, vals in cpu_rates.items()},
                     "paired_protect_vs_raw_chunks": round(statistics.median(
                         p / r for p, r in zip(cpu_rates.get("protect", []), cpu_rates["raw_chunks"])), 3)
                     if "protect" in cpu_rates else None},
        "transform_fwd_bwd_s": {key: round(v, 5) for key, v in overhead.items()},
        "photo_12mp": big,
        "max_rss_bench_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    record("protect_speed", "cpu-defaults", report)
    summarize()


def summarize() -> None:
    """protect_speed.md from the records."""
    rows = []
    for rec in load("protect_speed")["records"]:
        r = rec["results"]
        rows.append({"key": rec["key"], "machine": machine_line(rec["environment"]),
                     "protect_vs_raw": r["paired_ratio_medians"].get("protect_vs_raw_chunks", "—"),
                     "engine_vs_raw": r["paired_ratio_medians"]["engine_vs_raw_chunks"],
                     "images_per_s": round(r["passes_per_s_median"].get("protect_images_per_s", 0), 1) or "—",
                     "photo": f"{r['photo_12mp']['seconds']} s, +{r['photo_12mp']['extra_mib']} MiB"})
    write_markdown("protect_speed", "protect speed", table(rows, [
        ("key", "record"), ("machine", "machine"), ("protect_vs_raw", "protect / raw (paired median)"),
        ("engine_vs_raw", "engine / raw (paired)"), ("images_per_s", "32x32 images/s"),
        ("photo", "12 MP photo")]))


if __name__ == "__main__":
    main()
