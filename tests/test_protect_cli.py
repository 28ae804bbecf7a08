"""`unlearnable protect` and `unlearnable info` through Typer's CliRunner on real photo folders."""

from __future__ import annotations

import errno
import hashlib
import json
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms
from typer.testing import CliRunner

from unlearnable_cli.io import atomic, images as imageio
from unlearnable_cli.protect import manifest
from unlearnable_cli.models import weights
from unlearnable_cli.commands.app import app
from unlearnable_cli.io.images import read_image
from unlearnable_cli.protect.manifest import previous_records
from unlearnable_cli.protect.job import Entry

from conftest import BAD_FILES, CLASSES, save, small, tiny_model

runner = CliRunner()
FAST = ["--steps", "2", "--eot-samples", "2", "--quiet"]


def run(*args: str | Path):
    return runner.invoke(app, [str(a) for a in args])


def interrupt_at_png(monkeypatch: pytest.MonkeyPatch, n: int) -> Callable[[], None]:
    """Make the n-th PNG rename raise KeyboardInterrupt (Ctrl-C mid-run); returns the undo."""
    real_replace = imageio.os.replace
    calls = {"png": 0}

    def flaky_replace(a, b):
        if str(b).endswith(".png"):
            calls["png"] += 1
            if calls["png"] == n:
                raise KeyboardInterrupt
        return real_replace(a, b)

    monkeypatch.setattr(imageio.os, "replace", flaky_replace)
    return lambda: monkeypatch.setattr(imageio.os, "replace", real_replace)


