"""What the commands say: `--help` in plain words, protect's summary (the bound, what the
noise is not, sizes, which class each folder was pushed towards) and its progress."""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from unlearnable_cli.models.weights import load_generator

from conftest import FAST, run_cli, save, small


def test_help_lists_protect_first_and_shows_no_python_types():
    result = run_cli("--help")
    assert result.exit_code == 0
    commands = re.findall(r"│ (protect|info|eval|train-generator) ", result.output)
    assert commands[0] == "protect", commands
    for command in ("protect", "info", "eval", "train-generator"):
        text = run_cli(command, "--help").output
        assert "<bool>" not in text and "<list" not in text, command


def test_plain_summary_and_class_mapping_with_verbose(tmp_path: Path, tiny_weights: Path):
    save(small("coffee", 40), tmp_path / "in" / "cats" / "a.jpg", quality=90)
    save(small("rocket", 40), tmp_path / "in" / "dogs" / "b.jpg", quality=90)
    out = tmp_path / "out"
    result = run_cli("protect", tmp_path / "in", "-o", out, "--weights", tiny_weights, *FAST)
    text = result.output.replace("\n", " ")
    assert result.exit_code == 0, result.output
    assert "Protected 2 image(s)" in text and "at most 8 of 255 levels" in text
    assert "not hidden, encrypted or watermarked" in text
    assert re.search(r"The outputs take [\d.]+ KB as PNG \([\d.]+x the", text)
    manifest = json.loads((out / "manifest.json").read_text())
    cats = next(r["class"] for r in manifest["images"] if r["source"] == "cats/a.jpg")
    assert f"folder `cats` → pushed towards generator class `{cats}`" in result.output   # 2 folders: named
    assert "Any distinct class per folder works" in text and "to a person the photos do not look like it" in text
    for i in range(2):                                        # 4 folders: counted, named with --verbose
        save(small("coffee", 40), tmp_path / "in" / f"more{i}" / "c.jpg", quality=90)
    result = run_cli("protect", tmp_path / "in", "-o", tmp_path / "out2", "--weights", tiny_weights, *FAST)
    assert "The 4 folders were each pushed towards one of the generator's classes" in result.output.replace("\n", " ")
    assert "folder `cats`" not in result.output
    result = run_cli("protect", tmp_path / "in", "-o", tmp_path / "out3", "--weights", tiny_weights, *FAST, "--verbose")
    assert "folder `more1` → pushed towards generator class" in result.output


def test_progress_moves_within_a_batch(tmp_path: Path, tiny_weights: Path):
    from unlearnable_cli.config import ProtectConfig
    from unlearnable_cli.protect.job import protect_folder
    for i in range(3):
        save(small("coffee", 24), tmp_path / "in" / f"{i}.png")        # one batch of three
    model, card = load_generator(tiny_weights)
    calls: list[tuple[str, float, int]] = []
    protect_folder(tmp_path / "in", tmp_path / "out", model, card, ProtectConfig(steps=4, eot_samples=1),
                   torch.device("cpu"), progress=lambda phase, n, total: calls.append((phase, n, total)))
    protect = [n for phase, n, total in calls if phase == "protect"]
    assert [n for phase, n, _ in calls if phase == "read"] == [0, 1, 2]
    assert protect == [0, 0.75, 1.5, 2.25, 3.0, 3], protect       # per noise step, not only per batch

