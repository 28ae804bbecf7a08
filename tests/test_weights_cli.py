"""Choosing a generator from the command line: shipped names, `unlearnable info` (its card
and its verification), and clear errors for files that are not generators."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unlearnable_cli.io.images import read_image
from unlearnable_cli.models import weights
from unlearnable_cli.models.weights import read_card

from conftest import FAST, run_cli, save, small


def test_info_prints_the_card(tiny_weights: Path, tmp_path: Path):
    result = run_cli("info", tiny_weights)
    assert result.exit_code == 0
    assert "convnet" in result.output and "airplane" in result.output and "32x32" in result.output
    as_json = json.loads(run_cli("info", tiny_weights, "--json").output)
    assert as_json["class_names"][3] == "cat"
    assert run_cli("info", tmp_path / "missing.safetensors").exit_code == 1


def test_info_verifies_the_file_and_lists_the_shipped_generators(tiny_weights: Path, tmp_path: Path):
    result = run_cli("info", tiny_weights)
    assert result.exit_code == 0 and "verified" in result.output
    assert "accuracy:" not in result.output            # its card records no training figures: none printed
    data = bytearray(tiny_weights.read_bytes())
    data[-10] ^= 0xFF                                   # one flipped byte in the tensors
    tampered = tmp_path / "tampered.safetensors"
    tampered.write_bytes(bytes(data))
    result = run_cli("info", tampered)
    assert result.exit_code == 1 and "does not match its recorded SHA-256" in result.output
    result = run_cli("info")
    assert result.exit_code == 0, result.output
    assert "shipped generators" in result.output and "cifar10 (default)" in result.output
    shipped = weights.read_card(weights.resolve_weights(None))
    assert f"{shipped.metrics['val_clean_acc']:.1%} on held-out clean images" in result.output
    assert "the generator learns the noise, not the images" in result.output.replace("\n", " ")


def test_a_pickle_renamed_safetensors_is_named_as_such(tmp_path: Path):
    pickled = tmp_path / "model.safetensors"
    torch.save({"w": torch.zeros(2)}, pickled)
    result = run_cli("info", pickled)
    assert result.exit_code == 1 and "looks like a PyTorch pickle" in result.output
    assert "refused for safety" in result.output


def test_bad_weights_file_is_a_clear_error(tmp_path: Path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00" * 64)
    save(small("coffee", 16), tmp_path / "in" / "a.png")
    result = run_cli("protect", tmp_path / "in", "--weights", bad, *FAST)
    assert result.exit_code == 1 and "broken.safetensors: not a readable safetensors file" in result.output


def test_missing_default_generator_says_to_pass_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("UNLEARNABLE_WEIGHTS", raising=False)
    monkeypatch.setattr(weights, "SHIPPED", {weights.DEFAULT_GENERATOR: "does-not-exist.safetensors"})
    save(small("coffee", 16), tmp_path / "in" / "a.png")
    result = run_cli("protect", tmp_path / "in", *FAST)
    assert result.exit_code == 1 and "pass --weights" in result.output


def test_unknown_generator_name_lists_the_shipped_ones(tmp_path: Path):
    save(small("coffee", 16), tmp_path / "in" / "a.png")
    result = run_cli("protect", tmp_path / "in", "--weights", "zebras", *FAST)
    assert result.exit_code == 1 and "shipped: cifar10" in result.output


def test_shipped_generator_card_says_cifar10_and_protects_a_photo(tmp_path: Path):
    card = read_card(weights.shipped_path("cifar10"))
    assert card.dataset["name"].startswith("cifar10/")
    save(small("coffee", 40), tmp_path / "in" / "a.jpg", quality=95)
    result = run_cli("protect", tmp_path / "in", "-o", tmp_path / "out", "--weights", "cifar10", *FAST)
    assert result.exit_code == 0, result.output
    original = read_image(tmp_path / "in" / "a.jpg").pixels.astype(int)
    protected = read_image(tmp_path / "out" / "a.png").pixels.astype(int)
    assert np.abs(protected - original).max() <= 8 and (protected != original).any()


def test_every_shipped_name_resolves_to_a_verified_generator():
    for name in weights.SHIPPED:
        model, card = weights.load_generator(weights.shipped_path(name))     # checks the tensors' SHA-256
        assert card.num_classes >= 2 and card.input_size[0] >= 32
    assert read_card(weights.shipped_path("faces")).input_size == (64, 64)

