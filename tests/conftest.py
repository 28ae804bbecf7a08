"""Shared fixtures: tiny generators built in the test, real photos, odd files."""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import io
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, features
from typer.testing import CliRunner

from unlearnable_cli.commands.app import app
from unlearnable_cli.models.weights import GeneratorCard, save_generator

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``shared_data`` skip, saying why, where ``../shared/data`` is absent
    (a user's fresh clone has no ../shared)."""
    if SHARED_DATA.is_dir():
        return
    skip = pytest.mark.skip(reason=f"needs {SHARED_DATA} (not part of the repository)")
    for item in items:
        if "shared_data" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def faces_extra():  # noqa: ANN201 - the dlib_tools module
    """dlib and its model files (the ``faces`` extra), or a skip saying what to install."""
    from unlearnable_cli.faces import weights
    try:
        weights.import_dlib()
        weights.model_file()
    except weights.FacesExtraMissing as err:                  # says: pip install "unlearnable[faces]"
        pytest.skip(str(err))
    from unlearnable_cli.faces import dlib_tools
    return dlib_tools


runner = CliRunner()
#: ``protect`` in two noise steps of two transform draws, without progress bars.
FAST = ["--steps", "2", "--eot-samples", "2", "--quiet"]


def run_cli(*args: str | Path):  # noqa: ANN201 - click.testing.Result
    """``unlearnable ARGS...`` through Typer's CliRunner (paths may be given as Paths)."""
    return runner.invoke(app, [str(a) for a in args])


def digests(root: Path) -> dict[str, str]:
    """Every file under ``root`` by relative path: its SHA-256."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def pngs(root: Path) -> dict[str, bytes]:
    """Every PNG under ``root`` by relative path: its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.png"))}


@contextlib.contextmanager
def interrupt_after(target: tuple[object, str], n: int, what: int | type[BaseException]) -> Iterator[None]:
    """Inside the block, once ``getattr(*target)`` has returned for the ``n``-th time, deliver
    ``what``: a signal sent to this process (``signal.SIGINT`` is a Ctrl-C), or an exception
    raised there.  The real attribute is back afterwards."""
    owner, name = target
    real = getattr(owner, name)
    calls = {"n": 0}

    @functools.wraps(real)
    def then_interrupt(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == n:
            if isinstance(what, int):
                os.kill(os.getpid(), what)
            else:
                raise what()
        return result

    setattr(owner, name, then_interrupt)
    try:
        yield
    finally:
        setattr(owner, name, real)


def straight_and_interrupted(data: Path, tmp: Path, cfg: object, method: type, n: int) -> tuple[Path, Path]:
    """Train ``cfg`` on ``data`` once straight through (``a.safetensors``) and once stopped by
    a Ctrl-C after ``n`` of ``method``'s training steps (``b``: only its checkpoint exists)."""
    import signal
    from unlearnable_cli.commands.console import stop_requests
    from unlearnable_cli.config import Interrupted
    from unlearnable_cli.train import train_generator
    straight, resumed = tmp / "a.safetensors", tmp / "b.safetensors"
    train_generator(data, straight, cfg, torch.device("cpu"))  # type: ignore[arg-type]
    with interrupt_after((method, "train_step"), n, signal.SIGINT), stop_requests(graceful=True) as stop, \
            pytest.raises(Interrupted):
        train_generator(data, resumed, cfg, torch.device("cpu"), should_stop=stop)  # type: ignore[arg-type]
    return straight, resumed


CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@functools.lru_cache(maxsize=None)
def _trained_tiny(width: int) -> tuple[dict[str, torch.Tensor], GeneratorCard]:
    """A ConvNet trained for 40 steps on colour-coded synthetic classes: a real (if weak)
    classifier whose loss responds to small input changes, built in seconds."""
    card = GeneratorCard(arch="convnet", arch_kwargs={"width": width}, class_names=list(CLASSES),
                         mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), method="sem",
                         hyperparameters={"adv_radius": 4 / 255, "adv_step_size": 0.8 / 255, "adv_steps": 2})
    torch.manual_seed(0)
    model = card.build()
    g = torch.Generator().manual_seed(0)
    colours = torch.rand(10, 3, 1, 1, generator=g)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(40):
        y = torch.randint(0, 10, (64,), generator=g)
        x = 0.5 * colours[y] + 0.5 * torch.rand(64, 3, 32, 32, generator=g)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.clone() for k, v in model.state_dict().items()}, card


