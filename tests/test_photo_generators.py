"""Generators for photo sizes: a strided stem makes 64 pixels cost what 32 do, a 64-pixel
generator trains, reloads and protects a photo, and training on fine (high-pass) noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from typer.testing import CliRunner

from unlearnable_cli.commands.app import app
from unlearnable_cli.io.images import read_image
from unlearnable_cli.models.architectures import build_model
from unlearnable_cli.models.weights import load_generator

from conftest import save, small, tinted_classes, tiny_model

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


def test_a_generator_trains_on_fine_noise_with_highpass(tmp_path: Path):
    from unlearnable_cli.config import Preset, train_config
    from unlearnable_cli.engine.noise import ErrorMinimizingNoise, coarse_part
    cfg = train_config(Preset.CPU, highpass=8, image_size=32)
    assert cfg.noise_config().highpass == 8 and train_config(Preset.CPU).noise_config().highpass == 0
    model, _ = tiny_model()
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    coarse = {}
    for hp in (0, 8):
        delta = ErrorMinimizingNoise(model, train_config(Preset.CPU, highpass=hp).noise_config())(
            x, y, torch.Generator().manual_seed(0))
        coarse[hp] = (coarse_part(delta, 8).square().sum() / delta.square().sum()).item()
    assert coarse[8] < 0.5 * coarse[0], coarse             # the training noise is the fine kind
    data = tinted_classes(tmp_path / "d", ["ann", "bob"], 4)
    weights = tmp_path / "g.safetensors"
    tiny = ["--arch", "convnet", "--width", "4", "--steps", "1", "--batch-size", "4", "--noise-steps", "1",
            "--adv-steps", "1", "--val-fraction", "0", "--quiet"]
    result = runner.invoke(app, ["train-generator", str(data), "-o", str(weights), "--highpass", "8", *tiny])
    assert result.exit_code == 0, result.output
    assert load_generator(weights)[1].hyperparameters["highpass"] == 8
    for bad, message in ((["--highpass", "1"], "--highpass must be 0 (off) or at least 2 pixels"),
                         (["--highpass", "64"], "--highpass must not exceed --image-size"),
                         (["--method", "em", "--class-wise", "--highpass", "4"],
                          "--highpass does not apply to --class-wise patterns")):
        result = runner.invoke(app, ["train-generator", str(data), "-o", str(tmp_path / "x.safetensors"),
                                     *bad, *tiny])
        assert result.exit_code == 1 and message in result.output, result.output
