"""Pretrained face recognizers as the attacker of ``eval`` (``--attacker embedding|finetune``).

Without the faces extra: 1-NN with its threshold, the logistic regression, enrolment and
fine-tuning on a tiny stand-in network (photos without a face left out of training and
counted as misses), and the command's refusals.  With the extra and ../shared's LFW: the
real network enrols and is fine-tuned on a few people through the command.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import SHARED_DATA, run_cli, tinted_classes
from unlearnable_cli.config import RecognizerConfig
from unlearnable_cli.evaluate import recognizers as R
from unlearnable_cli.faces import enrol
from unlearnable_cli.models.weights import model_digest


class TinyFaceNet(nn.Module):
    """A stand-in for dlib's network: chips (N, 3, 150, 150) in [0, 1] -> (N, 128)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3 * 4 * 4, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(nn.functional.adaptive_avg_pool2d(x - 0.5, 4).flatten(1))


def people(n_per: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 chips of two "people": a dark and a bright left half, under noise."""
    g = torch.Generator().manual_seed(seed)
    chips = torch.randint(60, 120, (2 * n_per, 3, 150, 150), generator=g, dtype=torch.uint8)
    chips[n_per:, :, :, :75] += 100
    return chips, torch.tensor([0] * n_per + [1] * n_per)


def test_nearest_neighbour_answers_unknown_beyond_the_threshold() -> None:
    enrolled = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
    labels = torch.tensor([3, 7])
    probes = torch.tensor([[0.1, 0.0], [0.9, 0.1], [5.0, 5.0], [0.5, 0.59]])
    assert R.nearest(enrolled, labels, probes, threshold=0.6).tolist() == [3, 7, R.UNKNOWN, R.UNKNOWN]
    assert R.nearest(enrolled[:0], labels[:0], probes, 0.6).tolist() == [R.UNKNOWN] * 4


def test_logistic_regression_separates_separable_descriptors() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(60, 128, generator=g)
    y = torch.arange(60) % 3
    x[:, :3] += 4 * nn.functional.one_hot(y, 3)
    head = R.fit_linear(x, y, 3, RecognizerConfig())
    assert (head(x.double()).argmax(1) == y).all()


@pytest.mark.parametrize("variant", ["embedding:1nn", "embedding:linear"])
def test_enrolment_leaves_out_faceless_training_photos_and_misses_faceless_tests(variant: str) -> None:
    train_x, train_y = people(6)
    test_x, test_y = people(4, seed=1)
    test_x[0] = enrol.NO_FACE                                   # a held-out photo without a face
    poisoned = train_x.clone()
    poisoned[train_y == 1] = enrol.NO_FACE                      # person 1 cannot be enrolled at all
    net = TinyFaceNet()
    cfg = RecognizerConfig(match_threshold=1e9)                # the stand-in's distances are not dlib's
    clean = R.enrol(net, train_x, train_y, {"test": (test_x, test_y)}, 2, cfg, variant, torch.device("cpu"))
    blind = R.enrol(net, poisoned, train_y, {"test": (test_x, test_y)}, 2, cfg, variant, torch.device("cpu"))
    assert clean.history["test"] == [100 * 7 / 8]               # all but the faceless photo
    assert blind.history["test"] == [100 * 3 / 8]               # only person 0's three photos with a face


@pytest.mark.parametrize("whole", [False, True])
def test_finetuning_learns_is_repeatable_and_freezes_what_it_should(whole: bool) -> None:
    train_x, train_y = people(16)
    evals = {"test": people(8, seed=1)}
    cfg = RecognizerConfig(epochs=3, batch_size=8, head_lr=0.05, net_lr=1e-3)
    runs = []
    for _ in range(2):
        net = TinyFaceNet()
        before = model_digest(net)
        epochs: list[int] = []
        runs.append(R.finetune(net, train_x, train_y, evals, 2, cfg, whole, torch.device("cpu"), epochs.append))
        assert epochs == [1, 2, 3]
        assert (model_digest(net) != before) is whole            # the head alone leaves the network as it was
        assert not any(p.requires_grad for p in net.parameters())
    assert runs[0].history == runs[1].history and runs[0].weights_sha256 == runs[1].weights_sha256
    assert runs[0].history["test"][-1] == 100.0, runs[0].history


def test_attackers_refuse_adversarial_training_and_defenses(tmp_path: Path) -> None:
    for extra in (["--adv-radius", "4"], ["--defense", "grayscale"]):
        result = run_cli("eval", "--clean", tmp_path, "--protected", tmp_path, "--test", tmp_path,
                         "--attacker", "embedding", *extra)
        assert result.exit_code == 1 and "apply to --attacker scratch" in result.output, result.output


def test_missing_extra_names_what_to_install(tmp_path: Path, monkeypatch) -> None:
    from unlearnable_cli.faces import dlib_tools

    clean = tinted_classes(tmp_path / "clean", ["a", "b"], 2)
    test = tinted_classes(tmp_path / "test", ["a", "b"], 1)
    dlib_tools._tools.cache_clear()                             # dlib loaded by an earlier test is forgotten
    monkeypatch.setitem(__import__("sys").modules, "dlib", None)
    result = run_cli("eval", "--clean", clean, "--protected", clean, "--test", test, "--attacker", "embedding",
                     "--quiet")
    dlib_tools._tools.cache_clear()
    assert result.exit_code == 1 and 'pip install "unlearnable[faces]"' in result.output, result.output


@pytest.mark.shared_data
def test_real_recognizer_enrols_and_finetunes_through_eval(faces_extra, tmp_path: Path) -> None:
    """Three LFW people, 6 training and 3 held-out photos each: the clean-enrolled recognizer
    knows them, and the report carries both variants of each attacker with face counts."""
    lfw = SHARED_DATA / "lfw"
    names = sorted(p.name for p in lfw.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 9)[:3]
    for name in names:
        photos = sorted((lfw / name).glob("*.jpg"))[:9]
        for split, chosen in (("train", photos[:6]), ("test", photos[6:])):
            (tmp_path / split / name).mkdir(parents=True)
            for p in chosen:
                shutil.copy(p, tmp_path / split / name / p.name)
    for attacker, variants in (("embedding", ["embedding:1nn", "embedding:linear"]),
                               ("finetune", ["finetune:head", "finetune:whole"])):
        report = tmp_path / f"{attacker}.json"
        result = run_cli("eval", "--clean", tmp_path / "train", "--protected", tmp_path / "train",
                         "--test", tmp_path / "test", "--attacker", attacker, "--epochs", "2", "--quiet",
                         "--report", report)
        assert result.exit_code == 0, result.output
        body = json.loads(report.read_text())
        assert body["settings"]["attacker"] == attacker
        assert set(body["settings"]["photos_without_face"]) == {"train clean", "train protected", "test"}
        runs = {(r["data"], r["attacker"]): r for r in body["runs"]}
        assert set(runs) == {(d, v) for d in ("clean", "protected") for v in variants}
        for variant in variants:                                # the same photos: the same verdicts
            assert runs["clean", variant]["final_acc"] == runs["protected", variant]["final_acc"]
        assert runs["clean", variants[0]]["final_acc"] >= 100 * 7 / 9, body["runs"]


def test_attackers_refuse_the_from_scratch_victims_options(tmp_path: Path) -> None:
    result = run_cli("eval", "--clean", tmp_path, "--protected", tmp_path, "--test", tmp_path,
                     "--attacker", "finetune", "--arch", "resnet18", "--lr", "0.1")
    assert result.exit_code == 1 and "--arch, --lr: options of the from-scratch victim" in result.output, result.output


def test_a_recognizer_with_no_face_to_train_on_recognizes_nobody() -> None:
    train_x, train_y = people(3)
    train_x[:] = enrol.NO_FACE
    evals = {"test": people(2, seed=1)}
    cfg = RecognizerConfig(epochs=2)
    for variant in ("embedding:1nn", "embedding:linear"):
        assert R.enrol(TinyFaceNet(), train_x, train_y, evals, 2, cfg, variant, torch.device("cpu")).history == {
            "test": [0.0]}
    assert R.finetune(TinyFaceNet(), train_x, train_y, evals, 2, cfg, True, torch.device("cpu")).history == {
        "test": [0.0, 0.0]}
