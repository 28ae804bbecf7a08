"""Decoding every kind of file a photo folder holds, and refusing bad ones clearly."""

import numpy as np
import pytest
from PIL import Image, ImageCms

from unlearnable_cli.io.images import ImageReadError, find_images, read_image, write_image

from conftest import exif_rotated_jpeg, save, small


def test_modes_are_normalized(photo_folder):
    rgba = read_image(photo_folder / "logo_rgba.png")
    assert rgba.pixels.shape[2] == 3 and rgba.alpha is not None and rgba.alpha.min() < 255
    gray = read_image(photo_folder / "gray.png")
    assert gray.grayscale and gray.alpha is None
    assert read_image(photo_folder / "palette.gif").pixels.shape[2] == 3
    cmyk = read_image(photo_folder / "cmyk.jpg")
    assert cmyk.pixels.shape[2] == 3 and cmyk.icc is None
    g16 = read_image(photo_folder / "gray16.png")
    assert g16.grayscale and g16.pixels.dtype == np.uint8
    assert np.array_equal(g16.pixels[..., 0], np.asarray(small("camera").convert("L")))  # v*257/257


def test_exif_orientation_is_applied(tmp_path):
    path = exif_rotated_jpeg(tmp_path / "r.jpg")
    img = read_image(path)
    assert img.pixels.shape[:2] == (60, 40)           # stored 60 wide x 40 high, displayed rotated
    with Image.open(path) as raw:
        expected = np.asarray(raw.transpose(Image.Transpose.ROTATE_270))
    assert np.array_equal(img.pixels, expected)
    exif = Image.Exif()
    exif.load(img.exif)
    assert exif.get(0x010F) == "TestCam" and exif.get(0x0112) in (None, 1)   # kept, orientation reset


@pytest.mark.parametrize("name, reason", [("truncated.jpg", "truncated or corrupt"),
                                          ("zero.png", "empty file"),
                                          ("notes.jpg", "not a recognized image")])
def test_bad_files_name_the_file_and_reason(photo_folder, name, reason):
    with pytest.raises(ImageReadError) as info:
        read_image(photo_folder / name)
    assert str(photo_folder / name) in str(info.value) and reason in str(info.value)


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    bomb = tmp_path / "bomb.png"
    Image.new("1", (10_000, 10_000)).save(bomb)       # 100 megapixels in a tiny file
    assert bomb.stat().st_size < 200_000
    with pytest.raises(ImageReadError, match="exceeds.*limit.*decompression bomb") as refused:
        read_image(bomb)
    message = str(refused.value)          # one limit, the one in force (not Pillow's as well)
    assert "100,000,000 pixels exceeds the limit of 50,000,000" in message and "89,478,485" not in message
    with pytest.raises(ImageReadError, match="Pillow's own limit, which --max-pixels cannot raise"):
        read_image(bomb, max_pixels=200_000_000)
    ok = save(small("coffee", 64), tmp_path / "ok.png")
    with pytest.raises(ImageReadError, match="--max-pixels"):
        read_image(ok, max_pixels=100)


def test_find_images_is_recursive_case_insensitive_and_can_exclude(tmp_path):
    save(small("coffee", 16), tmp_path / "A.JPG")
    save(small("coffee", 16), tmp_path / "sub" / "b.Png")
    save(small("coffee", 16), tmp_path / "out" / "c.png")
    (tmp_path / "d.txt").write_text("x")
    found = [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path, exclude=tmp_path / "out")]
    assert found == ["A.JPG", "sub/b.Png"]


def test_write_image_keeps_icc_and_alpha_and_leaves_no_temp_files(tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    pixels = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    alpha = np.full((20, 30), 128, np.uint8)
    out = tmp_path / "x" / "o.png"
    write_image(out, pixels, alpha, icc=icc)
    with Image.open(out) as img:
        assert img.mode == "RGBA" and img.info.get("icc_profile") == icc
        arr = np.asarray(img)
    assert np.array_equal(arr[..., :3], pixels) and np.array_equal(arr[..., 3], alpha)
    assert [p.name for p in out.parent.iterdir()] == ["o.png"]


def test_animated_gif_uses_the_first_frame_and_palette_transparency_becomes_alpha(tmp_path):
    red, blue = Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))
    red.save(tmp_path / "anim.gif", save_all=True, append_images=[blue], duration=100, loop=0)
    img = read_image(tmp_path / "anim.gif")
    assert img.pixels.shape == (8, 8, 3) and tuple(img.pixels[0, 0]) == (255, 0, 0)
    pal = Image.new("P", (6, 6), 1)
    pal.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    pal.info["transparency"] = 0
    pal.putpixel((0, 0), 0)
    pal.save(tmp_path / "pal.png", transparency=0)
    decoded = read_image(tmp_path / "pal.png")
    assert decoded.alpha is not None and decoded.alpha[0, 0] == 0 and decoded.alpha[1, 1] == 255
    assert tuple(decoded.pixels[1, 1]) == (200, 100, 50)
