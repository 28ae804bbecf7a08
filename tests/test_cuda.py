"""The same promises on CUDA: the exact bound, same seed same bytes, CPU and CUDA agreeing.

Marked ``cuda`` and skipped, with the reason, where no CUDA device is present (CI, this
project's CPU machines); ``bench/gpu.sh`` runs them first on a lent GPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from unlearnable_cli.commands.app import app
from unlearnable_cli.config import NoiseConfig
from unlearnable_cli.engine.noise import ErrorMinimizingNoise
from unlearnable_cli.io.images import read_image
from unlearnable_cli.protect.protector import quantize

from conftest import save, small, tinted_classes, tiny_model

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)")]
CUDA = torch.device("cuda")
runner = CliRunner()


def noise_on(device: torch.device, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    model, _ = tiny_model()
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(6, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (6,), generator=g)
    engine = ErrorMinimizingNoise(model.to(device), NoiseConfig(steps=4, eot_samples=3, adv_steps=2))
    return x, engine(x.to(device), y.to(device), torch.Generator().manual_seed(seed)).cpu()


def test_the_bound_is_exact_after_8_bit_rounding_on_cuda():
    x, delta = noise_on(CUDA)
    x_u8 = (x * 255).round().to(torch.uint8)
    out = quantize(x_u8.to(CUDA), delta.to(CUDA), 8).cpu()
    assert (out.int() - x_u8.int()).abs().max() <= 8


def test_same_seed_same_noise_on_cuda():
    assert torch.equal(noise_on(CUDA, 3)[1], noise_on(CUDA, 3)[1])


def test_cpu_and_cuda_noise_agree_in_sign():
    _, cpu = noise_on(torch.device("cpu"))
    _, gpu = noise_on(CUDA)
    moved = (cpu.abs() > 1e-6) | (gpu.abs() > 1e-6)
    agree = (torch.sign(cpu) == torch.sign(gpu))[moved].float().mean().item()
    assert agree >= 0.99, f"CPU and CUDA noise agree in sign on {agree:.2%} of pixels"


def test_protect_end_to_end_on_cuda(tmp_path: Path, tiny_weights: Path):
    save(small("coffee", 48), tmp_path / "in" / "a.png")
    result = runner.invoke(app, ["protect", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights",
                                 str(tiny_weights), "--device", "cuda", "--steps", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    a = read_image(tmp_path / "in" / "a.png").pixels.astype(int)
    b = read_image(tmp_path / "out" / "a.png").pixels.astype(int)
    assert np.abs(a - b).max() <= 8 and (a != b).any()


def test_train_generator_three_steps_on_cuda(tmp_path: Path):
    data = tinted_classes(tmp_path / "data", ["red", "green"], 8)
    result = runner.invoke(app, ["train-generator", str(data), "-o", str(tmp_path / "g.safetensors"), "--arch",
                                 "convnet", "--width", "4", "--steps", "3", "--batch-size", "8", "--noise-steps", "2",
                                 "--eot-samples", "2", "--adv-steps", "2", "--device", "cuda", "--quiet"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "g.safetensors").exists()


def test_face_port_and_cloak_on_cuda():
    """dlib's architecture (random weights: the file needs the faces extra) gives the same
    descriptors on CUDA as on the CPU, and the cloak's gradient reaches the photo there."""
    from unlearnable_cli.config.protect import CloakConfig
    from unlearnable_cli.faces import DlibFaceNet
    from unlearnable_cli.faces.cloak import cloak
    torch.manual_seed(0)
    net = DlibFaceNet().eval()
    chips = torch.rand(4, 3, 150, 150)
    with torch.no_grad():
        cpu, gpu = net(chips), net.to(CUDA)(chips.to(CUDA)).cpu()
    assert torch.nn.functional.cosine_similarity(cpu, gpu).min() >= 0.9999
    marks = np.array([[140, 84], [123, 86], [79, 84], [96, 86], [109, 120]])
    photos = torch.rand(1, 3, 250, 250, device=CUDA)
    out = cloak(net, photos, torch.zeros_like(photos), [marks], torch.zeros(1, 128, dtype=torch.float64, device=CUDA),
                8 / 255, CloakConfig(steps=2, eot_samples=2), torch.Generator().manual_seed(0))
    assert out.device.type == "cuda" and 0 < out.abs().max() <= 8 / 255 + 1e-6


def test_nearest_neighbour_on_cuda():
    from unlearnable_cli.evaluate.recognizers import UNKNOWN, nearest
    enrolled = torch.tensor([[0.0, 0.0], [1.0, 0.0]], device=CUDA)
    probes = torch.tensor([[0.1, 0.0], [5.0, 5.0]], device=CUDA)
    assert nearest(enrolled, torch.tensor([3, 7]), probes, 0.6).tolist() == [3, UNKNOWN]
