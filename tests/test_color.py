"""``protect --color luma``: one change for R, G and B, within the exact bound."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from conftest import run_cli, save, small
from unlearnable_cli.protect.manifest import settings_differences
from unlearnable_cli.protect.protector import quantize


def test_a_shared_change_is_rounded_once_so_ties_cannot_split_the_channels() -> None:
    x = torch.tensor([10, 11, 12], dtype=torch.uint8).view(1, 3, 1, 1)
    out = quantize(x, torch.full((1, 1, 1, 1), 2.5 / 255), 8).int() - x.int()
    assert out.flatten().tolist() == [2, 2, 2]          # x + δ rounded per channel would give 12, 14, 14
    out = quantize(x, torch.full((1, 3, 1, 1), 9 / 255), 8).int() - x.int()
    assert out.flatten().tolist() == [8, 8, 8]          # the bound still clamps


def test_luma_changes_every_channel_alike_and_a_resume_may_not_switch(tmp_path: Path, tiny_weights: Path) -> None:
    save(small("astronaut"), tmp_path / "in" / "a.png")
    save(np.asarray(small("camera").convert("L")), tmp_path / "in" / "gray.png")
    out = tmp_path / "out"
    result = run_cli("protect", tmp_path / "in", "-o", out, "--weights", tiny_weights, "--color", "luma", "--quiet")
    assert result.exit_code == 0, result.output
    a = np.asarray(Image.open(tmp_path / "in" / "a.png")).astype(int)
    d = np.asarray(Image.open(out / "a.png")).astype(int) - a
    assert np.abs(d).max() == 8 and (d == d[..., :1]).all() and np.abs(d).mean() > 2
    g = np.asarray(Image.open(tmp_path / "in" / "gray.png")).astype(int)
    assert 0 < np.abs(np.asarray(Image.open(out / "gray.png")).astype(int) - g).max() <= 8
    (out / "a.png").unlink()
    result = run_cli("protect", tmp_path / "in", "-o", out, "--weights", tiny_weights, "--quiet")
    assert result.exit_code == 1 and "color: luma → rgb" in result.output, result.output


def test_manifests_from_before_a_setting_existed_resume_at_its_old_value() -> None:
    old = {"generator": {}, "settings": {"against": "recognizers", "cloak": {"steps": 20}}}
    new = {"generator": {}, "settings": {"against": "recognizers", "cloak": {"steps": 20},
                                         "cloak_objective": "target", "color": "rgb"}}
    assert settings_differences(old, new) == []
    new["settings"]["cloak_objective"] = "away"
    assert settings_differences(old, new) == ["cloak_objective: target → away"]


def test_a_strength_is_a_bundle_that_options_beside_it_override(tmp_path: Path, tiny_weights: Path) -> None:
    from unlearnable_cli.config import Budget, protect_config
    from unlearnable_cli.config.protect import STRENGTHS, Strength
    low = protect_config(strength=Strength.LOW)
    assert (low.budget, low.highpass) == (STRENGTHS[Strength.LOW].budget, STRENGTHS[Strength.LOW].highpass)
    assert low.strength_as_measured and low.budget is Budget.TEXTURE and low.highpass == 16
    mixed = protect_config(strength=Strength.LOW, highpass=0)
    assert mixed.budget is Budget.TEXTURE and mixed.highpass == 0 and not mixed.strength_as_measured
    assert protect_config().strength_as_measured            # the default level is the defaults
    save(small("astronaut"), tmp_path / "in" / "a.png")
    result = run_cli("protect", tmp_path / "in", "-o", tmp_path / "out", "--weights", tiny_weights,
                     "--strength", "low", "--highpass", "8")
    text = " ".join(result.output.split())
    assert result.exit_code == 0 and "Strength low, changed by your options" in text and "highpass 8" in text
