"""TUE: the score estimator, the data-collapse term, and a tiny TUE generator end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from unlearnable_cli.commands.app import app
from unlearnable_cli.config import ConfigError, Method, NoiseConfig, Perturbation, Preset, train_config
from unlearnable_cli.engine.noise import ErrorMinimizingNoise
from unlearnable_cli.methods.tue import TUE
from unlearnable_cli.methods.score import ScoreConfig, held_out_loss, load_score, train_score
from unlearnable_cli.train import train_generator
from unlearnable_cli.models.weights import load_generator_file

from conftest import straight_and_interrupted, tinted_classes, tiny_model

runner = CliRunner()
TINY = dict(method=Method.TUE, arch="convnet", width=4, steps=4, batch_size=8, noise_steps=2, adv_steps=2,
            checkpoint_every=1, val_fraction=0.1, score_steps=40)


def tinted(n: int = 24, classes: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randint(0, 120, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
    x[torch.arange(n), y] += 120
    return x, y


@pytest.fixture(scope="module")
def score_model():
    x, y = tinted()
    model, figures = train_score(x, y, 3, ScoreConfig(steps=80, batch_size=16), torch.device("cpu"),
                                 held_out=tinted(12, seed=1))
    return model, figures


def test_score_matching_loss_decreases_on_held_out_images(score_model):
    model, figures = score_model
    assert figures["held_out_loss"] < figures["held_out_loss_before"] - 0.02
    assert figures["held_out_loss"] < 0.5                  # better than a zero score
    assert held_out_loss(model, *tinted(12, seed=1), torch.device("cpu")) == pytest.approx(figures["held_out_loss"], abs=1e-5)


def test_the_collapse_term_lowers_the_score_norm(score_model):
    score, _ = score_model
    generator, _ = tiny_model()
    x, y = tinted(8, seed=2)
    images = x.float() / 255

    def norm(score_step: float) -> float:
        cfg = NoiseConfig(perturbation=Perturbation.UNIFORM, steps=5, eot_samples=1, random_radius=0.0, score_step=score_step)
        delta = ErrorMinimizingNoise(generator, cfg, score_model=score)(images, y, torch.Generator().manual_seed(0))
        assert delta.abs().max() <= 8 / 255 + 1e-6
        with torch.no_grad():
            return score(images + delta, y).flatten(1).norm(dim=1).mean().item()

    assert norm(1.6 / 255) < norm(0.0)


def test_a_tiny_tue_generator_trains_reloads_and_protects_within_the_bound(tmp_path: Path):
    data = tinted_classes(tmp_path / "data", ["red", "green", "blue"], 10)
    out = tmp_path / "tue.safetensors"
    card = train_generator(data, out, train_config(Preset.CPU, **TINY), torch.device("cpu"))
    loaded = load_generator_file(out)
    assert loaded.card == card and card.method == "tue"
    assert any(k.startswith("score.") for k in loaded.extras)
    assert card.hyperparameters["score_step"] == pytest.approx(0.8 / 255)
    assert card.metrics["score"]["held_out_loss"] < card.metrics["score"]["held_out_loss_before"]
    assert load_score(out).class_names == ["blue", "green", "red"]          # a TUE file serves as --score-model
    info = runner.invoke(app, ["info", str(out)])
    assert info.exit_code == 0 and "held-out denoising loss" in info.output and "α_s 0.8" in info.output
    rng = np.random.default_rng(0)
    src = tmp_path / "photos"
    (src / "me").mkdir(parents=True)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (40 + i, 52, 3), dtype=np.uint8)).save(src / "me" / f"{i}.png")
    result = runner.invoke(app, ["protect", str(src), "-o", str(tmp_path / "out"), "--weights", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    for i in range(2):
        a = np.asarray(Image.open(src / "me" / f"{i}.png")).astype(int)
        b = np.asarray(Image.open(tmp_path / "out" / "me" / f"{i}.png")).astype(int)
        assert np.abs(a - b).max() == 8


def test_tue_options_are_refused_elsewhere(tiny_weights: Path, tmp_path: Path):
    with pytest.raises(ConfigError, match="--score-steps: TUE's options"):
        train_config(Preset.CPU, method=Method.SEM, score_steps=10)
    src = tinted_classes(tmp_path / "in", ["a"], 1)
    result = runner.invoke(app, ["protect", str(src), "-o", str(tmp_path / "out"), "--weights", str(tiny_weights),
                                 "--score-step", "1", "--quiet"])
    assert result.exit_code == 1 and "--score-step is TUE's data-collapse step" in result.output


def test_tue_resume_equals_uninterrupted_and_a_bad_score_file_is_named(tmp_path: Path, monkeypatch):
    data = tinted_classes(tmp_path / "data", ["red", "green"], 8)
    cfg = train_config(Preset.CPU, **TINY)
    straight, resumed = straight_and_interrupted(data, tmp_path, cfg, TUE, 2)
    score_file = resumed.with_suffix(".score.safetensors")
    good = score_file.read_bytes()
    score_file.write_bytes(good[:-7] + bytes(7))                          # corrupted
    with pytest.raises(ConfigError, match="score.safetensors.*SHA-256"):
        train_generator(data, resumed, cfg, torch.device("cpu"), resume=True)
    score_file.write_bytes(good)
    train_generator(data, resumed, cfg, torch.device("cpu"), resume=True)
    assert load_generator_file(straight).digest == load_generator_file(resumed).digest
