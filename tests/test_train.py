"""`train-generator`: a few steps of SEM / REM / EM on a tiny image-folder data set."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from unlearnable_cli.commands.app import app
from unlearnable_cli.config import ConfigError, Interrupted, Method, Preset, train_config
from unlearnable_cli.commands.console import stop_requests
from unlearnable_cli.methods.sem import SEM
from unlearnable_cli.train import train_generator
from unlearnable_cli.models.weights import load_generator, read_card

from conftest import interrupt_after, run_cli, tinted_classes

runner = CliRunner()
TINY = ["--arch", "convnet", "--width", "4", "--steps", "4", "--batch-size", "8", "--noise-steps", "2",
        "--eot-samples", "2", "--adv-steps", "2", "--checkpoint-every", "2", "--quiet"]
#: two steps, a checkpoint after each: enough for an unfinished run's checkpoint to be left behind
TWO_STEPS = ["--arch", "convnet", "--width", "4", "--steps", "2", "--batch-size", "8", "--noise-steps", "1",
             "--eot-samples", "1", "--adv-steps", "1", "--checkpoint-every", "1", "--quiet"]


def tiny_config(**kw):
    base = dict(arch="convnet", width=4, steps=4, batch_size=8, noise_steps=2, eot_samples=2,
                adv_steps=2, checkpoint_every=2, val_fraction=0.1, em_train_steps=2)
    return train_config(Preset.CPU, **{**base, **kw})


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for c, name in enumerate(["red", "green", "blue"]):
        (root / name).mkdir()
        for i in range(12):
            arr = rng.integers(0, 120, (32, 32, 3), dtype=np.uint8)
            arr[..., c] += 120
            Image.fromarray(arr).save(root / name / f"{i}.png")
        Image.fromarray(arr).resize((48, 40)).save(root / name / "big.jpg")   # other sizes are resized
    return root


@pytest.fixture(scope="module")
def toy_train(tmp_path_factory) -> Path:
    """Two tinted classes in a folder named ``train`` (cards name a data set by parent and folder)."""
    return tinted_classes(tmp_path_factory.mktemp("toy") / "train", ["red", "green"], 8)


@pytest.mark.parametrize("method", list(Method))
def test_each_method_trains_and_writes_a_complete_card(dataset, tmp_path, method):
    out = tmp_path / f"{method.value}.safetensors"
    linear = {"arch": "linear"} if method is Method.PIL else {}       # PIL's surrogate is linear
    card = train_generator(dataset, out, tiny_config(method=method, **linear), torch.device("cpu"))
    model, loaded = load_generator(out)
    assert loaded == card
    assert card.method == method.value and card.class_names == ["blue", "green", "red"]   # sorted folder names
    assert card.input_size == (32, 32) and card.value_range == (0.0, 1.0)
    assert card.dataset["sha256"] and card.dataset["train_images"] + card.dataset["val_images"] == 39
    for key in ("defended_train_acc", "val_clean_acc", "val_pgd_acc"):
        assert 0.0 <= card.metrics[key] <= 1.0
    assert card.hyperparameters["noise_steps"] == 2
    assert card.provenance["wall_time_s"] >= (0 if method is Method.PIL else 0.1)   # PIL's rounds to 0.0 s
    assert card.adv_radius == (0.0 if method in (Method.EM, Method.PIL) else 4 / 255)
    log = out.with_suffix(".log.jsonl").read_text().splitlines()
    assert log and '"final"' in log[-1]


def test_resume_after_interrupt_equals_uninterrupted(dataset, tmp_path, monkeypatch):
    cfg = tiny_config(steps=5, log_every=1)
    straight = tmp_path / "straight.safetensors"
    train_generator(dataset, straight, cfg, torch.device("cpu"))

    resumed = tmp_path / "resumed.safetensors"
    # Ctrl-C arrives during the 3rd step: the run stops once it is done
    with interrupt_after((SEM, "train_step"), 3, signal.SIGINT), stop_requests(graceful=True) as stop, \
            pytest.raises(Interrupted, match="at step 3; checkpoint saved"):
        train_generator(dataset, resumed, cfg, torch.device("cpu"), should_stop=stop)
    assert resumed.with_suffix(".ckpt.safetensors").exists() and not resumed.exists()
    train_generator(dataset, resumed, cfg, torch.device("cpu"), resume=True)
    a, _ = load_generator(straight)
    b, _ = load_generator(resumed)
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), f"{k} differs after resume"
    steps = [line for line in resumed.with_suffix(".log.jsonl").read_text().splitlines() if '"final"' not in line]
    assert len(steps) == 5                        # no duplicated log lines after resume


def test_export_checkpoint_writes_weights_without_training_further(dataset, tmp_path):
    out = tmp_path / "g.safetensors"
    args = ["train-generator", str(dataset), "-o", str(out), *TINY]
    assert "no checkpoint to export" in runner.invoke(app, args + ["--export-checkpoint"]).output
    assert runner.invoke(app, args).exit_code == 0
    trained, _ = load_generator(out)
    out.unlink()
    result = runner.invoke(app, args + ["--export-checkpoint"])
    assert result.exit_code == 0, result.output
    exported, card = load_generator(out)
    assert card.metrics["steps_done"] == 4
    for (k, a), (_, b) in zip(trained.state_dict().items(), exported.state_dict().items()):
        assert torch.equal(a, b), k


def test_method_defaults_and_presets():
    em = train_config(Preset.CPU, method=Method.EM)
    assert em.noise_steps == 20 and abs(em.step_size * 255 - 0.8) < 1e-9 and em.adv_radius == 0
    assert train_config(Preset.CPU, method=Method.EM, noise_steps=7).noise_steps == 7
    paper = train_config(Preset.PAPER)
    assert (paper.width, paper.steps, paper.noise_steps, paper.eot_samples, paper.adv_steps) == (64, 5000, 10, 5, 10)
    assert paper.rho_r == paper.adv_radius == 4 / 255 and [round(m * paper.steps) for m in paper.lr_milestones] == [2000, 4000]


def test_resume_with_other_options_is_refused(dataset, tmp_path):
    out = tmp_path / "g.safetensors"
    train_generator(dataset, out, tiny_config(), torch.device("cpu"))
    out.unlink()                                   # as if the run had stopped before its end
    with pytest.raises(ConfigError, match="different options or data"):
        train_generator(dataset, out, tiny_config(lr=0.05), torch.device("cpu"), resume=True)


def test_cli_generator_is_accepted_by_protect(dataset, tmp_path):
    out = tmp_path / "g.safetensors"
    result = runner.invoke(app, ["train-generator", str(dataset), "-o", str(out), *TINY])
    assert result.exit_code == 0, result.output
    assert "saved" in result.output and read_card(out).arch == "convnet"
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.open(dataset / "red" / "0.png").save(photos / "mine.png")
    result = runner.invoke(app, ["protect", str(photos), "--weights", str(out), "--steps", "2", "--quiet"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "photos-protected" / "mine.png").is_file()


def test_clear_errors(tmp_path, dataset):
    def cli(data, out, *extra):
        return runner.invoke(app, ["train-generator", str(data), "-o", str(out), *TINY, *extra])

    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no images found" in cli(empty, tmp_path / "g.safetensors").output
    one = tmp_path / "one"
    (one / "only").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(one / "only" / "a.png")
    assert "only one class" in cli(one, tmp_path / "g.safetensors").output
    broken = tmp_path / "broken"
    for c in ("a", "b"):
        (broken / c).mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(broken / c / "ok.png")
    (broken / "b" / "bad.jpg").write_text("not an image")
    result = cli(broken, tmp_path / "g.safetensors")
    assert result.exit_code == 1 and "bad.jpg" in result.output and "not a recognized image" in result.output
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = cli(dataset, blocker / "g.safetensors")
    assert result.exit_code == 1 and "cannot create its folder" in result.output
    assert "must end in .safetensors" in cli(dataset, tmp_path / "g.pt").output
    assert "unknown --arch" in cli(dataset, tmp_path / "g.safetensors", "--arch", "vgg99").output
    assert "--steps must be at least 1" in cli(dataset, tmp_path / "g.safetensors", "--steps", "0").output


def test_init_starts_from_a_generator_and_refuses_a_mismatched_one(dataset, tmp_path):
    base = tmp_path / "base.safetensors"
    result = runner.invoke(app, ["train-generator", str(dataset), "-o", str(base), *TINY])
    assert result.exit_code == 0, result.output
    start, _ = load_generator(base)
    # A tiny learning rate keeps the fine-tuned weights next to the initial ones; a fresh
    # run of the same options does not start there.
    tuned = tmp_path / "tuned.safetensors"
    result = runner.invoke(app, ["train-generator", str(dataset), "-o", str(tuned), *TINY,
                                 "--init", str(base), "--lr", "1e-6", "--seed", "1"])
    assert result.exit_code == 0, result.output
    fresh = tmp_path / "fresh.safetensors"
    assert runner.invoke(app, ["train-generator", str(dataset), "-o", str(fresh), *TINY,
                               "--lr", "1e-6", "--seed", "1"]).exit_code == 0
    a, card = load_generator(tuned)
    b, _ = load_generator(fresh)
    conv = "features.0.0.weight"
    assert torch.allclose(a.state_dict()[conv], start.state_dict()[conv], atol=1e-3)
    assert not torch.allclose(b.state_dict()[conv], start.state_dict()[conv], atol=1e-3)
    assert card.provenance["init"]["path"] == str(base) and len(card.provenance["init"]["sha256"]) == 64
    assert card.hyperparameters["init"] == str(base)
    wider = runner.invoke(app, ["train-generator", str(dataset), "-o", str(tmp_path / "w.safetensors"),
                                *TINY, "--width", "8", "--init", str(base)])
    assert wider.exit_code == 1 and "base.safetensors" in wider.output and "needs convnet {'width': 8}" in wider.output
    missing = runner.invoke(app, ["train-generator", str(dataset), "-o", str(tmp_path / "m.safetensors"),
                                  *TINY, "--init", str(tmp_path / "none.safetensors")])
    assert missing.exit_code == 1 and "none.safetensors" in missing.output


def test_train_generator_never_discards_a_checkpoint_or_a_finished_generator(toy_train: Path, tmp_path: Path):
    out = tmp_path / "g.safetensors"
    ckpt = out.with_suffix(".ckpt.safetensors")
    assert run_cli("train-generator", toy_train, "-o", out, *TWO_STEPS).exit_code == 0
    finished = out.read_bytes()
    # A finished generator is not replaced by the same command.
    result = run_cli("train-generator", toy_train, "-o", out, *TWO_STEPS)
    assert result.exit_code == 1 and "a generator is already there" in result.output and "--overwrite" in result.output
    assert out.read_bytes() == finished
    # An unfinished run's checkpoint is not restarted over.
    out.unlink()
    kept = ckpt.read_bytes()
    result = run_cli("train-generator", toy_train, "-o", out, *TWO_STEPS)
    assert result.exit_code == 1, result.output
    assert f"{ckpt}: an unfinished run's checkpoint (step 2 of 2)" in result.output.replace("\n", "")
    assert "--resume" in result.output and "--overwrite" in result.output
    assert ckpt.read_bytes() == kept and not out.exists()
    # --resume continues it; --overwrite starts over.
    assert run_cli("train-generator", toy_train, "-o", out, *TWO_STEPS, "--resume").exit_code == 0
    result = run_cli("train-generator", toy_train, "-o", out, *TWO_STEPS, "--overwrite", "--seed", "1")
    assert result.exit_code == 0, result.output
    assert read_card(out).hyperparameters["seed"] == 1



def test_card_names_the_data_set_by_parent_and_folder(toy_train: Path, tmp_path: Path):
    out = tmp_path / "g.safetensors"
    assert run_cli("train-generator", toy_train, "-o", out, *TWO_STEPS).exit_code == 0
    assert read_card(out).dataset["name"] == f"{toy_train.parent.name}/train"
    named = tmp_path / "named.safetensors"
    assert run_cli("train-generator", toy_train, "-o", named, *TWO_STEPS, "--dataset-name", "toy colours").exit_code == 0
    assert read_card(named).dataset["name"] == "toy colours"

