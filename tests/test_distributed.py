"""Several processes: ``protect --shard K/N``, and torchrun (gloo, 2 CPU ranks) for protect
and train-generator, with a rank that dies (tests/helpers/fault_worker.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from unlearnable_cli.protect import manifest
from unlearnable_cli.commands.app import app
from unlearnable_cli.config import ConfigError
from unlearnable_cli.distributed import Shard, parse_shard
from unlearnable_cli.models.weights import load_generator

from conftest import tinted_classes

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).parent / "helpers" / "fault_worker.py"
FAST = ["--steps", "2", "--eot-samples", "2", "--batch-size", "2", "--quiet"]
TINY_TRAIN = ["--arch", "convnet", "--width", "4", "--steps", "4", "--batch-size", "8", "--noise-steps", "2",
              "--eot-samples", "2", "--adv-steps", "2", "--checkpoint-every", "1", "--quiet"]
LAUNCH_TIMEOUT_S = 120          # a hung collective fails the test instead of the suite


def torchrun(*args: str | Path, die_rank: int = -1, die_at: int = -1, nproc: int = 2) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", UNLEARNABLE_TEST_DIE_RANK=str(die_rank),
               UNLEARNABLE_TEST_DIE_STEP=str(die_at), PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
           "--standalone", str(WORKER), *map(str, args)]
    # its own process group, so that a hang is ended with every worker, not only torchrun
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=LAUNCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """13 small images in two folders and two sizes (so several batches of each shape), one broken."""
    root = tmp_path / "in"
    rng = np.random.default_rng(1)
    for folder, n, size in (("cats", 7, (20, 24)), ("dogs", 6, (28, 20))):
        (root / folder).mkdir(parents=True)
        for i in range(n):
            arr = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
            Image.fromarray(arr).save(root / folder / f"{i}.png")
    (root / "dogs" / "broken.jpg").write_bytes(b"not an image")
    return root


def images(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def records(root: Path) -> dict[str, dict]:
    body = json.loads((root / manifest.MANIFEST).read_text())
    return {r["source"]: r for r in body["images"]}


@pytest.mark.parametrize("text", ["0/2", "3/2", "a/b", "1/0", "2"])
def test_bad_shard_values_are_refused_clearly(text: str, photos: Path, tiny_weights: Path, tmp_path: Path):
    result = runner.invoke(app, ["protect", str(photos), "-o", str(tmp_path / "out"), "--weights",
                                 str(tiny_weights), "--shard", text, *FAST])
    assert result.exit_code == 1
    assert f"--shard {text}" in result.output or f"--shard '{text}'" in result.output
    assert not (tmp_path / "out").exists()
    with pytest.raises(ConfigError):
        parse_shard(text)


def test_shard_parts_split_every_index_once():
    parts = [parse_shard(f"{k}/3") for k in (1, 2, 3)]
    assert parts[1] == Shard(1, 3)
    assert sorted(i for p in parts for i in range(10) if p.owns(i)) == list(range(10))


def test_shards_then_a_plain_run_equal_one_run(photos: Path, tiny_weights: Path, tmp_path: Path):
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    base = ["protect", str(photos), "--weights", str(tiny_weights), *FAST]
    assert runner.invoke(app, [*base, "-o", str(single)]).exit_code == 1          # the broken file
    for k in (1, 2, 3):
        result = runner.invoke(app, [*base, "-o", str(sharded), "--shard", f"{k}/3"])
        assert result.exit_code == 1 and f"Part {k}/3" in result.output
        assert not (sharded / manifest.MANIFEST).exists()                       # parts write journals only
    assert len(list(sharded.glob(".manifest.journal.part-*-of-3.jsonl"))) == 3
    assert images(sharded) == images(single)                                    # byte-identical
    merge = runner.invoke(app, [*base, "-o", str(sharded)])
    assert "Protected 0 image(s)" in merge.output and "(13 were already done and kept)" in merge.output
    assert records(sharded) == records(single)
    assert not list(sharded.glob(".manifest.journal*"))
    body = json.loads((sharded / manifest.MANIFEST).read_text())
    assert [f["source"] for f in body["failed"]] == ["dogs/broken.jpg"]


def test_shards_with_other_settings_are_not_mixed(photos: Path, tiny_weights: Path, tmp_path: Path):
    out = tmp_path / "out"
    base = ["protect", str(photos), "-o", str(out), "--weights", str(tiny_weights), *FAST]
    runner.invoke(app, [*base, "--shard", "1/2"])
    result = runner.invoke(app, [*base, "--shard", "2/2", "--radius", "4"])
    assert result.exit_code == 1 and "radius_levels: 8 → 4" in result.output


def test_protect_on_torchrun_survives_a_dead_rank_and_equals_one_process(photos: Path, tiny_weights: Path,
                                                                         tmp_path: Path):
    single, ranks = tmp_path / "single", tmp_path / "ranks"
    base = ["protect", str(photos), "--weights", str(tiny_weights), *FAST]
    runner.invoke(app, [*base, "-o", str(single)])
    died = torchrun(*base, "-o", ranks, die_rank=1, die_at=1)                  # rank 1 dies at its 2nd batch
    assert died.returncode != 0
    assert 0 < len(images(ranks)) < len(images(single))
    rerun = torchrun(*base, "-o", ranks)
    assert rerun.returncode == 1, rerun.stderr[-2000:]                          # 1: the broken file
    assert images(ranks) == images(single)
    assert records(ranks) == records(single)
    assert not list(ranks.glob(".manifest.journal*"))
    assert "already done and kept" in rerun.stdout


def test_train_generator_on_torchrun_resumes_after_a_dead_rank(tmp_path: Path):
    data = tinted_classes(tmp_path / "data", ["red", "green", "blue"], 12)
    straight, resumed = tmp_path / "straight.safetensors", tmp_path / "resumed.safetensors"
    ok = torchrun("train-generator", data, "-o", straight, *TINY_TRAIN)
    assert ok.returncode == 0, ok.stderr[-12000:]
    if sys.platform == "linux":                # the group is gone before Python shuts down
        assert ok.stderr.count("gloo worker threads at exit: 0") == 2, ok.stderr[-4000:]
    died = torchrun("train-generator", data, "-o", resumed, *TINY_TRAIN, die_rank=1, die_at=2)
    assert died.returncode != 0 and not resumed.exists()
    assert resumed.with_suffix(".ckpt.safetensors").exists()                     # the last checkpoint is intact
    other = tmp_path / "one-process.safetensors"                                # resumed by another number
    shutil.copy(resumed.with_suffix(".ckpt.safetensors"), other.with_suffix(".ckpt.safetensors"))
    single = runner.invoke(app, ["train-generator", str(data), "-o", str(other), *TINY_TRAIN, "--resume"])
    assert single.exit_code == 0, single.output
    assert load_generator(other)[1].metrics["steps_done"] == 4
    again = torchrun("train-generator", data, "-o", resumed, *TINY_TRAIN, "--resume")
    assert again.returncode == 0, again.stderr[-12000:]                       # the rank's own message too
    a, card = load_generator(straight)
    b, _ = load_generator(resumed)
    assert card.provenance["processes"] == 2
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert x.equal(y), f"{k} differs after resume"


def test_em_refuses_torchrun(tmp_path: Path):
    data = tinted_classes(tmp_path / "data", ["red", "green"], 6)
    result = torchrun("train-generator", data, "-o", tmp_path / "em.safetensors", "--method", "em", *TINY_TRAIN)
    assert result.returncode != 0 and "EM trains in one process" in result.stderr
