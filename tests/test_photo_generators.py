"""Generators for photos (issue 29): a 64-pixel generator trains, reloads and protects."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner

from unlearnable_cli.cli import app
from unlearnable_cli.imageio import read_image
from unlearnable_cli.models import build_model
from unlearnable_cli.weights import load_generator

from conftest import save, small, tinted_classes

runner = CliRunner()


def test_a_strided_stem_makes_64_pixels_cost_what_32_do():
    plain = build_model("resnet18", 10, width=4)
    strided = build_model("resnet18", 10, width=4, stem_stride=2)
    x = torch.rand(2, 3, 64, 64)
    assert strided(x).shape == plain(x).shape == (2, 10)
    feats = {}
    for name, model in (("plain", plain), ("strided", strided)):
        model.conv1.register_forward_hook(lambda m, i, o, name=name: feats.__setitem__(name, o.shape[-1]))
        model(x)
    assert feats == {"plain": 64, "strided": 32}


def test_a_64_pixel_generator_trains_reloads_and_protects_a_photo(tmp_path: Path):
    data = tinted_classes(tmp_path / "faces", ["ann", "bob"], 6, size=80)
    weights = tmp_path / "g64.safetensors"
    result = runner.invoke(app, ["train-generator", str(data), "-o", str(weights), "--image-size", "64",
                                 "--stem-stride", "2", "--width", "8", "--steps", "2", "--batch-size", "4",
                                 "--noise-steps", "1", "--eot-samples", "1", "--adv-steps", "1",
                                 "--val-fraction", "0", "--quiet"])
    assert result.exit_code == 0, result.output
    model, card = load_generator(weights)
    assert card.input_size == (64, 64) and card.arch_kwargs == {"width": 8, "stem_stride": 2}
    assert card.class_names == ["ann", "bob"]
    photo = save(small("astronaut", 150), tmp_path / "in" / "ann" / "me.jpg", quality=95)
    result = runner.invoke(app, ["protect", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights",
                                 str(weights), "--steps", "2", "--eot-samples", "2", "--quiet", "--verbose"])
    assert result.exit_code == 0, result.output
    assert "folder `ann` → pushed towards generator class" in result.output
    a = read_image(photo).pixels.astype(int)
    b = read_image(tmp_path / "out" / "ann" / "me.png").pixels.astype(int)
    assert a.shape == b.shape and 0 < np.abs(b - a).max() <= 8