def digests(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def pngs(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


def test_protects_a_real_photo_folder(photo_folder: Path, tiny_weights: Path, tmp_path: Path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    save(small("rocket"), photo_folder / "with_icc.png", icc_profile=icc)
    originals = digests(photo_folder)
    out = tmp_path / "out"
    result = run("protect", photo_folder, "-o", out, "--weights", tiny_weights, *FAST)

    assert result.exit_code == 1, result.output                      # three bad files
    for bad in BAD_FILES:
        assert f"{photo_folder / bad}:" in result.output
    assert "3 file(s) could not be protected" in result.output
    assert "1 camera-raw file(s) not protected" in result.output and "alice/IMG_0001.CR2" in result.output
    assert digests(photo_folder) == originals, "an original was modified"

    manifest = json.loads((out / "manifest.json").read_text())
    records = {r["source"]: r for r in manifest["images"]}
    good = [p.relative_to(photo_folder).as_posix() for p in imageio.find_images(photo_folder)
            if p.name not in BAD_FILES]
    assert sorted(records) == sorted(good)
    assert {f["source"] for f in manifest["failed"]} == BAD_FILES
    # a.jpg and a.png both kept under distinct names; nested and unicode paths mirrored
    assert records["dup.jpg"]["output"] == "dup.jpg.png" and records["dup.png"]["output"] == "dup.png.png"
    assert records["bob/deep/chelsea.webp"]["output"] == "bob/deep/chelsea.png"
    assert (out / "ünïcödé 照片.png").is_file()

    for src, rec in records.items():
        original = read_image(photo_folder / src)
        with Image.open(out / rec["output"]) as img:
            mode, arr, info = img.mode, np.asarray(img), img.info
        pixels = arr[..., None] if arr.ndim == 2 else arr
        channels = original.pixels.shape[2]
        assert pixels.shape[:2] == original.pixels.shape[:2], src
        diff = np.abs(pixels[..., :channels].astype(int) - original.pixels.astype(int))
        assert diff.max() <= 8 and diff.max() == rec["linf"], src     # the exact 8-bit bound
        assert diff.max() > 0, f"{src}: nothing was added"
        if original.alpha is not None:
            assert np.array_equal(pixels[..., -1], original.alpha), f"{src}: alpha changed"
        assert mode == {1: "L", 3: "RGB"}[channels] + ("A" if original.alpha is not None else "")
        assert "exif" not in info, f"{src}: EXIF kept without --keep-exif"
        assert rec["psnr"] > 30 and rec["loss_after"] <= rec["loss_before"] + 1e-6, src
    assert records["gray.png"]["channels"] == "gray" and records["gray16.png"]["channels"] == "gray"
    assert (records["alice/phone.heic"]["width"], records["alice/phone.heic"]["height"]) == (40, 60)  # upright
    with Image.open(out / "with_icc.png") as img:
        assert img.info.get("icc_profile") == icc
    # images directly in one folder share a class; the two named folders get different ones
    assert records["alice/astronaut.jpg"]["class"] == records["alice/coffee.png"]["class"]
    assert records["alice/astronaut.jpg"]["class"] != records["bob/rocket.tif"]["class"]
    assert not list(out.rglob("*.tmp"))


def test_keep_exif_and_labels_options(tmp_path: Path, tiny_weights: Path):
    from conftest import exif_rotated_jpeg
    src = tmp_path / "in"
    exif_rotated_jpeg(src / "r.jpg")
    save(small("coffee", 40), src / "c.png")
    out = tmp_path / "out"
    result = run("protect", src, "-o", out, "--weights", tiny_weights, "--keep-exif", "--labels", "cat", *FAST)
    assert result.exit_code == 0, result.output
    with Image.open(out / "r.png") as img:
        assert img.size == (40, 60)                                    # stored upright
        assert img.getexif().get(0x010F) == "TestCam"
    records = json.loads((out / "manifest.json").read_text())["images"]
    assert {r["class"] for r in records} == {"cat"}
    out2 = tmp_path / "out2"
    assert run("protect", src, "-o", out2, "--weights", tiny_weights, "--labels", "predict", *FAST).exit_code == 0
    assert len(json.loads((out2 / "manifest.json").read_text())["images"]) == 2


def test_names_labels_follow_folder_names(tmp_path: Path, tiny_weights: Path):
    src = tmp_path / "in"
    for name in CLASSES:
        save(small("coffee", 16), src / name / "x.png")
    out = tmp_path / "out"
    result = run("protect", src, "-o", out, "--weights", tiny_weights, "--labels", "names", *FAST)
    assert result.exit_code == 0, result.output
    records = json.loads((out / "manifest.json").read_text())["images"]
    assert {r["source"].split("/")[0]: r["class"] for r in records} == {c: c for c in CLASSES}


def test_same_seed_same_bytes_and_resume_after_interrupt(tmp_path: Path, tiny_weights: Path,
                                                         monkeypatch: pytest.MonkeyPatch):
    src = tmp_path / "in"
    for i, name in enumerate(["astronaut", "coffee", "chelsea", "rocket", "camera"]):
        save(small(name, 32).resize((32, 32)), src / f"{i}.png")      # equal sizes: real batches
    args = ["--weights", tiny_weights, "--batch-size", "2", "--seed", "7", *FAST]
    clean = tmp_path / "clean"
    assert run("protect", src, "-o", clean, *args).exit_code == 0
    again = tmp_path / "again"
    assert run("protect", src, "-o", again, *args).exit_code == 0
    assert pngs(clean) == pngs(again)
    other = tmp_path / "other"
    assert run("protect", src, "-o", other, *args[:-5], "--seed", "8", *FAST).exit_code == 0
    assert pngs(other) != pngs(clean)

    # Interrupt while renaming the 4th PNG: the middle of the second batch of two.
    resumed = tmp_path / "resumed"
    undo = interrupt_at_png(monkeypatch, 4)
    result = run("protect", src, "-o", resumed, *args)
    assert result.exit_code == 130 and "stopped:" in result.output and "error" not in result.output
    assert "rerun the same command" in result.output
    assert len(pngs(resumed)) == 3 and not list(resumed.rglob("*.tmp"))
    journal = resumed / ".manifest.journal.jsonl"          # every finished batch's records survive
    journaled = {json.loads(line)["source"] for line in journal.read_text().splitlines()}
    assert journaled == {p.name for p in resumed.glob("*.png")}
    with open(journal, "a") as f:
        f.write('{"source": "4.pn')                           # a record cut short by a crash
    undo()
    result = run("protect", src, "-o", resumed, *args)
    assert result.exit_code == 0, result.output
    assert pngs(resumed) == pngs(clean)
    assert not journal.exists() and len(json.loads((resumed / "manifest.json").read_text())["images"]) == 5
    # and a finished run skips everything
    result = run("protect", src, "-o", resumed, *args[:-1])
    assert result.exit_code == 0 and "Protected 0 image(s)" in result.output
    assert "(5 were already done and kept)" in result.output


def test_rerun_with_another_generator_or_settings_is_refused_not_mixed(tmp_path: Path, tiny_weights: Path,
                                                                     monkeypatch: pytest.MonkeyPatch):
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

    # Interrupted after the first image (batches of one): its header is already on disk.
    out = tmp_path / "out"
    undo = interrupt_at_png(monkeypatch, 2)
    assert run("protect", src, "-o", out, "--weights", tiny_weights, "--batch-size", "1", *FAST).exit_code == 130
    undo()
    assert len(pngs(out)) == 1
    before = digests(out)
    for extra, message in [(["--weights", tiny_weights, "--radius", "4"], "radius_levels: 8 → 4"),
                           (["--weights", tiny_weights, "--seed", "3"], "seed: 0 → 3"),
                           (["--weights", tiny_weights, "--labels", "cat"], "labels: folders → cat"),
                           (["--weights", tiny_weights, "--eot-grayscale", "0.5"], "eot_grayscale: 0.0 → 0.5"),
                           (["--weights", other], "generator tensors_sha256")]:
        result = run("protect", src, "-o", out, *extra, *FAST)
        assert result.exit_code == 1, (extra, result.output)
        assert "holds 1 image(s) protected with another generator or other settings" in result.output
        assert message in result.output and "--overwrite" in result.output
        assert digests(out) == before, "a refused run changed the output folder"
    # Speed-only settings and a moved weights file resume: the finished image is skipped.
    result = run("protect", src, "-o", out, "--weights", moved, "--batch-size", "3", *FAST[:-1])
    assert result.exit_code == 0, result.output
    assert "Protected 2 image(s)" in result.output and "(1 were already done and kept)" in result.output
    # --overwrite redoes everything with the new settings, under one consistent manifest.
    result = run("protect", src, "-o", out, "--weights", tiny_weights, "--radius", "4", "--overwrite", *FAST)
    assert result.exit_code == 0, result.output
    body = json.loads((out / "manifest.json").read_text())
    assert body["settings"]["radius_levels"] == 4 and len(body["images"]) == 3
    assert max(r["linf"] for r in body["images"]) <= 4
    assert body["generator"]["tensors_sha256"] == weights.model_digest(tiny_model()[0])


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


def test_eot_grayscale_keeps_the_bound_and_is_compared_with_older_manifests(tmp_path: Path, tiny_weights: Path):
    src = tmp_path / "in"
    save(small("coffee", 40), src / "a.png")
    save(small("camera", 40), src / "gray.png")
    out = tmp_path / "out"
    result = run("protect", src, "-o", out, "--weights", tiny_weights, "--eot-grayscale", "1", *FAST)
    assert result.exit_code == 0, result.output
    body = json.loads((out / "manifest.json").read_text())
    assert body["settings"]["eot_grayscale"] == 1.0
    for rec in body["images"]:
        with Image.open(out / rec["output"]) as img:
            arr = np.asarray(img).astype(int)
        original = read_image(src / rec["source"]).pixels.astype(int)
        assert np.abs(arr.reshape(original.shape) - original).max() == rec["linf"] <= 8
    # A manifest from before the option existed was made without grayscale draws.
    older = {"generator": {}, "settings": {"steps": 10}}
    current = {"generator": {}, "settings": {"steps": 10, "eot_grayscale": 0.5}}
    assert manifest.settings_differences(older, current) == ["eot_grayscale: 0.0 → 0.5"]
    current["settings"]["eot_grayscale"] = 0.0
    assert manifest.settings_differences(older, current) == []
    assert run("protect", src, "--weights", tiny_weights, "--eot-grayscale", "2", *FAST).exit_code == 1


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
    result = run("protect", tmp_path / "in", "-o", tmp_path / "out", "--weights", tiny_weights, *FAST)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.exception
    assert "manifest.json: No space left on device" in result.output and "rerun the same command" in result.output


def test_hidden_files_and_folders_are_ignored_with_a_warning(tmp_path: Path, tiny_weights: Path):
    src = tmp_path / "photos"
    save(small("coffee", 16), src / "a.png")
    save(small("rocket", 16), src / ".thumbnails" / "a.png")          # a hidden folder's copy
    save(small("chelsea", 16), src / ".secret.png")
    (src / "._a.png").write_bytes(b"\x00\x05\x16\x07" + bytes(60))  # macOS AppleDouble metadata
    result = run("protect", src, "-o", tmp_path / "out", "--weights", tiny_weights, *FAST)
    assert result.exit_code == 0, result.output
    assert "failed" not in result.output and "Protected 1 image(s)" in result.output
    assert "3 hidden file(s) or folder(s) ignored" in result.output and "._a.png" in result.output
    assert sorted(p.name for p in (tmp_path / "out").rglob("*.png")) == ["a.png"]
    only_hidden = tmp_path / "only-hidden"
    save(small("coffee", 16), only_hidden / ".a.png")
    result = run("protect", only_hidden, "--weights", tiny_weights, *FAST)
    assert result.exit_code == 1 and "no images found" in result.output and "1 hidden" in result.output


def test_output_inside_input_is_skipped_and_default_output_is_a_sibling(tmp_path: Path, tiny_weights: Path):
    src = tmp_path / "photos"
    save(small("coffee", 40), src / "a.png")
    assert run("protect", src, "-o", src / "protected", "--weights", tiny_weights, *FAST).exit_code == 0
    result = run("protect", src, "-o", src / "protected", "--weights", tiny_weights, *FAST)
    assert result.exit_code == 0 and "(1 were already done and kept)" in result.output
    assert not (src / "protected" / "protected").exists()
    assert run("protect", src, "--weights", tiny_weights, *FAST).exit_code == 0
    assert (tmp_path / "photos-protected" / "a.png").is_file()


@pytest.mark.parametrize("setup, extra, message", [
    (lambda p: None, [], "input does not exist"),
    (lambda p: p.mkdir(), [], "no images found"),
    (lambda p: save(small("coffee", 16), p / "a.png"), ["-o", "{in}"], "is the input folder"),
    (lambda p: save(small("coffee", 16), p / "a.png"), ["-o", "{parent}"], "contains the input folder"),
    (lambda p: save(small("coffee", 16), p / "a.png"), ["-o", "{file}/sub"], "not writable"),
    (lambda p: save(small("coffee", 16), p / "a.png"), ["-o", "{file}"], "is a file, not a folder"),
    (lambda p: save(small("coffee", 16), p / "a.png"), ["--steps", "0"], "--steps must be at least 1"),
    (lambda p: save(small("coffee", 16), p / "a.png"), ["--steps", "1", "--step-size", "0.5"],
     "less than one level from its random start"),
    (lambda p: save(small("coffee", 16), p / "a.png"), ["--radius", "0"], "--radius"),
    (lambda p: save(small("coffee", 16), p / "a.png"), ["--batch-size", "0"], "--batch-size"),
    (lambda p: save(small("coffee", 16), p / "a.png"), ["--labels", "zebra"], "zebra"),
    (lambda p: save(small("coffee", 16), p / "zebra" / "a.png"), ["--labels", "names"],
     "folder(s) 'zebra' are not named after a class"),
])
def test_clear_errors_before_any_work(tmp_path: Path, tiny_weights: Path, setup, extra, message):
    src = tmp_path / "in"
    setup(src)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    extra = [e.format(**{"in": src, "parent": tmp_path, "file": blocker}) for e in extra]
    result = run("protect", src, "--weights", tiny_weights, *FAST, *extra)     # extra wins over FAST
    assert result.exit_code == 1
    assert message in result.output
    assert [p for p in tmp_path.rglob("*.png") if src not in p.parents] == [], "work started"
    assert not list(tmp_path.rglob("manifest.json"))
    assert not (tmp_path / "in-protected").exists(), "an output folder was left behind"


def test_missing_default_generator_says_to_pass_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("UNLEARNABLE_WEIGHTS", raising=False)
    monkeypatch.setattr(weights, "SHIPPED", {weights.DEFAULT_GENERATOR: "does-not-exist.safetensors"})
    save(small("coffee", 16), tmp_path / "in" / "a.png")
    result = run("protect", tmp_path / "in", *FAST)
    assert result.exit_code == 1 and "pass --weights" in result.output


def test_bad_weights_file_is_a_clear_error(tmp_path: Path):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x00" * 64)
    save(small("coffee", 16), tmp_path / "in" / "a.png")
    result = run("protect", tmp_path / "in", "--weights", bad, *FAST)
    assert result.exit_code == 1 and "broken.safetensors: not a readable safetensors file" in result.output


def test_info_prints_the_card(tiny_weights: Path, tmp_path: Path):
    result = run("info", tiny_weights)
    assert result.exit_code == 0
    assert "convnet" in result.output and "airplane" in result.output and "32x32" in result.output
    as_json = json.loads(run("info", tiny_weights, "--json").output)
    assert as_json["class_names"][3] == "cat"
    assert run("info", tmp_path / "missing.safetensors").exit_code == 1
