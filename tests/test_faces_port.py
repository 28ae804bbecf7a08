"""The torch port of dlib's face recognizer (unlearnable_cli.faces).

Without the faces extra: the dlib-format reader on synthetic byte streams (a whole
network written in dlib's order), the net's shapes, the chip geometry and warp, gradients,
the safetensors cache.  With it (``pip install "unlearnable[faces]"``; skipped otherwise):
the released .dat, and the port against dlib itself on real faces.
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from unlearnable_cli.faces import chips as C
from unlearnable_cli.faces import weights as W
from unlearnable_cli.faces.dlib_format import (DlibFormatError, DlibReader, pack_alias, pack_bool, pack_float,
                                               pack_int, pack_string, pack_tensor)
from unlearnable_cli.faces.dlib_net import Layer, forward_layers, read_face_net
from unlearnable_cli.faces.model import DlibFaceNet, _add_prev

ROOT = Path(__file__).resolve().parents[1]
EMPTY = pack_tensor(np.zeros((0, 0, 0, 0), np.float32))


# -- a whole network, written as dlib writes it ----------------------------------------------

def _details(spec: Layer, t: dict[str, np.ndarray]) -> bytes:
    mult = b"".join(pack_float(v) for v in (1.0, 1.0, 1.0, 0.0))
    if spec.kind == "con":
        w, b = t[f"{spec.name}.weight"], t[f"{spec.name}.bias"]
        pad = 0 if spec.stride != 1 else spec.kernel // 2
        return (pack_string("con_4") + pack_tensor(np.concatenate([w.ravel(), b])[:, None])
                + b"".join(pack_int(v) for v in (spec.filters, spec.kernel, spec.kernel, spec.stride, spec.stride,
                                                 pad, pad))
                + pack_alias(w.shape) + pack_alias((1, spec.filters)) + mult)
    if spec.kind == "affine":
        g, b = t[f"{spec.name}.gamma"], t[f"{spec.name}.beta"]
        return (pack_string("affine_") + pack_tensor(np.concatenate([g, b])[:, None])
                + pack_alias((1, g.size)) + pack_alias((1, g.size)) + pack_int(0))
    if spec.kind in ("max_pool", "avg_pool"):
        pad = 0 if spec.stride != 1 else spec.kernel // 2
        return pack_string(f"{spec.kind}_2") + b"".join(
            pack_int(v) for v in (spec.kernel, spec.kernel, spec.stride, spec.stride, pad, pad))
    if spec.kind == "fc":
        w = t["fc.weight"].T                                  # dlib: inputs x outputs
        return (pack_string("fc_2") + pack_int(w.shape[1], False) + pack_int(w.shape[0], False) + pack_tensor(w)
                + pack_alias(w.shape) + pack_alias((1, w.shape[1])) + pack_int(1) + mult)
    return pack_string({"relu": "relu_", "add_prev": "add_prev_"}[spec.kind])


def write_net(t: dict[str, np.ndarray], means: tuple[float, float, float] = (122.5, 117.0, 104.25)) -> bytes:
    """``dlib::serialize`` of an ``anet_type`` holding the tensors ``t`` (torch names)."""
    seq = forward_layers()
    out = [pack_int(1), pack_string("loss_metric_2"), pack_float(0.04, 24), pack_float(0.6, 24)]
    out += [pack_int(1) if isinstance(i, str) else pack_int(3 if i is seq[0] else 2) for i in reversed(seq)]
    out += [pack_string("input_rgb_image_sized"), *(pack_float(m, 24) for m in means),
            pack_int(150, False), pack_int(150, False)]
    for spec in seq:
        if isinstance(spec, Layer):
            tail = EMPTY + pack_int(1, False) if spec is seq[0] else EMPTY
            out += [_details(spec, t), pack_bool(True), pack_bool(True), pack_bool(False), EMPTY, EMPTY, tail]
    return b"".join(out)


@pytest.fixture(scope="module")
def synthetic() -> tuple[dict[str, np.ndarray], bytes]:
    rng = np.random.default_rng(0)
    shapes = {k: tuple(v.shape) for k, v in DlibFaceNet().state_dict().items() if k != "means"}
    tensors = {k: (rng.standard_normal(s) * 0.05).astype(np.float32) for k, s in shapes.items()}
    return tensors, write_net(tensors)


def test_integers_and_floats_are_dlibs_bytes() -> None:
    # Byte sequences as found in dlib_face_recognition_resnet_model_v1.dat.
    assert pack_int(1) == b"\x01\x01" and pack_int(0) == b"\x01\x00" and pack_int(-4) == b"\x81\x04"
    assert pack_float(1.0) == bytes.fromhex("01108104") and pack_float(0.0) == bytes.fromhex("0100010b")
    r = DlibReader(pack_int(300) + pack_int(-70000, True) + pack_int(2**40, False) + pack_float(-3.25)
                   + pack_float(0.1, 24) + pack_string("con_4") + pack_bool(False))
    assert (r.int(), r.int(), r.uint(), r.float()) == (300, -70000, 2**40, -3.25)
    assert r.float() == pytest.approx(0.1, rel=1e-7) and r.string() == "con_4" and r.bool() is False
    assert r.at_end()


@pytest.mark.parametrize("data, read", [
    (pack_tensor(np.ones((2, 3), np.float32))[:-1], "tensor"),   # truncated data
    (b"x", "bool"), (b"\x00", "int"), (b"\x05\x01", "int"),        # bad control bytes for an int
    (b"1.5 ", "float"),                                           # dlib's old ASCII floats
])
def test_reader_refuses_bad_bytes(data: bytes, read: str) -> None:
    with pytest.raises(DlibFormatError, match="at byte"):
        getattr(DlibReader(data), read)()


def test_synthetic_network_reads_back_exactly(synthetic) -> None:
    tensors, data = synthetic
    parsed = read_face_net(data)
    assert parsed.means == (122.5, 117.0, 104.25) and parsed.loss["distance_threshold"] == pytest.approx(0.6)
    assert parsed.tensors.keys() == tensors.keys()
    for name, value in tensors.items():
        np.testing.assert_array_equal(parsed.tensors[name], value, err_msg=name)
    net = DlibFaceNet.from_file(parsed)
    assert net(torch.rand(2, 3, 150, 150)).shape == (2, 128)


@pytest.mark.parametrize("edit", ["truncate", "trailing", "version", "kernel"])
def test_synthetic_network_refuses_damage(synthetic, edit: str) -> None:
    data = synthetic[1]
    bad = {"truncate": data[:-1], "trailing": data + b"\x00",
           "version": data.replace(b"con_4", b"con_9", 1),
           "kernel": data.replace(pack_string("max_pool_2") + pack_int(3), pack_string("max_pool_2") + pack_int(5))}
    with pytest.raises(DlibFormatError):
        read_face_net(bad[edit], "test.dat")


def test_add_prev_zero_pads_at_the_end_like_dlib_and_sizes_follow() -> None:
    s = _add_prev(torch.ones(1, 2, 3, 3), torch.full((1, 4, 4, 4), 2.0))
    assert s.shape == (1, 4, 4, 4)
    assert (s[:, :2, :3, :3] == 3).all() and s[:, 2:].eq(2).all() and s[:, :, 3].eq(2).all()
    net, sizes = DlibFaceNet(), []
    for block in net.blocks:
        block.register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1]))
    net(torch.rand(1, 3, 150, 150))
    assert sizes == [35] * 3 + [17] * 4 + [8] * 3 + [4] * 3 + [2]   # last: conv 4 -> 1, pool 4 -> 2


# -- chips -----------------------------------------------------------------------------------

LANDMARKS = np.array([[140, 84], [123, 86], [79, 84], [96, 86], [109, 120]])   # a face in a 250 px photo


def test_similarity_transform_recovers_a_similarity() -> None:
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -5.0])
    m = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    got_m, got_t = C.similarity_transform(src, src @ m.T + shift)
    np.testing.assert_allclose(got_m, m, atol=1e-12)
    np.testing.assert_allclose(got_t, shift, atol=1e-10)


def test_chip_geometry_uses_pyramid_levels_for_big_faces() -> None:
    assert C.chip_geometry(LANDMARKS, (250, 250)).levels == 0
    assert C.chip_geometry(LANDMARKS * 4, (1000, 1000)).levels == 1
    assert C.chip_geometry(LANDMARKS * 8, (2000, 2000)).levels == 2


@pytest.mark.parametrize("scale", [1, 4])
def test_gradient_reaches_the_photo_pixels(scale: int) -> None:
    torch.manual_seed(0)
    photo = torch.rand(3, 250 * scale, 250 * scale, dtype=torch.float64, requires_grad=True)
    geometry = C.chip_geometry(LANDMARKS * scale, (250 * scale, 250 * scale))
    weights = torch.rand(3, 150, 150, dtype=torch.float64)
    (C.warp_chip(photo, geometry) * weights).sum().backward()
    grad = photo.grad
    l, t, r, b = geometry.box
    assert grad[:, t:b + 1, l:r + 1].abs().sum() > 0
    outside = grad.clone()
    outside[:, t:b + 1, l:r + 1] = 0
    assert outside.abs().sum() == 0
    # Without quantization the warp is linear: the gradient is exact.
    direction = torch.rand_like(photo)

    def loss(p: torch.Tensor) -> torch.Tensor:
        return (C.warp_chip(p, geometry, quantize=False) * weights).sum()
    g = torch.autograd.grad(loss(photo), photo)[0]
    with torch.no_grad():
        fd = (loss(photo + 1e-3 * direction) - loss(photo)) / 1e-3
    assert float((g * direction).sum()) == pytest.approx(float(fd), rel=1e-6)


def test_plain_crop_path_pads_with_black() -> None:
    photo = torch.rand(3, 100, 100)
    chip = C.warp_chip(photo, C.ChipGeometry((-10, 20, 139, 169), 0, np.eye(2, 3), 150, copy=True))
    assert chip.shape == (3, 150, 150) and chip[:, :, :10].eq(0).all() and chip[:, 80:].eq(0).all()
    torch.testing.assert_close(chip[:, :80, 10:110], torch.round(photo[:, 20:, :] * 255) / 255)


# -- the cache -------------------------------------------------------------------------------

@pytest.fixture()
def dat(tmp_path: Path, synthetic) -> Path:
    (tmp_path / "net.dat").write_bytes(synthetic[1])
    return tmp_path / "net.dat"


def _cache_file(cache: Path) -> Path:
    return next(cache.glob("*.safetensors"))


def test_cache_is_written_once_then_reused(tmp_path: Path, dat: Path, synthetic, monkeypatch) -> None:
    cache = tmp_path / "cache"
    first = W.cached_tensors(dat, cache)
    assert _cache_file(cache).name.startswith("net-") and not list(cache.glob("*.tmp"))
    monkeypatch.setattr(W, "convert", lambda *a: pytest.fail("converted again instead of using the cache"))
    second = W.cached_tensors(dat, cache)
    for name, value in synthetic[0].items():
        assert torch.equal(second[name], torch.from_numpy(value)) and torch.equal(first[name], second[name])
    net = W.load_face_net(dat, cache)
    assert isinstance(net, DlibFaceNet) and not net.training


@pytest.mark.parametrize("damage", ["flip", "garbage", "other-source"])
def test_damaged_cache_is_rebuilt_with_a_warning(tmp_path: Path, dat: Path, synthetic, damage: str) -> None:
    cache = tmp_path / "cache"
    W.cached_tensors(dat, cache)
    file = _cache_file(cache)
    blob = bytearray(file.read_bytes())
    if damage == "flip":
        blob[-100] ^= 0x40                                   # inside the last tensor's data
    elif damage == "garbage":
        blob = bytearray(b"not a safetensors file")
    else:
        blob = blob.replace(W.sha256_bytes(dat.read_bytes()).encode(), b"0" * 64)
    file.write_bytes(bytes(blob))
    with pytest.warns(UserWarning, match=f"face model cache {file}.*rebuilding"):
        tensors = W.cached_tensors(dat, cache)
    for name, value in synthetic[0].items():
        assert torch.equal(tensors[name], torch.from_numpy(value))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        W.cached_tensors(dat, cache)                          # the rebuilt file checks out


def test_cache_location_and_unwritable_folder(tmp_path: Path, dat: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert W.cache_dir() == tmp_path / "xdg" / "unlearnable" / "faces"
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.warns(UserWarning, match="could not write the face model cache"):
        assert "fc.weight" in W.cached_tensors(dat, blocker / "sub")


def test_missing_extra_says_what_to_install(monkeypatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(W.FacesExtraMissing, match=r'pip install "unlearnable\[faces\]"'):
        W.model_file()
    monkeypatch.setitem(__import__("sys").modules, "dlib", None)
    with pytest.raises(W.FacesExtraMissing, match=r'pip install "unlearnable\[faces\]"'):
        W.import_dlib()


# -- against dlib itself (the faces extra) ---------------------------------------------------

@pytest.fixture(scope="module")
def net(faces_extra, tmp_path_factory) -> DlibFaceNet:
    return W.load_face_net(cache=tmp_path_factory.mktemp("cache"))


def test_released_file_is_read_to_its_last_byte(faces_extra) -> None:
    data = W.model_file().read_bytes()
    assert W.sha256_bytes(data) == W.RELEASED_DAT_SHA256
    assert W.tensors_sha256(W.convert(data, "released")) == W.RELEASED_TENSORS_SHA256


def _photos() -> list[tuple[str, np.ndarray]]:
    from PIL import Image
    from skimage import data
    astronaut = data.astronaut()
    big = np.asarray(Image.fromarray(astronaut).resize((1536, 1536), Image.BICUBIC))
    with Image.open(ROOT / "examples" / "photos" / "people" / "astronaut.jpg") as im:
        jpeg = np.asarray(im.convert("RGB"))
    return [("astronaut", astronaut), ("astronaut x3 (pyramid)", big), ("examples jpeg", jpeg)]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_port_matches_dlib_on_real_faces_and_gradients_flow(faces_extra, net: DlibFaceNet, index: int) -> None:
    name, image = _photos()[index]
    marks = faces_extra.detect_landmarks(image)[:1]
    assert marks, f"dlib found no face in {name}"
    photo = (torch.from_numpy(image.copy()).permute(2, 0, 1).float() / 255).requires_grad_()
    chips = C.face_chips(photo, marks)
    ours = (chips[0] * 255).round().byte().permute(1, 2, 0).numpy()
    theirs = faces_extra.dlib_chip(image, marks[0])
    assert np.abs(ours.astype(int) - theirs).max() <= 1, name
    out = net(chips)
    out.norm().backward()                                     # the gradient reaches the photo's pixels
    assert photo.grad.abs().sum() > 0 and torch.isfinite(photo.grad).all()
    emb, ref = out.detach().double().numpy()[0], faces_extra.dlib_descriptors(image, marks)[0]
    assert emb @ ref / np.linalg.norm(emb) / np.linalg.norm(ref) >= 0.9999, name
    assert np.linalg.norm(emb - ref) < 1e-4, name
