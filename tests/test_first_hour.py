"""A user's first hour (issue 25): nothing finished is discarded, every message names
what the user knows, and the commands say in plain words what they did."""

from __future__ import annotations

import errno
import json
import re
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from unlearnable_cli.io import images as imageio
from unlearnable_cli.protect import manifest
from unlearnable_cli.models import weights
from unlearnable_cli.commands.app import app
from unlearnable_cli.io.datasets import match_folders
from unlearnable_cli.evaluate.scenarios import EvalReport, Run
from unlearnable_cli.io.images import read_image
from unlearnable_cli.evaluate.report import result_warnings
from unlearnable_cli.models.weights import load_generator, read_card

from conftest import interrupt_after, save, small, tinted_classes

runner = CliRunner()
FAST = ["--steps", "2", "--eot-samples", "2", "--quiet"]
TRAIN = ["--arch", "convnet", "--width", "4", "--steps", "2", "--batch-size", "8", "--noise-steps", "1",
         "--eot-samples", "1", "--adv-steps", "1", "--checkpoint-every", "1", "--quiet"]


def run(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return tinted_classes(tmp_path_factory.mktemp("toy") / "train", ["red", "green"], 8)


# --------------------------------------------------------------------------- train-generator
def test_train_generator_never_discards_a_checkpoint_or_a_finished_generator(dataset: Path, tmp_path: Path):
    out = tmp_path / "g.safetensors"
    ckpt = out.with_suffix(".ckpt.safetensors")
    assert run("train-generator", dataset, "-o", out, *TRAIN).exit_code == 0
    finished = out.read_bytes()
    # A finished generator is not replaced by the same command.
    result = run("train-generator", dataset, "-o", out, *TRAIN)
    assert result.exit_code == 1 and "a generator is already there" in result.output and "--overwrite" in result.output
    assert out.read_bytes() == finished
    # An unfinished run's checkpoint is not restarted over.
    out.unlink()
    kept = ckpt.read_bytes()
    result = run("train-generator", dataset, "-o", out, *TRAIN)
    assert result.exit_code == 1, result.output
    assert f"{ckpt}: an unfinished run's checkpoint (step 2 of 2)" in result.output.replace("\n", "")
    assert "--resume" in result.output and "--overwrite" in result.output
    assert ckpt.read_bytes() == kept and not out.exists()
    # --resume continues it; --overwrite starts over.
    assert run("train-generator", dataset, "-o", out, *TRAIN, "--resume").exit_code == 0
    result = run("train-generator", dataset, "-o", out, *TRAIN, "--overwrite", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert read_card(out).hyperparameters["seed"] == 1


def test_card_names_the_data_set_by_parent_and_folder(dataset: Path, tmp_path: Path):
    out = tmp_path / "g.safetensors"
    assert run("train-generator", dataset, "-o", out, *TRAIN).exit_code == 0
    assert read_card(out).dataset["name"] == f"{dataset.parent.name}/train"
    named = tmp_path / "named.safetensors"
    assert run("train-generator", dataset, "-o", named, *TRAIN, "--dataset-name", "toy colours").exit_code == 0
    assert read_card(named).dataset["name"] == "toy colours"


def test_shipped_generator_card_says_cifar10_and_protects_a_photo(tmp_path: Path):
    card = read_card(weights.shipped_path("cifar10"))
    assert card.dataset["name"].startswith("cifar10/")
    save(small("coffee", 40), tmp_path / "in" / "a.jpg", quality=95)
    result = run("protect", tmp_path / "in", "-o", tmp_path / "out", "--weights", "cifar10", *FAST)
    assert result.exit_code == 0, result.output
    original = read_image(tmp_path / "in" / "a.jpg").pixels.astype(int)
    protected = read_image(tmp_path / "out" / "a.png").pixels.astype(int)
    assert np.abs(protected - original).max() <= 8 and (protected != original).any()


# --------------------------------------------------------------------------- info
def test_info_verifies_the_file_and_lists_the_shipped_generators(tiny_weights: Path, tmp_path: Path):
    result = run("info", tiny_weights)
    assert result.exit_code == 0 and "verified" in result.output
    assert "accuracy:" not in result.output            # its card records no training figures: none printed
    data = bytearray(tiny_weights.read_bytes())
    data[-10] ^= 0xFF                                   # one flipped byte in the tensors
    tampered = tmp_path / "tampered.safetensors"
    tampered.write_bytes(bytes(data))
    result = run("info", tampered)
    assert result.exit_code == 1 and "does not match its recorded SHA-256" in result.output
    result = run("info")
    assert result.exit_code == 0, result.output
    assert "shipped generators" in result.output and "cifar10 (default)" in result.output
    shipped = weights.read_card(weights.resolve_weights(None))
    assert f"{shipped.metrics['val_clean_acc']:.1%} on held-out clean images" in result.output
    assert "the generator learns the noise, not the images" in result.output.replace("\n", " ")


def test_a_pickle_renamed_safetensors_is_named_as_such(tmp_path: Path):
    pickled = tmp_path / "model.safetensors"
    torch.save({"w": torch.zeros(2)}, pickled)
    result = run("info", pickled)
    assert result.exit_code == 1 and "looks like a PyTorch pickle" in result.output
    assert "refused for safety" in result.output


def test_unknown_generator_name_lists_the_shipped_ones(tmp_path: Path):
    save(small("coffee", 16), tmp_path / "in" / "a.png")
    result = run("protect", tmp_path / "in", "--weights", "zebras", *FAST)
    assert result.exit_code == 1 and "shipped: cifar10" in result.output


# --------------------------------------------------------------------------- protect
def test_linked_folders_are_followed_once_and_loops_do_not_hang(tmp_path: Path, tiny_weights: Path):
    src = tmp_path / "photos"
    elsewhere = tmp_path / "elsewhere" / "holiday"
    save(small("coffee", 16), src / "a.png")
    save(small("rocket", 16), elsewhere / "b.png")
    (src / "holiday").symlink_to(elsewhere, target_is_directory=True)
    (src / "again").symlink_to(src, target_is_directory=True)        # a cycle back to the top
    out = tmp_path / "out"
    result = run("protect", src, "-o", out, "--weights", tiny_weights, *FAST)
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["a.png", "holiday/b.png"]
    assert "1 linked folder(s) not entered" in result.output and "again" in result.output


def test_sigterm_stops_protect_with_a_message_and_resumes(tmp_path: Path, tiny_weights: Path,
                                                          monkeypatch: pytest.MonkeyPatch):
    src = tmp_path / "in"
    for i in range(3):
        save(small("coffee", 16 + i), src / f"{i}.png")               # three sizes: three batches
    with interrupt_after((manifest, "append_journal"), 1, signal.SIGTERM):  # after the first batch is kept
        result = run("protect", src, "-o", tmp_path / "out", "--weights", tiny_weights, *FAST)
    assert result.exit_code == 143 and "stopped:" in result.output and "rerun the same command" in result.output
    result = run("protect", src, "-o", tmp_path / "out", "--weights", tiny_weights, *FAST)
    assert result.exit_code == 0 and "Protected 2 image(s)" in result.output
    assert "(1 were already done and kept)" in result.output


def test_an_unwritable_output_names_the_output_not_its_temporary_file(tmp_path: Path, tiny_weights: Path,
                                                                      monkeypatch: pytest.MonkeyPatch):
    save(small("coffee", 16), tmp_path / "in" / "a.png")

    def read_only_folder(path, mode="r", *args, **kwargs):
        if "w" in mode and str(path).endswith(".tmp"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(imageio, "open", read_only_folder, raising=False)
    result = run("protect", tmp_path / "in", "-o", tmp_path / "out", "--weights", tiny_weights, *FAST)
    assert result.exit_code == 1
    assert f"{tmp_path / 'out' / 'a.png'}: Permission denied" in result.output.replace("\n", "")
    assert ".tmp" not in result.output


def test_plain_summary_and_class_mapping_with_verbose(tmp_path: Path, tiny_weights: Path):
    save(small("coffee", 40), tmp_path / "in" / "cats" / "a.jpg", quality=90)
    save(small("rocket", 40), tmp_path / "in" / "dogs" / "b.jpg", quality=90)
    out = tmp_path / "out"
    result = run("protect", tmp_path / "in", "-o", out, "--weights", tiny_weights, *FAST)
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
    result = run("protect", tmp_path / "in", "-o", tmp_path / "out2", "--weights", tiny_weights, *FAST)
    assert "The 4 folders were each pushed towards one of the generator's classes" in result.output.replace("\n", " ")
    assert "folder `cats`" not in result.output
    result = run("protect", tmp_path / "in", "-o", tmp_path / "out3", "--weights", tiny_weights, *FAST, "--verbose")
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


def test_preview_writes_side_by_side_sheets_and_nothing_else(tmp_path: Path, tiny_weights: Path):
    for i, name in enumerate(["coffee", "rocket", "chelsea"]):
        save(small(name, 32), tmp_path / "in" / f"{i}.png")
    result = run("protect", tmp_path / "in", "--weights", tiny_weights, "--preview", "2", *FAST)
    assert result.exit_code == 0, result.output
    out = tmp_path / "in-preview"
    sheets = sorted(p.name for p in out.iterdir())
    assert sheets == ["0.preview.png", "2.preview.png"]             # spread: first and last
    original = read_image(tmp_path / "in" / "0.png").pixels.astype(int)
    sheet = read_image(out / "0.preview.png").pixels.astype(int)
    h, w, _ = original.shape
    assert sheet.shape == (h, 3 * w + 16, 3)
    left, middle, right = sheet[:, :w], sheet[:, w + 8:2 * w + 8], sheet[:, 2 * w + 16:]
    assert np.array_equal(left, original)
    assert np.abs(middle - original).max() <= 8
    assert np.array_equal(right, np.clip(np.rint(128 + (middle - original) * 127 / 8), 0, 255))
    assert "Wrote 2 preview(s)" in result.output


def test_lossless_webp_keeps_the_bound_and_eval_pairs_it(tmp_path: Path, tiny_weights: Path):
    save(small("coffee", 48), tmp_path / "in" / "a.jpg", quality=95)
    save(small("camera", 48).convert("L"), tmp_path / "in" / "gray.png")
    out = tmp_path / "out"
    result = run("protect", tmp_path / "in", "-o", out, "--weights", tiny_weights, "--format", "webp", *FAST)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.webp")) == ["a.webp", "gray.webp"]
    for src, dst in (("a.jpg", "a.webp"), ("gray.png", "gray.webp")):
        a = read_image(tmp_path / "in" / src).pixels.astype(int)
        b = read_image(out / dst).pixels.astype(int)
        assert np.abs(b - a).max() <= 8                              # broadcasts gray against RGB
    pairs, only_clean, only_prot = match_folders(tmp_path / "in", out)
    assert len(pairs) == 2 and not only_clean and not only_prot
    # another format is another setting: refused, not mixed
    result = run("protect", tmp_path / "in", "-o", out, "--weights", tiny_weights, *FAST)
    assert result.exit_code == 1 and "format: webp → png" in result.output


def test_a_single_photo_can_be_protected(tmp_path: Path, tiny_weights: Path):
    photo = save(small("coffee", 40), tmp_path / "holiday" / "photo.jpg", quality=95)
    result = run("protect", photo, "--weights", tiny_weights, *FAST)
    assert result.exit_code == 0, result.output
    out = tmp_path / "holiday" / "photo-protected"
    assert (out / "photo.png").is_file() and (out / "manifest.json").is_file()
    result = run("protect", photo, "-o", tmp_path / "holiday", "--weights", tiny_weights, *FAST)
    assert result.exit_code == 1 and "the folder holding the input" in result.output


# --------------------------------------------------------------------------- help and eval
def test_help_lists_protect_first_and_shows_no_python_types():
    result = run("--help")
    assert result.exit_code == 0
    commands = re.findall(r"│ (protect|info|eval|train-generator) ", result.output)
    assert commands[0] == "protect", commands
    for command in ("protect", "info", "eval", "train-generator"):
        text = run(command, "--help").output
        assert "<bool>" not in text and "<list" not in text, command


def _report(clean: list[float], protected: list[float], n: int) -> EvalReport:
    runs = [Run("clean", "clean", 0.0, "none", clean, 1.0), Run("protected", "p", 0.0, "none", protected, 1.0)]
    return EvalReport({"test_images": n, "classes": list("abcdefghij")}, runs, {}, 1.0)


def test_eval_warns_when_the_baseline_did_not_learn_or_the_test_set_is_too_small():
    assert any("did not learn" in w for w in result_warnings(_report([10.0, 10.5], [9.0, 10.0], 1000)))
    assert any("barely learnt" in w for w in result_warnings(_report([10.0, 15.0], [9.0, 10.0], 1000)))
    small_set = result_warnings(_report([60.0, 70.0], [50.0, 55.0], 20))
    assert len(small_set) == 1 and "overlap" in small_set[0] and "20 images" in small_set[0]
    assert result_warnings(_report([60.0, 70.0], [10.0, 12.0], 1000)) == []


def _personal(recognized: float, false_alarms: float, n: int) -> EvalReport:
    extra = {"false_alarm_acc": false_alarms, "background_acc": 5.0}
    runs = [Run("clean", "clean", 0.0, "none", [recognized], 1.0, 0.0, extra),
            Run("protected", "p", 0.0, "none", [5.0], 1.0, 1.0, dict(extra))]
    return EvalReport({"scenario": "personal-folder", "target_heldout_images": n, "background_classes": 157},
                      runs, {}, 1.0)


def test_personal_eval_warns_when_the_victim_calls_everyone_the_user():
    """Recognizing 48% of the user's photos means nothing when 40% of everyone else's are
    called the user too; 90% against 2% false alarms is a working recognizer."""
    assert any("does not tell you apart" in w for w in result_warnings(_personal(47.6, 40.0, 21)))
    assert not any("does not tell you apart" in w for w in result_warnings(_personal(90.0, 2.0, 21)))


def test_every_shipped_name_resolves_to_a_verified_generator():
    for name in weights.SHIPPED:
        model, card = weights.load_generator(weights.shipped_path(name))     # checks the tensors' SHA-256
        assert card.num_classes >= 2 and card.input_size[0] >= 32
    assert read_card(weights.shipped_path("faces")).input_size == (64, 64)
