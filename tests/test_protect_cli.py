"""`unlearnable protect` through Typer's CliRunner on real photo folders: what it writes
(bounds, modes, names, labels, formats, previews), what it passes over, and the errors it
gives before any work.  Interruptions and reruns: test_protect_resume.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from unlearnable_cli.io import images as imageio
from unlearnable_cli.io.datasets import match_folders
from unlearnable_cli.io.images import read_image
from unlearnable_cli.protect import manifest

from conftest import BAD_FILES, CLASSES, FAST, digests, exif_rotated_jpeg, run_cli, save, small


def test_protects_a_real_photo_folder(photo_folder: Path, tiny_weights: Path, tmp_path: Path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    save(small("rocket"), photo_folder / "with_icc.png", icc_profile=icc)
    originals = digests(photo_folder)
    out = tmp_path / "out"
    result = run_cli("protect", photo_folder, "-o", out, "--weights", tiny_weights, *FAST)

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



def test_a_single_photo_can_be_protected(tmp_path: Path, tiny_weights: Path):
    photo = save(small("coffee", 40), tmp_path / "holiday" / "photo.jpg", quality=95)
    result = run_cli("protect", photo, "--weights", tiny_weights, *FAST)
    assert result.exit_code == 0, result.output
    out = tmp_path / "holiday" / "photo-protected"
    assert (out / "photo.png").is_file() and (out / "manifest.json").is_file()
    result = run_cli("protect", photo, "-o", tmp_path / "holiday", "--weights", tiny_weights, *FAST)
    assert result.exit_code == 1 and "the folder holding the input" in result.output



def test_keep_exif_and_labels_options(tmp_path: Path, tiny_weights: Path):
    src = tmp_path / "in"
    exif_rotated_jpeg(src / "r.jpg")
    save(small("coffee", 40), src / "c.png")
    out = tmp_path / "out"
    result = run_cli("protect", src, "-o", out, "--weights", tiny_weights, "--keep-exif", "--labels", "cat", *FAST)
    assert result.exit_code == 0, result.output
    with Image.open(out / "r.png") as img:
        assert img.size == (40, 60)                                    # stored upright
        assert img.getexif().get(0x010F) == "TestCam"
    records = json.loads((out / "manifest.json").read_text())["images"]
    assert {r["class"] for r in records} == {"cat"}
    out2 = tmp_path / "out2"
    assert run_cli("protect", src, "-o", out2, "--weights", tiny_weights, "--labels", "predict", *FAST).exit_code == 0
    assert len(json.loads((out2 / "manifest.json").read_text())["images"]) == 2


def test_names_labels_follow_folder_names(tmp_path: Path, tiny_weights: Path):
    src = tmp_path / "in"
    for name in CLASSES:
        save(small("coffee", 16), src / name / "x.png")
    out = tmp_path / "out"
    result = run_cli("protect", src, "-o", out, "--weights", tiny_weights, "--labels", "names", *FAST)
    assert result.exit_code == 0, result.output
    records = json.loads((out / "manifest.json").read_text())["images"]
    assert {r["source"].split("/")[0]: r["class"] for r in records} == {c: c for c in CLASSES}


def test_eot_grayscale_keeps_the_bound_and_is_compared_with_older_manifests(tmp_path: Path, tiny_weights: Path):
    src = tmp_path / "in"
    save(small("coffee", 40), src / "a.png")
    save(small("camera", 40), src / "gray.png")
    out = tmp_path / "out"
    result = run_cli("protect", src, "-o", out, "--weights", tiny_weights, "--eot-grayscale", "1", *FAST)
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
    assert run_cli("protect", src, "--weights", tiny_weights, "--eot-grayscale", "2", *FAST).exit_code == 1



def test_lossless_webp_keeps_the_bound_and_eval_pairs_it(tmp_path: Path, tiny_weights: Path):
    save(small("coffee", 48), tmp_path / "in" / "a.jpg", quality=95)
    save(small("camera", 48).convert("L"), tmp_path / "in" / "gray.png")
    out = tmp_path / "out"
    result = run_cli("protect", tmp_path / "in", "-o", out, "--weights", tiny_weights, "--format", "webp", *FAST)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.webp")) == ["a.webp", "gray.webp"]
    for src, dst in (("a.jpg", "a.webp"), ("gray.png", "gray.webp")):
        a = read_image(tmp_path / "in" / src).pixels.astype(int)
        b = read_image(out / dst).pixels.astype(int)
        assert np.abs(b - a).max() <= 8                              # broadcasts gray against RGB
    pairs, only_clean, only_prot = match_folders(tmp_path / "in", out)
    assert len(pairs) == 2 and not only_clean and not only_prot
    # another format is another setting: refused, not mixed
    result = run_cli("protect", tmp_path / "in", "-o", out, "--weights", tiny_weights, *FAST)
    assert result.exit_code == 1 and "format: webp → png" in result.output


def test_preview_writes_side_by_side_sheets_and_nothing_else(tmp_path: Path, tiny_weights: Path):
    for i, name in enumerate(["coffee", "rocket", "chelsea"]):
        save(small(name, 32), tmp_path / "in" / f"{i}.png")
    result = run_cli("protect", tmp_path / "in", "--weights", tiny_weights, "--preview", "2", *FAST)
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



def test_hidden_files_and_folders_are_ignored_with_a_warning(tmp_path: Path, tiny_weights: Path):
    src = tmp_path / "photos"
    save(small("coffee", 16), src / "a.png")
    save(small("rocket", 16), src / ".thumbnails" / "a.png")          # a hidden folder's copy
    save(small("chelsea", 16), src / ".secret.png")
    (src / "._a.png").write_bytes(b"\x00\x05\x16\x07" + bytes(60))  # macOS AppleDouble metadata
    result = run_cli("protect", src, "-o", tmp_path / "out", "--weights", tiny_weights, *FAST)
    assert result.exit_code == 0, result.output
    assert "failed" not in result.output and "Protected 1 image(s)" in result.output
    assert "3 hidden file(s) or folder(s) ignored" in result.output and "._a.png" in result.output
    assert sorted(p.name for p in (tmp_path / "out").rglob("*.png")) == ["a.png"]
    only_hidden = tmp_path / "only-hidden"
    save(small("coffee", 16), only_hidden / ".a.png")
    result = run_cli("protect", only_hidden, "--weights", tiny_weights, *FAST)
    assert result.exit_code == 1 and "no images found" in result.output and "1 hidden" in result.output



def test_linked_folders_are_followed_once_and_loops_do_not_hang(tmp_path: Path, tiny_weights: Path):
    src = tmp_path / "photos"
    elsewhere = tmp_path / "elsewhere" / "holiday"
    save(small("coffee", 16), src / "a.png")
    save(small("rocket", 16), elsewhere / "b.png")
    (src / "holiday").symlink_to(elsewhere, target_is_directory=True)
    (src / "again").symlink_to(src, target_is_directory=True)        # a cycle back to the top
    out = tmp_path / "out"
    result = run_cli("protect", src, "-o", out, "--weights", tiny_weights, *FAST)
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["a.png", "holiday/b.png"]
    assert "1 linked folder(s) not entered" in result.output and "again" in result.output



def test_output_inside_input_is_skipped_and_default_output_is_a_sibling(tmp_path: Path, tiny_weights: Path):
    src = tmp_path / "photos"
    save(small("coffee", 40), src / "a.png")
    assert run_cli("protect", src, "-o", src / "protected", "--weights", tiny_weights, *FAST).exit_code == 0
    result = run_cli("protect", src, "-o", src / "protected", "--weights", tiny_weights, *FAST)
    assert result.exit_code == 0 and "(1 were already done and kept)" in result.output
    assert not (src / "protected" / "protected").exists()
    assert run_cli("protect", src, "--weights", tiny_weights, *FAST).exit_code == 0
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
    result = run_cli("protect", src, "--weights", tiny_weights, *FAST, *extra)     # extra wins over FAST
    assert result.exit_code == 1
    assert message in result.output
    assert [p for p in tmp_path.rglob("*.png") if src not in p.parents] == [], "work started"
    assert not list(tmp_path.rglob("manifest.json"))
    assert not (tmp_path / "in-protected").exists(), "an output folder was left behind"

