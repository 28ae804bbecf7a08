"""Probe (session 20): protect the 10k subset with a fraction of the EOT draws t_j seen in
grayscale (NoiseConfig.grayscale_draws), so the noise must also minimize the loss after a
trainer's grayscale conversion. Usage: grayscale_eot_probe.py OUT P WEIGHTS.

Only valid before `protect --eot-grayscale` existed (it ran so in s20b.sh): Protector now
passes grayscale_draws itself, which overrides the patched default. Use the option instead."""
import functools
import sys
import time
from pathlib import Path

import torch

from unlearnable_cli import protect
from unlearnable_cli.config import ProtectConfig
from unlearnable_cli.noise import NoiseConfig
from unlearnable_cli.weights import load_generator

out, p, weights = Path(sys.argv[1]), float(sys.argv[2]), Path(sys.argv[3])
protect.NoiseConfig = functools.partial(NoiseConfig, grayscale_draws=p)
model, card = load_generator(weights, "cpu")
t = time.perf_counter()
s = protect.protect_folder(Path("bench/work/cifar10-train-1000pc"), out, model, card, ProtectConfig(),
                           torch.device("cpu"))
print(f"processed {s.processed} skipped {s.skipped} worst_linf {s.worst_linf} "
      f"psnr {sum(s.psnr)/max(len(s.psnr),1):.2f} seconds {time.perf_counter()-t:.1f}")
