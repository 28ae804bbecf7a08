"""Probe (session 19): protect the 10k subset with the shipped SEM generator but REM's
worst-case δʳ (PGD within ρ_r) at protect time instead of SEM's uniform δʳ."""
import sys, time
from pathlib import Path
import torch
from unlearnable_cli.config import ProtectConfig
from unlearnable_cli.protect import protect_folder
from unlearnable_cli.weights import load_generator

out, steps, eot, weights = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
model, card = load_generator(weights, "cpu")
card.method = "rem"
cfg = ProtectConfig(steps=steps, eot_samples=eot)
t = time.perf_counter()
s = protect_folder(Path("bench/work/cifar10-train-1000pc"), out, model, card, cfg, torch.device("cpu"))
print(f"processed {s.processed} skipped {s.skipped} worst_linf {s.worst_linf} "
      f"psnr {sum(s.psnr)/max(len(s.psnr),1):.2f} seconds {time.perf_counter()-t:.1f}")
