"""`unlearnable protect` interrupted, rerun and failing to write: nothing finished is
discarded, a rerun resumes or is refused (never mixes settings), and a write that fails
names the file the user asked for."""

from __future__ import annotations

import errno
import json
import signal
from pathlib import Path

import pytest
import torch

from unlearnable_cli.io import atomic, images as imageio
from unlearnable_cli.models import weights
from unlearnable_cli.protect import job, manifest
from unlearnable_cli.protect.job import Entry
from unlearnable_cli.protect.manifest import previous_records

from conftest import FAST, digests, interrupt_after, pngs, run_cli, save, small, tiny_model


def test_same_seed_same_bytes_and_resume_after_interrupt(tmp_path: Path, tiny_weights: Path):
    src = tmp_path / "in"
    for i, name in enumerate(["astronaut", "coffee", "chelsea", "rocket", "camera"]):
        save(small(name, 32).resize((32, 32)), src / f"{i}.png")      # equal sizes: real batches
    args = ["--weights", tiny_weights, "--batch-size", "2", "--seed", "7", *FAST]
    clean = tmp_path / "clean"
    assert run_cli("protect", src, "-o", clean, *args).exit_code == 0
    again = tmp_path / "again"
    assert run_cli("protect", src, "-o", again, *args).exit_code == 0
    assert pngs(clean) == pngs(again)
    other = tmp_path / "other"
    assert run_cli("protect", src, "-o", other, *args[:-5], "--seed", "8", *FAST).exit_code == 0
    assert pngs(other) != pngs(clean)

    # Ctrl-C once the 4th PNG is written (batches [1], [2, 2]): in the middle of the last
    # batch of two, whose records are not journaled yet.
    resumed = tmp_path / "resumed"
    with interrupt_after((job, "write_image"), 4, signal.SIGINT):
        result = run_cli("protect", src, "-o", resumed, *args)
    assert result.exit_code == 130 and "stopped:" in result.output and "error" not in result.output
    assert "rerun the same command" in result.output
    assert len(pngs(resumed)) == 4 and not list(resumed.rglob("*.tmp"))
    journal = resumed / ".manifest.journal.jsonl"          # every finished batch's records survive
    journaled = {json.loads(line)["source"] for line in journal.read_text().splitlines()}
    assert len(journaled) == 3 and journaled < {p.name for p in resumed.glob("*.png")}   # the 4th is redone
    with open(journal, "a") as f:
        f.write('{"source": "4.pn')                           # a record cut short by a crash
    result = run_cli("protect", src, "-o", resumed, *args)
    assert result.exit_code == 0, result.output
    assert pngs(resumed) == pngs(clean)
    assert not journal.exists() and len(json.loads((resumed / "manifest.json").read_text())["images"]) == 5
    # and a finished run skips everything
    result = run_cli("protect", src, "-o", resumed, *args[:-1])
    assert result.exit_code == 0 and "Protected 0 image(s)" in result.output
    assert "(5 were already done and kept)" in result.output


def test_rerun_with_another_generator_or_settings_is_refused_not_mixed(tmp_path: Path, tiny_weights: Path):
    src = tmp_path / "in"
    for i, name in enumerate(["astronaut", "coffee", "chelsea"]):
        save(small(name, 32).resize((32, 32)), src / f"{i}.png")
    moved = tmp_path / "elsewhere" / "same.safetensors"            # the same generator, moved
    moved.parent.mkdir()
    moved.write_bytes(tiny_weights.read_bytes())
    model, card = tiny_model()
    with torch.no_grad():
        next(model.parameters()).add_(0.01)
    other = tmp_path / "other.safetensors"                         # same card, other tensors
    weights.save_generator(other, model, card)

    # Ctrl-C once the first image (batches of one) is journaled: its header is already on disk.
    out = tmp_path / "out"
    with interrupt_after((manifest, "append_journal"), 1, signal.SIGINT):
        result = run_cli("protect", src, "-o", out, "--weights", tiny_weights, "--batch-size", "1", *FAST)
    assert result.exit_code == 130, result.output
    assert len(pngs(out)) == 1
    before = digests(out)
    for extra, message in [(["--weights", tiny_weights, "--radius", "4"], "radius_levels: 8 → 4"),
                           (["--weights", tiny_weights, "--seed", "3"], "seed: 0 → 3"),
                           (["--weights", tiny_weights, "--labels", "cat"], "labels: folders → cat"),
                           (["--weights", tiny_weights, "--eot-grayscale", "0.5"], "eot_grayscale: 0.0 → 0.5"),
                           (["--weights", other], "generator tensors_sha256")]:
        result = run_cli("protect", src, "-o", out, *extra, *FAST)
        assert result.exit_code == 1, (extra, result.output)
        assert "holds 1 image(s) protected with another generator or other settings" in result.output
        assert message in result.output and "--overwrite" in result.output
        assert digests(out) == before, "a refused run changed the output folder"
    # Speed-only settings and a moved weights file resume: the finished image is skipped.
    result = run_cli("protect", src, "-o", out, "--weights", moved, "--batch-size", "3", *FAST[:-1])
    assert result.exit_code == 0, result.output
    assert "Protected 2 image(s)" in result.output and "(1 were already done and kept)" in result.output
    # --overwrite redoes everything with the new settings, under one consistent manifest.
    result = run_cli("protect", src, "-o", out, "--weights", tiny_weights, "--radius", "4", "--overwrite", *FAST)
    assert result.exit_code == 0, result.output
    body = json.loads((out / "manifest.json").read_text())
    assert body["settings"]["radius_levels"] == 4 and len(body["images"]) == 3
    assert max(r["linf"] for r in body["images"]) <= 4
    assert body["generator"]["tensors_sha256"] == weights.model_digest(tiny_model()[0])


