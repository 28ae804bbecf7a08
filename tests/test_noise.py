"""The shared noise engine (SEM / REM / EM), the PGD attack and the exact 8-bit bound."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from unlearnable_cli.engine.attacks import PGD
from unlearnable_cli.engine.noise import ErrorMinimizingNoise, NoiseConfig, Perturbation, ball_bounds, draws_per_chunk
from unlearnable_cli.engine.transforms import TransformSpec
from unlearnable_cli.protect.job import quantize

from conftest import tiny_model


def loss(model, x, y):
    with torch.no_grad():
        return F.cross_entropy(model(x), y).item()


@pytest.mark.parametrize("perturbation", list(Perturbation))
def test_noise_lowers_the_loss_and_respects_the_ball(perturbation):
    model, _ = tiny_model()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (8,), generator=g)
    cfg = NoiseConfig(perturbation=perturbation, steps=5, eot_samples=2, adv_steps=2)
    delta = ErrorMinimizingNoise(model, cfg)(x, y, g)
    assert delta.shape == x.shape
    assert delta.abs().max() <= cfg.radius + 1e-6
    assert ((x + delta) >= 0).all() and ((x + delta) <= 1).all()
    before, after = loss(model, x, y), loss(model, x + delta, y)
    random_noise = loss(model, (x + (torch.rand(x.shape, generator=g) * 2 - 1) * cfg.radius).clamp(0, 1), y)
    assert after < 0.7 * before, f"{perturbation}: loss {before:.3f} -> {after:.3f}"
    assert after < 0.7 * random_noise, "no better than random noise of the same size"


def test_noise_works_at_full_resolution_and_for_grayscale():
    model, _ = tiny_model()
    g = torch.Generator().manual_seed(1)
    gray = torch.rand(2, 1, 70, 90, generator=g).expand(-1, 3, -1, -1)
    y = torch.tensor([3, 7])
    engine = ErrorMinimizingNoise(model, NoiseConfig(steps=4, eot_samples=3))
    delta = engine(gray, y, g, shared_channels=True)
    assert delta.shape == (2, 1, 70, 90)
    assert delta.abs().max() <= 8 / 255 + 1e-6
    small = F.interpolate(gray, size=(32, 32), mode="bilinear", antialias=True)
    small_after = F.interpolate(gray + delta, size=(32, 32), mode="bilinear", antialias=True)
    assert loss(model, small_after, y) < loss(model, small, y)


def test_same_seed_same_noise_other_seed_other_noise():
    model, _ = tiny_model()
    x = torch.rand(4, 3, 32, 32)
    y = torch.arange(4)
    engine = ErrorMinimizingNoise(model, NoiseConfig(steps=2, eot_samples=2))
    a = engine(x, y, torch.Generator().manual_seed(5))
    b = engine(x, y, torch.Generator().manual_seed(5))
    c = engine(x, y, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_engine_restores_model_mode():
    model, _ = tiny_model()
    model.train()
    ErrorMinimizingNoise(model, NoiseConfig(steps=1, eot_samples=1))(torch.rand(2, 3, 32, 32), torch.zeros(2, dtype=torch.long))
    assert model.training


@pytest.mark.parametrize("radius", [1, 4, 8, 16])
def test_bound_holds_exactly_after_quantization(radius):
    g = torch.Generator().manual_seed(radius)
    for trial in range(20):
        x_u8 = torch.randint(0, 256, (4, 3, 17, 23), generator=g, dtype=torch.uint8)
        x_u8[0] = 0
        x_u8[1] = 255                      # saturated images: the [0, 1] clamp is active
        delta = (torch.rand(x_u8.shape, generator=g) * 2 - 1) * (radius + 0.49) / 255  # even slightly too large
        out = quantize(x_u8, delta, radius)
        diff = (out.int() - x_u8.int()).abs()
        assert diff.max() <= radius
        assert out.dtype == torch.uint8


def test_ball_bounds_clip_to_ball_and_valid_range():
    x = torch.tensor([0.0, 0.5, 0.95, 1.0])
    d = torch.clamp(torch.tensor([-0.5, 0.5, 0.5, -0.5]), *ball_bounds(x, 0.1))
    assert torch.allclose(d, torch.tensor([0.0, 0.1, 0.05, -0.1]))


def test_pgd_raises_the_loss_stays_in_ball_and_restores_mode():
    model, _ = tiny_model()
    model.train()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (8,), generator=g)
    adv = PGD(model, eps=4 / 255, alpha=1 / 255, steps=5)(x, y, g)
    assert model.training
    assert (adv - x).abs().max() <= 4 / 255 + 1e-6
    assert loss(model.eval(), adv, y) > loss(model, x, y)


def test_draws_are_chunked_in_whole_balanced_draws():
    assert draws_per_chunk(5, 128, 128) == 1          # five calls of 128
    assert draws_per_chunk(5, 32, 128) == 3           # 96 + 64, not 128 + 32
    assert draws_per_chunk(2, 128, 256) == 2          # one call of 256
    assert draws_per_chunk(5, 1, 128) == 5            # a single large photo: all draws at once
    assert draws_per_chunk(3, 500, 128) == 1          # a batch larger than the cap: one draw per call


def test_chunking_does_not_change_the_gradient_direction():
    model, _ = tiny_model()
    x, y = torch.rand(6, 3, 32, 32), torch.arange(6)
    cfg = NoiseConfig(perturbation=Perturbation.NONE, steps=3, eot_samples=4, transform=TransformSpec.identity())
    whole = ErrorMinimizingNoise(model, replace(cfg, max_forward=1000))(x, y, torch.Generator().manual_seed(0))
    parts = ErrorMinimizingNoise(model, replace(cfg, max_forward=6))(x, y, torch.Generator().manual_seed(0))
    assert torch.allclose(whole, parts, atol=1e-6)


def test_grayscale_draws_make_the_noise_luminance_only():
    """With every draw seen in grayscale, the gradient reaches each channel only through
    the luma, so from a zero start all three channels take the same steps."""
    model, _ = tiny_model()
    g = torch.Generator().manual_seed(0)
    x = 0.1 + 0.8 * torch.rand(4, 3, 32, 32, generator=g)          # no clipping at 0 or 1
    y = torch.randint(0, 10, (4,), generator=g)
    zero = torch.zeros_like(x)
    for p, same in ((1.0, True), (0.0, False)):
        cfg = NoiseConfig(steps=3, eot_samples=2, grayscale_draws=p)
        delta = ErrorMinimizingNoise(model, cfg)(x, y, torch.Generator().manual_seed(1), init=zero)
        assert delta.abs().max() > 0
        channels_equal = torch.equal(delta[:, 0], delta[:, 1]) and torch.equal(delta[:, 1], delta[:, 2])
        assert channels_equal == same, p
