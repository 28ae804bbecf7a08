"""Probe (session 19): protect the 10k subset against a logit-averaging ensemble of generators."""
import sys, time
from pathlib import Path
import torch
from torch import nn
from unlearnable_cli.config import ProtectConfig
from unlearnable_cli.protect import protect_folder
from unlearnable_cli.weights import load_generator

class Ensemble(nn.Module):
    def __init__(self, models):
        super().__init__()
        self.members = nn.ModuleList(models)
    def forward(self, x):
        return torch.stack([m(x) for m in self.members]).mean(0)

out = Path(sys.argv[1]); steps = int(sys.argv[2]); paths = sys.argv[3:]
loaded = [load_generator(Path(p), "cpu") for p in paths]
card = loaded[0][1]
for _, c in loaded[1:]:
    assert c.class_names == card.class_names and tuple(c.input_size) == tuple(card.input_size)
model = Ensemble([m for m, _ in loaded])
cfg = ProtectConfig(steps=steps)
t = time.perf_counter()
s = protect_folder(Path("bench/work/cifar10-train-1000pc"), out, model, card, cfg, torch.device("cpu"))
print(f"processed {s.processed} skipped {s.skipped} worst_linf {s.worst_linf} "
      f"psnr {sum(s.psnr)/max(len(s.psnr),1):.2f} seconds {time.perf_counter()-t:.1f}")