def tiny_model(width: int = 4) -> tuple[torch.nn.Module, GeneratorCard]:
    """A fresh copy of the cached tiny trained generator and its card."""
    state, card = _trained_tiny(width)
    model = card.build()
    model.load_state_dict(state)
    return model.eval(), copy.deepcopy(card)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model, card = tiny_model()
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_generator(path, model, card)
    return path


def tinted_classes(root: Path, classes: list[str], per_class: int, size: int = 32) -> Path:
    """An image-folder data set where class c is noise with channel c raised: learnable in a few steps."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            arr = rng.integers(0, 120, (size, size, 3), dtype=np.uint8)
            arr[..., c] += 120
            Image.fromarray(arr).save(root / name / f"{i}.png")
    return root


def skimage_photo(name: str) -> np.ndarray:
    from skimage import data
    return getattr(data, name)()


def save(arr_or_img: np.ndarray | Image.Image, path: Path, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = arr_or_img if isinstance(arr_or_img, Image.Image) else Image.fromarray(arr_or_img)
    img.save(path, **kwargs)
    return path


def small(name: str, size: int = 96) -> Image.Image:
    """A real photo from scikit-image, shrunk to keep tests fast."""
    img = Image.fromarray(skimage_photo(name))
    img.thumbnail((size, size))
    return img


def exif_rotated_jpeg(path: Path) -> Path:
    """A 60x40 (W x H) photo with EXIF orientation 6 (display rotated 90° clockwise);
    JPEG unless ``path``'s suffix names another format (HEIC for a phone's photo)."""
    img = small("astronaut", 60).resize((60, 40))
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "TestCam"
    return save(img, path, exif=exif.tobytes(), quality=95)


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    """Real photos (scikit-image samples) in nested folders plus every odd case the tool must handle."""
    root = tmp_path / "photos"
    save(small("astronaut"), root / "alice" / "astronaut.jpg", quality=95)
    save(small("coffee"), root / "alice" / "coffee.png")
    save(small("chelsea"), root / "bob" / "deep" / "chelsea.webp", quality=95)
    save(small("rocket"), root / "bob" / "rocket.tif")
    save(small("camera").convert("L"), root / "gray.png")
    logo = small("logo").convert("RGBA")
    logo.putalpha(Image.linear_gradient("L").resize(logo.size))      # RGBA with a real alpha ramp
    save(logo, root / "logo_rgba.png")
    save(small("coffee").convert("P", palette=Image.Palette.ADAPTIVE), root / "palette.gif")
    save(small("chelsea").convert("CMYK"), root / "cmyk.jpg")
    arr16 = (np.asarray(small("camera").convert("L")).astype(np.uint16) * 257)
    save(Image.fromarray(arr16), root / "gray16.png")
    exif_rotated_jpeg(root / "rotated.jpg")
    exif_rotated_jpeg(root / "alice" / "phone.heic")                  # an iPhone's default format
    if features.check("avif"):
        save(small("rocket", 48), root / "bob" / "still.avif", quality=90)
    (root / "alice" / "IMG_0001.CR2").write_bytes(b"II*\x00 camera raw")  # passed over, with a warning
    save(small("astronaut", 48), root / "ünïcödé 照片.bmp")
    save(small("coffee", 40), root / "dup.jpg", quality=95)
    save(small("chelsea", 40), root / "dup.png")
    good = io.BytesIO()
    small("rocket").save(good, format="JPEG")
    (root / "truncated.jpg").write_bytes(good.getvalue()[: len(good.getvalue()) // 3])
    (root / "zero.png").write_bytes(b"")
    (root / "notes.jpg").write_text("this is a text file, not a JPEG")
    (root / "readme.txt").write_text("ignored: not an image suffix")
    return root


BAD_FILES = {"truncated.jpg", "zero.png", "notes.jpg"}