def test_sigterm_stops_protect_with_a_message_and_resumes(tmp_path: Path, tiny_weights: Path):
    src = tmp_path / "in"
    for i in range(3):
        save(small("coffee", 16 + i), src / f"{i}.png")               # three sizes: three batches
    with interrupt_after((manifest, "append_journal"), 1, signal.SIGTERM):  # after the first batch is kept
        result = run_cli("protect", src, "-o", tmp_path / "out", "--weights", tiny_weights, *FAST)
    assert result.exit_code == 143 and "stopped:" in result.output and "rerun the same command" in result.output
    result = run_cli("protect", src, "-o", tmp_path / "out", "--weights", tiny_weights, *FAST)
    assert result.exit_code == 0 and "Protected 2 image(s)" in result.output
    assert "(1 were already done and kept)" in result.output


def test_finished_outputs_whose_class_changed_are_kept_with_a_warning(tmp_path: Path):
    entries = [Entry(tmp_path / f"{n}.jpg", f"{n}.jpg", f"{n}.png", label=label) for n, label in (("a", 5), ("b", 2))]
    for e in entries:
        (tmp_path / e.output_rel).write_bytes(b"png")
    manifest.append_journal(tmp_path / manifest.MANIFEST,
                            [{"source": e.rel, "output": e.output_rel, "class_index": 2} for e in entries])
    records, warnings = previous_records(tmp_path, entries, {"generator": {}, "settings": {}}, overwrite=False)
    assert set(records) == {"a.jpg", "b.jpg"}
    assert len(warnings) == 1 and warnings[0].startswith("1 image(s) already in")
    assert previous_records(tmp_path, entries, {"generator": {}, "settings": {}}, overwrite=True) == ({}, [])
    assert not (tmp_path / manifest.JOURNAL).exists()


def test_a_record_journaled_after_a_crash_fragment_is_kept(tmp_path: Path):
    manifest.append_journal(tmp_path / manifest.MANIFEST, [{"source": "a.jpg"}])
    with open(tmp_path / manifest.JOURNAL, "a") as f:
        f.write('{"source": "b.jp')                           # a record cut short by a crash
    manifest.append_journal(tmp_path / manifest.MANIFEST, [{"source": "c.jpg"}, {"source": "d.jpg"}])
    assert set(manifest.load(tmp_path / manifest.MANIFEST)[1]) == {"a.jpg", "c.jpg", "d.jpg"}


def test_a_full_disk_is_a_clear_error_not_a_traceback(tmp_path: Path, tiny_weights: Path,
                                                     monkeypatch: pytest.MonkeyPatch):
    save(small("coffee", 16), tmp_path / "in" / "a.png")

    def no_space(a, b):
        raise OSError(errno.ENOSPC, "No space left on device", str(a), None, str(b))

    monkeypatch.setattr(atomic.os, "replace", no_space)
    result = run_cli("protect", tmp_path / "in", "-o", tmp_path / "out", "--weights", tiny_weights, *FAST)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    assert "manifest.json: No space left on device" in result.output and "rerun the same command" in result.output


def test_an_unwritable_output_names_the_output_not_its_temporary_file(tmp_path: Path, tiny_weights: Path,
                                                                      monkeypatch: pytest.MonkeyPatch):
    save(small("coffee", 16), tmp_path / "in" / "a.png")

    def read_only_folder(path, mode="r", *args, **kwargs):
        if "w" in mode and str(path).endswith(".tmp"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(imageio, "open", read_only_folder, raising=False)
    result = run_cli("protect", tmp_path / "in", "-o", tmp_path / "out", "--weights", tiny_weights, *FAST)
    assert result.exit_code == 1
    assert f"{tmp_path / 'out' / 'a.png'}: Permission denied" in result.output.replace("\n", "")
    assert ".tmp" not in result.output

