"""Visibility: the low-frequency share of the noise, and the texture budget."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from unlearnable_cli.engine.budget import FLOOR, Budget, level_map, local_contrast
from unlearnable_cli.metrics import low_frequency_share, spectral_low_share

from conftest import small


def _with_noise(noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    original = torch.full((3, 64, 64), 128, dtype=torch.uint8)
    return original, (original.float() + noise).round().clamp(0, 255).to(torch.uint8)


def test_low_frequency_share_on_noise_of_known_frequency():
    g = torch.Generator().manual_seed(0)
    white = torch.randint(-8, 9, (3, 64, 64), generator=g).float()
    assert low_frequency_share(*_with_noise(white)) < 0.02                 # about 1/256
    assert low_frequency_share(*_with_noise(torch.full((3, 64, 64), 5.0))) == pytest.approx(1.0)
    x = torch.arange(64).float()
    slow = 8 * torch.sin(2 * math.pi * x / 64).expand(3, 64, 64)           # one period per image: bands
    fast = 8 * torch.sign(torch.sin(2 * math.pi * (x + 0.5) / 2)).expand(3, 64, 64)   # 2-pixel period
    # a 16-pixel block averages a quarter period: it keeps (sin(π/4) / (π/4))² = 0.81 of the energy
    assert low_frequency_share(*_with_noise(slow)) == pytest.approx((math.sin(math.pi / 4) / (math.pi / 4)) ** 2, abs=0.03)
    assert low_frequency_share(*_with_noise(fast)) < 0.01
    assert low_frequency_share(*_with_noise(torch.zeros(3, 64, 64))) == 0.0
    # the same noises by their spectrum: white about π/16², a one-period band all low, 2-pixel stripes none
    assert spectral_low_share(*_with_noise(white)) == pytest.approx(math.pi / 256, abs=0.01)
    assert spectral_low_share(*_with_noise(torch.full((3, 64, 64), 5.0))) == pytest.approx(1.0)
    assert spectral_low_share(*_with_noise(slow)) > 0.95
    assert spectral_low_share(*_with_noise(fast)) < 0.01
    assert spectral_low_share(*_with_noise(torch.zeros(3, 64, 64))) == 0.0


def test_texture_budget_is_small_on_flat_areas_and_full_on_texture():
    flat = torch.full((1, 3, 32, 32), 100, dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    busy = torch.randint(0, 256, (1, 3, 32, 32), generator=g, dtype=torch.uint8)
    assert level_map(flat, 8, Budget.UNIFORM) == 8
    assert torch.all(level_map(flat, 8, Budget.TEXTURE) == math.ceil(FLOOR * 8))
    assert torch.all(level_map(busy, 8, Budget.TEXTURE) == 8)
    photo = torch.from_numpy(np.array(small("astronaut", 64))).permute(2, 0, 1)[None]
    levels = level_map(photo, 8, Budget.TEXTURE)
    assert levels.shape == (1, 1, *photo.shape[-2:]) and levels.min() >= 2 and levels.max() <= 8
    assert (levels == 8).any() and (levels < 8).any()                       # a real photo has both
    assert torch.allclose(local_contrast(flat), torch.zeros(1, 1, 32, 32))


def test_protect_with_the_texture_budget_keeps_every_pixel_within_its_own_bound(tmp_path, tiny_weights):
    from PIL import Image
    from typer.testing import CliRunner

    from unlearnable_cli.commands.app import app
    from unlearnable_cli.io.images import read_image
    rng = np.random.default_rng(0)
    arr = np.full((48, 64, 3), 170, np.uint8)                          # flat left half (a wall, the sky)
    arr[:, 32:] = rng.integers(0, 256, (48, 32, 3), dtype=np.uint8)     # textured right half
    (tmp_path / "in").mkdir()
    Image.fromarray(arr).save(tmp_path / "in" / "a.png")
    result = CliRunner().invoke(app, ["protect", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights",
                                      str(tiny_weights), "--budget", "texture", "--steps", "3", "--quiet"])
    assert result.exit_code == 0, result.output
    out = torch.from_numpy(read_image(tmp_path / "out" / "a.png").pixels.astype(np.int64)).permute(2, 0, 1)
    x = torch.from_numpy(arr.astype(np.int64)).permute(2, 0, 1)
    allowed = level_map(torch.from_numpy(arr).permute(2, 0, 1)[None], 8, Budget.TEXTURE)[0]
    change = (out - x).abs()
    assert torch.all(change <= allowed) and change.max() == 8
    assert change[:, :, :24].max() <= math.ceil(FLOOR * 8)            # far from the texture: the floor


def test_coarse_part_is_the_slow_structure_and_leaves_fine_noise_alone():
    from unlearnable_cli.engine.noise import coarse_part
    x = torch.arange(64).float()
    flat = torch.full((1, 3, 64, 64), 0.02)
    assert torch.allclose(coarse_part(flat, 16), flat)                     # a constant shift is all coarse
    wide = torch.arange(128).float()
    slow = 0.03 * torch.sin(2 * math.pi * wide / 128).expand(1, 3, 128, 128)   # one period per image: a band
    fast = 0.03 * torch.sign(torch.sin(2 * math.pi * (x + 0.5) / 4)).expand(1, 3, 64, 64)  # 4-pixel period
    assert (slow - coarse_part(slow, 16)).square().sum() < 0.05 * slow.square().sum()   # measured 0.017
    assert coarse_part(fast, 16).abs().max() < 1e-6                         # whole periods per block: mean 0
    tiny = torch.ones(1, 3, 8, 8)
    assert torch.all(coarse_part(tiny, 16) == 0)                            # smaller than a block: nothing removed


def test_protect_with_highpass_keeps_the_bound_and_moves_noise_energy_to_fine_scales(tmp_path, tiny_weights):
    from typer.testing import CliRunner

    from unlearnable_cli.commands.app import app
    from unlearnable_cli.io.images import read_image
    src = tmp_path / "in"
    src.mkdir()
    small("astronaut", 96).save(src / "a.png")
    shares = {}
    for hp in ("0", "16"):
        out = tmp_path / f"out{hp}"
        result = CliRunner().invoke(app, ["protect", str(src), "-o", str(out), "--weights", str(tiny_weights),
                                          "--steps", "4", "--highpass", hp, "--quiet"])
        assert result.exit_code == 0, result.output
        a = torch.from_numpy(read_image(src / "a.png").pixels).permute(2, 0, 1)
        b = torch.from_numpy(read_image(out / "a.png").pixels).permute(2, 0, 1)
        assert (a.int() - b.int()).abs().max() <= 8                        # the promise, after 8 bits
        shares[hp] = low_frequency_share(a, b)
    assert shares["16"] < 0.5 * shares["0"], shares
    result = CliRunner().invoke(app, ["protect", str(src), "-o", str(tmp_path / "bad"), "--weights",
                                      str(tiny_weights), "--highpass", "1", "--quiet"])
    assert result.exit_code == 1 and "--highpass must be 0 (off) or at least 2 pixels" in result.output
