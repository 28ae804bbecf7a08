"""`unlearnable eval`: tiny victims on tiny data, the report schema, clear errors."""

from __future__ import annotations

import errno
import json
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from unlearnable_cli.commands.app import app
from unlearnable_cli.evaluate import journal as eval_journal, scenarios as evaluate_module
from unlearnable_cli.io.datasets import match_folders
from unlearnable_cli.evaluate.journal import journal_path
from unlearnable_cli.evaluate.report import result_warnings
from unlearnable_cli.evaluate.scenarios import EvalReport, Run

from conftest import interrupt_after

runner = CliRunner()
TINY = ["--arch", "convnet", "--width", "4", "--epochs", "2", "--batch-size", "16", "--quiet"]


def make_set(root: Path, n: int, seed: int, ext: str = "png", shift: int = 0) -> Path:
    """Three colour-coded classes of 32x32 images."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(["red", "green", "blue"]):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = rng.integers(0, 100, (32, 32, 3)).astype(np.uint8)
            arr[..., c] += 150
            Image.fromarray(np.clip(arr.astype(int) + shift, 0, 255).astype(np.uint8)).save(root / name / f"{i}.{ext}")
    return root


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("eval")
    clean = make_set(base / "clean", 16, 0, ext="jpg")
    # a "protected" copy: same names as .png, every pixel moved by 3 levels
    prot = base / "prot"
    for f in clean.rglob("*.jpg"):
        out = prot / f.relative_to(clean).with_suffix(".png")
        out.parent.mkdir(parents=True, exist_ok=True)
        arr = np.asarray(Image.open(f)).astype(int)
        Image.fromarray(np.clip(arr + 3, 0, 255).astype(np.uint8)).save(out)
    test = make_set(base / "test", 6, 1)
    return clean, prot, test


def test_eval_report_schema_and_imperceptibility(folders, tmp_path):
    clean, prot, test = folders
    report, plot = tmp_path / "r.json", tmp_path / "c.png"
    result = runner.invoke(app, ["eval", "--clean", str(clean), "--protected", str(prot), "--test", str(test),
                                 "--adv-radius", "0", "--adv-radius", "4", "--adv-steps", "1",
                                 "--defense", "none", "--defense", "grayscale",
                                 "--report", str(report), "--plot", str(plot), *TINY])
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    runs = data["runs"]
    assert len(runs) == 8                                  # 2 radii x 2 defenses x (clean, protected)
    for run in runs:
        assert {"data", "adv_radius", "defense", "final_acc", "best_acc", "acc_per_epoch"} <= set(run)
        assert run["data"] in ("clean", "protected") and len(run["acc_per_epoch"]) == 2
        assert run["final_acc"] == run["acc_per_epoch"][-1] and run["best_acc"] == max(run["acc_per_epoch"])
        assert all(0 <= a <= 100 for a in run["acc_per_epoch"])
    assert {r["adv_radius"] for r in runs} == {0.0, 4.0} and {r["defense"] for r in runs} == {"none", "grayscale"}
    q = data["imperceptibility"]["protected"]
    assert q["images"] == 48 and q["linf_max"] == 3 and 35 < q["psnr_mean"] < 40 and q["ssim_min"] > 0.9
    assert data["settings"]["victim"]["seed"] == 0 and data["versions"]["torch"]
    assert plot.stat().st_size > 1000
    assert "ratio" in result.output and "4/255" in result.output


def test_same_seed_same_victims(folders, tmp_path):
    """Same seed and recipe: the same victims, compared by their trained weights (equal
    accuracies on a few test images could be chance); another seed: other weights."""
    clean, prot, test = folders
    out = []
    for k, seed in enumerate((0, 0, 1)):
        path = tmp_path / f"r{k}.json"
        result = runner.invoke(app, ["eval", "--clean", str(clean), "--protected", str(prot), "--test", str(test),
                                     "--report", str(path), *TINY, "--seed", str(seed)])
        assert result.exit_code == 0, result.output
        out.append([r["weights_sha256"] for r in json.loads(path.read_text())["runs"]])
    assert out[0] == out[1] and len(set(out[0])) == 2
    assert not set(out[0]) & set(out[2])


def test_split_runs_match_one_combined_call(folders, tmp_path):
    """--runs clean (without --protected) and --runs protected give the victims (weights and
    curves) of one full call."""
    clean, prot, test = folders
    base = ["--clean", str(clean), "--test", str(test), *TINY]
    curves = {}
    for mode, extra in (("both", ["--protected", str(prot)]), ("clean", []), ("protected", ["--protected", str(prot)])):
        path = tmp_path / f"{mode}.json"
        result = runner.invoke(app, ["eval", *base, *extra, "--runs", mode, "--report", str(path)])
        assert result.exit_code == 0, (mode, result.output)
        curves[mode] = {r["data"]: (r["weights_sha256"], r["acc_per_epoch"])
                        for r in json.loads(path.read_text())["runs"]}
    assert set(curves["clean"]) == {"clean"} and set(curves["protected"]) == {"protected"}
    assert curves["clean"]["clean"] == curves["both"]["clean"]
    assert curves["protected"]["protected"] == curves["both"]["protected"]
    result = runner.invoke(app, ["eval", *base, "--runs", "protected"])
    assert result.exit_code == 1 and "give --clean" in result.output


def trained_victims(monkeypatch) -> list[float]:
    """Each victim's adversarial radius (in levels) as its training starts: the victims a
    run trains rather than reuses."""
    real = evaluate_module.train_victim
    calls: list[float] = []

    def counted(*a, **k):
        calls.append(round(a[-2].adv_radius * 255, 6))      # the victim's Setting
        return real(*a, **k)

    monkeypatch.setattr(evaluate_module, "train_victim", counted)
    return calls


def ctrl_c_after_victims(n: int):  # noqa: ANN201 - a context manager
    """Ctrl-C once the ``n``-th victim is kept in the journal beside the report."""
    return interrupt_after((eval_journal, "append_json_lines"), n, signal.SIGINT)


def test_interrupted_eval_resumes_with_the_finished_victims(folders, tmp_path, monkeypatch):
    """Ctrl-C after two victims keeps those two; a rerun with other settings
    reuses none of them; the same command trains only the rest and reports the curves
    of an uninterrupted run."""
    clean, prot, test = folders
    args = ["eval", "--clean", str(clean), "--protected", str(prot), "--test", str(test),
            "--adv-radius", "0", "--adv-radius", "2", "--adv-steps", "1", *TINY]
    full = tmp_path / "full.json"
    assert runner.invoke(app, [*args, "--report", str(full)]).exit_code == 0
    calls = trained_victims(monkeypatch)
    report = tmp_path / "r.json"
    with ctrl_c_after_victims(2):
        result = runner.invoke(app, [*args, "--report", str(report)])
    assert result.exit_code == 130 and "stopped:" in result.output and "rerun the same command" in result.output
    partial = journal_path(report)
    assert not report.exists() and len(partial.read_text().splitlines()) == 2
    with open(partial, "a") as f:
        f.write('{"key": "cut sh')                            # a line cut short by a crash

    calls.clear()
    with ctrl_c_after_victims(1):
        result = runner.invoke(app, [*args, "--seed", "1", "--report", str(report)])
    assert result.exit_code == 130 and calls == [0.0], "another seed reused a victim"
    lines = partial.read_text().splitlines()
    assert lines[2] == '{"key": "cut sh' and all("key" in json.loads(line) for line in lines[3:]), \
        "a victim journaled after the crash fragment was glued onto it"
    assert len(lines) == 4                                    # the seed-1 run finished one victim

    calls.clear()
    result = runner.invoke(app, [*args, "--report", str(report)])
    assert result.exit_code == 0, result.output
    assert calls == [2.0, 2.0] and "reused 2 finished victim(s)" in result.output
    data = json.loads(report.read_text())
    assert data["reused_runs"] == 2 and not partial.exists()
    expected = json.loads(full.read_text())["runs"]
    assert [(r["data"], r["adv_radius"], r["acc_per_epoch"]) for r in data["runs"]] == \
        [(r["data"], r["adv_radius"], r["acc_per_epoch"]) for r in expected]


def test_eval_without_report_says_nothing_was_kept(folders):
    clean, prot, test = folders
    with interrupt_after((evaluate_module, "train_victim"), 1, signal.SIGINT):    # Ctrl-C after the first victim
        result = runner.invoke(app, ["eval", "--clean", str(clean), "--protected", str(prot), "--test", str(test),
                                     *TINY])
    assert result.exit_code == 130 and "give --report to make an evaluation resumable" in result.output


def test_unwritable_report_keeps_the_finished_victims(folders, tmp_path, monkeypatch):
    clean, prot, test = folders
    report = tmp_path / "r.json"

    def no_space(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(report))

    monkeypatch.setattr(evaluate_module, "atomic_path", no_space)
    result = runner.invoke(app, ["eval", "--clean", str(clean), "--protected", str(prot), "--test", str(test),
                                 "--report", str(report), *TINY])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    assert "r.json: No space left on device" in result.output and "ratio" in result.output
    assert len(journal_path(report).read_text().splitlines()) == 2      # both victims kept for a rerun


def test_mismatched_folders_are_a_clear_error(folders, tmp_path):
    clean, prot, test = folders
    partial = tmp_path / "partial"
    for f in list(prot.rglob("*.png"))[:-2]:
        dst = partial / f.relative_to(prot)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(f.read_bytes())
    args = ["eval", "--clean", str(clean), "--protected", str(partial), "--test", str(test), *TINY]
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "do not mirror each other" in result.output and "only in" in result.output
    assert runner.invoke(app, args + ["--allow-missing"]).exit_code == 0
    unrelated = make_set(tmp_path / "other", 2, 5, ext="png")
    for f in unrelated.rglob("*.png"):
        f.rename(f.with_name("x" + f.name))
    result = runner.invoke(app, ["eval", "--clean", str(clean), "--protected", str(unrelated), "--test", str(test), *TINY])
    assert result.exit_code == 1 and "shares no images" in result.output


def test_option_errors(folders):
    clean, prot, test = folders
    base = ["eval", "--clean", str(clean), "--protected", str(prot), "--test", str(test), *TINY]
    assert "unknown defense" in runner.invoke(app, base + ["--defense", "blur"]).output
    assert "--poison-ratio" in runner.invoke(app, base + ["--poison-ratio", "0"]).output
    assert "--preset" in runner.invoke(app, base + ["--preset", "huge"]).output
    assert "give --clean" in runner.invoke(app, ["eval", "--clean", str(clean), *TINY]).output
    assert "personal scenario needs" in runner.invoke(app, ["eval", "--target", str(clean), *TINY]).output


def test_match_folders_pairs_by_path_without_extension(tmp_path):
    for rel in ["a/x.jpg", "a/y.jpg", "a/y.png", "b/z.webp"]:
        (tmp_path / "c" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(tmp_path / "c" / rel)
    for rel in ["a/x.png", "a/y.jpg.png", "a/y.png.png", "b/extra.png"]:
        (tmp_path / "p" / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (4, 4)).save(tmp_path / "p" / rel)
    pairs, only_clean, only_prot = match_folders(tmp_path / "c", tmp_path / "p")
    got = {(c.relative_to(tmp_path / "c").as_posix(), p.relative_to(tmp_path / "p").as_posix()) for c, p in pairs}
    assert got == {("a/x.jpg", "a/x.png"), ("a/y.jpg", "a/y.jpg.png"), ("a/y.png", "a/y.png.png")}
    assert only_clean == ["b/z.webp"] and only_prot == ["b/extra.png"]


def test_personal_folder_scenario(folders, tmp_path, monkeypatch):
    clean, prot, _ = folders
    me = tmp_path / "me"
    me_prot = tmp_path / "me-protected"
    for f in (clean / "red").glob("*.jpg"):
        (me / "person").mkdir(parents=True, exist_ok=True)
        (me / "person" / f.name).write_bytes(f.read_bytes())
        (me_prot / "person").mkdir(parents=True, exist_ok=True)
        (me_prot / "person" / f.with_suffix(".png").name).write_bytes((prot / "red" / f.with_suffix(".png").name).read_bytes())
    background = tmp_path / "bg"
    for name in ("green", "blue"):
        (background / name).mkdir(parents=True)
        for f in (clean / name).glob("*.jpg"):
            (background / name / f.name).write_bytes(f.read_bytes())
    report = tmp_path / "p.json"
    args = ["eval", "--target", str(me), "--target-protected", str(me_prot), "--background", str(background),
            "--report", str(report), *TINY]
    with ctrl_c_after_victims(1):                                  # interrupted before the protected victim
        assert runner.invoke(app, args).exit_code == 130
    calls = trained_victims(monkeypatch)
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert len(calls) == 1 and "reused 1 finished victim(s)" in result.output
    data = json.loads(report.read_text())
    assert data["settings"]["target_heldout_images"] == 3 and data["settings"]["target_train_images"] == 13
    assert [r["data"] for r in data["runs"]] == ["clean", "protected"]
    assert all("background_acc" in r and len(r["acc_per_epoch"]) == 2 for r in data["runs"])
    # false alarms: the share of held-out background images called the user, a rate in [0, 100]
    # that together with background accuracy cannot exceed 100 (a background image is one or the other)
    assert all(0 <= r["false_alarm_acc"] <= 100 - r["background_acc"] + 1e-9 for r in data["runs"])
    assert "calls them you" in result.output


@pytest.mark.parametrize("arch", ["resnet18", "mobilenetv2"])
def test_other_victim_architectures_train(folders, arch):
    """Transfer tests train victims of other architectures than the surrogate's.  (Width 8:
    at width 4 this torch's CPU backward of a channels-last batch stalls for minutes.)"""
    clean, prot, test = folders
    result = runner.invoke(app, ["eval", "--clean", str(clean), "--protected", str(prot), "--test", str(test),
                                 "--arch", arch, "--width", "8", "--epochs", "1", "--batch-size", "16", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "ratio" in result.output


def test_ratio_interval_matches_katz_and_covers_the_true_ratio():
    """protected / clean accuracy with its 95% interval: Katz's log interval by hand, a zero
    count, no images, and its coverage over simulated victims (true ratio 0.30 / 0.85)."""
    from unlearnable_cli.metrics import ratio_interval
    from unlearnable_cli.evaluate.report import ratio_cell

    lo, hi = ratio_interval(35, 136, 119, 136)        # by hand: exp(ln(35/119) ± 1.96·0.14922)
    assert abs(lo - 0.2195) < 1e-3 and abs(hi - 0.3940) < 1e-3
    lo, hi = ratio_interval(0, 13, 7, 13)              # 0.5 added to each cell: finite, and wide
    assert 0 < lo < 0.05 and hi > 1.0
    assert ratio_interval(3, 0, 5, 10) is None
    assert ratio_cell(25.0, 50.0, 100) == "0.50 [0.34–0.74]" and ratio_cell(10.0, 0.0, 100) == "—"

    rng = np.random.default_rng(0)
    n, p_protected, p_clean = 136, 0.30, 0.85
    draws = zip(rng.binomial(n, p_protected, 4000), rng.binomial(n, p_clean, 4000))
    covered = [lo <= p_protected / p_clean <= hi for lo, hi in (ratio_interval(a, n, b, n) for a, b in draws)]
    assert 0.93 <= sum(covered) / len(covered) <= 0.975


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

