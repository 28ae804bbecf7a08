"""PIL (``--method pil``): the linear surrogate, its noise objective, and a tiny generator end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_cli, straight_and_interrupted, tinted_classes
from unlearnable_cli.config import ConfigError, Method, NoiseConfig, Perturbation, Preset, TransformSpec, train_config
from unlearnable_cli.engine import transforms
from unlearnable_cli.methods.pil import PIL, LinearNoise
from unlearnable_cli.models.architectures import LinearClassifier
from unlearnable_cli.models.weights import load_generator_file
from unlearnable_cli.train import train_generator

TINY = dict(method=Method.PIL, steps=6, batch_size=8, checkpoint_every=1, val_fraction=0.1, lr=0.05)


def fitted_linear(classes: int = 3) -> tuple[LinearClassifier, torch.Tensor, torch.Tensor]:
    """A linear classifier fitted to tinted noise (class c: channel c raised), and its data."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(24) % classes
    x = torch.rand(24, 3, 16, 16, generator=g) * 0.5
    x[torch.arange(24), y] += 0.4
    model = LinearClassifier(classes, input_size=16)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(50):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval(), x, y


def test_the_noise_lowers_both_terms_within_the_bound_and_the_surrogate_is_linear() -> None:
    model, x, y = fitted_linear()
    cfg = NoiseConfig(perturbation=Perturbation.NONE, steps=10, eot_samples=1, random_radius=0.0,
                      transform=TransformSpec.identity())
    photos = torch.nn.functional.interpolate(x, size=(40, 40), mode="bilinear")      # photos larger than the input
    noise = LinearNoise(model, cfg, (16, 16), lam=0.9)
    params = transforms.identity_params(len(y), (40, 40), (16, 16))
    d = 0.05 * torch.randn(photos.shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():                                  # f(t(x + δ)) − f(t(x)) = f(t(δ)): what the CE term uses
        lhs = model(transforms.apply(photos + d, params)) - model(transforms.apply(photos, params))
        assert torch.allclose(lhs, model(transforms.apply(d, params)), atol=1e-4)
    delta = noise(photos, y, torch.Generator().manual_seed(2))
    assert delta.shape == photos.shape and delta.abs().max() <= 8 / 255 + 1e-7
    assert ((photos + delta) >= -1e-7).all() and ((photos + delta) <= 1 + 1e-7).all()
    ce, kl = LinearNoise(model, cfg, (16, 16), lam=1.0), LinearNoise(model, cfg, (16, 16), lam=0.0)
    zero = torch.zeros_like(photos)
    with torch.no_grad():                                  # each term, without noise and with it
        terms = [(t.loss(photos, zero, y, params), t.loss(photos, delta, y, params)) for t in (ce, kl)]
        shortcut = (-model(transforms.apply(delta, params))).argmax(1)
    assert terms[0][1] < 0.6 * terms[0][0] and terms[1][1] < 0.9 * terms[1][0], terms
    assert (shortcut == y).float().mean() == 1             # −δ alone is a linear shortcut to the label
    luma = noise(photos, y, torch.Generator().manual_seed(2), shared_channels=True)
    assert luma.shape == (len(y), 1, 40, 40) and ((photos + luma) >= -1e-7).all() and ((photos + luma) <= 1 + 1e-7).all()


def test_a_tiny_pil_generator_trains_reloads_and_protects_within_the_bound(tmp_path: Path) -> None:
    data = tinted_classes(tmp_path / "data", ["red", "green", "blue"], 10)
    out = tmp_path / "pil.safetensors"
    card = train_generator(data, out, train_config(Preset.CPU, **TINY), torch.device("cpu"))
    loaded = load_generator_file(out)
    assert loaded.card == card and card.method == "pil" and card.arch == "linear"
    assert card.arch_kwargs == {"input_size": 32} and card.hyperparameters["pil_lambda"] == 0.9
    assert "score_step" not in card.hyperparameters                   # another method's option
    info = run_cli("info", out)
    assert info.exit_code == 0 and "near chance is expected" in " ".join(info.output.split())
    rng = np.random.default_rng(0)
    src = tmp_path / "photos"
    for i in range(2):
        (src / "red").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (40 + i, 52, 3), dtype=np.uint8)).save(src / "red" / f"{i}.png")
    for color in ("rgb", "luma"):
        result = run_cli("protect", src, "-o", tmp_path / color, "--weights", out, "--color", color, "--quiet")
        assert result.exit_code == 0, result.output
        for i in range(2):
            a = np.asarray(Image.open(src / "red" / f"{i}.png")).astype(int)
            b = np.asarray(Image.open(tmp_path / color / "red" / f"{i}.png")).astype(int)
            assert np.abs(a - b).max() == 8
            shared = (b - a == (b - a)[..., :1]).all()
            assert shared == (color == "luma")
        assert json.loads((tmp_path / color / "manifest.json").read_text())["settings"]["color"] == color


def test_pil_resume_equals_uninterrupted(tmp_path: Path) -> None:
    data = tinted_classes(tmp_path / "data", ["red", "green"], 8)
    cfg = train_config(Preset.CPU, **TINY)
    straight, resumed = straight_and_interrupted(data, tmp_path, cfg, PIL, 3)
    train_generator(data, resumed, cfg, torch.device("cpu"), resume=True)
    assert load_generator_file(straight).digest == load_generator_file(resumed).digest


def test_pil_refuses_what_it_does_not_read(tmp_path: Path, tiny_weights: Path) -> None:
    with pytest.raises(ConfigError, match="linear surrogate; --arch convnet"):
        train_config(Preset.CPU, method=Method.PIL, arch="convnet")
    with pytest.raises(ConfigError, match="--pil-lambda: PIL's options"):
        train_config(Preset.CPU, method=Method.SEM, pil_lambda=0.5)
    with pytest.raises(ConfigError, match="--pil-lambda must be in"):
        train_config(Preset.CPU, method=Method.PIL, pil_lambda=1.5)
    data = tinted_classes(tmp_path / "data", ["a", "b"], 6)
    out = tmp_path / "pil.safetensors"
    train_generator(data, out, train_config(Preset.CPU, **TINY), torch.device("cpu"))
    result = run_cli("protect", data, "-o", tmp_path / "out", "--weights", out, "--random-radius", "2", "--quiet")
    assert result.exit_code == 1 and "--random-radius do not apply to a pil generator" in result.output
