"""Class-wise EM: one pattern per class, trained on a tiny set, applied by protect at any size."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from unlearnable_cli.commands.app import app
from unlearnable_cli.config import Interrupted, Method, Preset, train_config
from unlearnable_cli.commands.console import stop_requests
from unlearnable_cli.methods import classwise_em as classwise
from unlearnable_cli.methods.classwise_em import ClassWiseEM
from unlearnable_cli.train import train_generator
from unlearnable_cli.models.weights import WeightsError, load_generator_file

from conftest import interrupt_after, tinted_classes

runner = CliRunner()


def config(**kw):
    base = dict(method=Method.EM, class_wise=True, arch="convnet", width=4, steps=6, batch_size=8, noise_steps=3,
                em_train_steps=2, checkpoint_every=1, val_fraction=0.1, em_stop_accuracy=1.01)
    return train_config(Preset.CPU, **{**base, **kw})


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cw")
    data = tinted_classes(root / "data", ["red", "green", "blue"], 10)
    out = root / "cw.safetensors"
    train_generator(data, out, config(), torch.device("cpu"))
    return out


def test_patterns_are_saved_beside_the_model_and_verified(trained: Path, tmp_path: Path):
    g = load_generator_file(trained)
    patterns = g.extras[classwise.PATTERNS]
    assert patterns.shape == (3, 3, 32, 32) and patterns.abs().max() <= 8 / 255 + 1e-7
    assert g.card.hyperparameters["class_wise"] is True
    info = runner.invoke(app, ["info", str(trained)])
    assert info.exit_code == 0 and "one fixed pattern per class" in info.output
    raw = bytearray(trained.read_bytes())
    raw[-5] ^= 0xFF                                            # a flipped byte in the tensor data
    tampered = tmp_path / "tampered.safetensors"
    tampered.write_bytes(bytes(raw))
    with pytest.raises(WeightsError, match="SHA-256"):
        load_generator_file(tampered)


def test_pattern_updates_lower_the_loss_of_their_class():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    images = torch.full((6, 3, 8, 8), 128, dtype=torch.uint8)
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    start = torch.zeros(2, 3, 8, 8)

    def loss(p):
        x = (images.float() / 255 + p[labels]).clamp(0, 1)
        return torch.nn.functional.cross_entropy(model(x), labels).item()

    after = classwise.update_patterns(model, images, labels, start, 5, 1 / 255, 8 / 255, torch.device("cpu"))
    assert loss(after) < loss(start) and after.abs().max() <= 8 / 255 + 1e-7


def test_protect_adds_the_same_pattern_to_every_image_of_a_class(trained: Path, tmp_path: Path):
    rng = np.random.default_rng(0)
    src = tmp_path / "in"
    for folder in ("alice", "bob"):
        (src / folder).mkdir(parents=True)
        for i in range(3):                                      # mid-range values: nothing clips at 0 or 255
            Image.fromarray(rng.integers(40, 200, (32, 32, 3), dtype=np.uint8)).save(src / folder / f"{i}.png")
    Image.fromarray(rng.integers(0, 256, (45, 70, 3), dtype=np.uint8)).save(src / "alice" / "photo.png")
    out = tmp_path / "out"
    result = runner.invoke(app, ["protect", str(src), "-o", str(out), "--weights", str(trained), "--quiet"])
    assert result.exit_code == 0, result.output

    def change(rel: str) -> np.ndarray:
        return np.asarray(Image.open(out / rel)).astype(int) - np.asarray(Image.open(src / rel)).astype(int)

    for folder in ("alice", "bob"):
        first = change(f"{folder}/0.png")
        assert all(np.array_equal(change(f"{folder}/{i}.png"), first) for i in (1, 2))
        assert np.abs(first).max() == 8
    assert not np.array_equal(change("alice/0.png"), change("bob/0.png"))
    assert np.abs(change("alice/photo.png")).max() <= 8          # resized pattern, bound exact at another size


def test_optimization_options_are_refused_for_a_class_wise_file(trained: Path, tmp_path: Path):
    src = tinted_classes(tmp_path / "in", ["a"], 1)
    result = runner.invoke(app, ["protect", str(src), "-o", str(tmp_path / "out"), "--weights", str(trained),
                                 "--steps", "3", "--eot-scale", "0.5", "--quiet"])
    assert result.exit_code == 1 and "--steps, --eot-scale do not apply" in result.output
    assert not (tmp_path / "out").exists()


def test_class_wise_needs_em(tmp_path: Path):
    result = runner.invoke(app, ["train-generator", str(tmp_path), "-o", str(tmp_path / "x.safetensors"),
                                 "--method", "sem", "--class-wise"])
    assert result.exit_code == 1 and "--class-wise applies to --method em only" in result.output


def test_class_wise_resume_equals_uninterrupted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    data = tinted_classes(tmp_path / "data", ["red", "green"], 8)
    straight, resumed = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    train_generator(data, straight, config(), torch.device("cpu"))
    with interrupt_after((ClassWiseEM, "train_step"), 1, signal.SIGINT), stop_requests(graceful=True) as stop, \
            pytest.raises(Interrupted):
        train_generator(data, resumed, config(), torch.device("cpu"), should_stop=stop)
    train_generator(data, resumed, config(), torch.device("cpu"), resume=True)
    a, b = load_generator_file(straight), load_generator_file(resumed)
    assert a.digest == b.digest
