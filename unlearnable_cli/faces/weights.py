"""Where dlib's model files are, and the converted tensors' cache (safetensors, by hash).

The faces extra (``pip install "unlearnable[faces]"``) brings ``dlib-bin`` (the compiled
dlib, for face detection, landmarks and the reference descriptors) and
``face-recognition-models`` (dlib's released .dat files).  Nothing of theirs is committed
here.  The network's tensors are parsed from the .dat once (:mod:`.dlib_net`, about 0.1 s)
and cached as ``<cache>/faces/<stem>-<sha256 of the .dat, 16 hex>.safetensors`` (``<cache>``
is ``$XDG_CACHE_HOME/unlearnable`` or ``~/.cache/unlearnable``), written atomically (a
temporary file in the same folder, then ``os.replace``).  The cache records the SHA-256 of
its source .dat and of its tensors (names, shapes and bytes, :func:`tensors_sha256`); a
cache that does not parse, or whose hashes do not match the .dat or its own tensors (or,
for the released .dat, the hash this module knows), is rebuilt from the .dat with a
warning naming the file.  No pickle is ever loaded.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save

from .dlib_net import read_face_net
from .model import DlibFaceNet

RECOGNITION_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
LANDMARKS_MODEL = "shape_predictor_5_face_landmarks.dat"
#: SHA-256 of face-recognition-models' ``dlib_face_recognition_resnet_model_v1.dat`` and of
#: the tensors this module converts it to (the same file in face-recognition-models 0.1.3 and 0.3.0).
RELEASED_DAT_SHA256 = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"
RELEASED_TENSORS_SHA256 = "0ae5a10e844c9c4ab286cd7432f387b48704eceebe6c52540bfb25718562aa7f"
INSTALL_HINT = 'pip install "unlearnable[faces]"'


class FacesExtraMissing(ImportError):
    """dlib or face-recognition-models is not installed."""


class FaceCacheError(RuntimeError):
    """A cached conversion is unusable and could not be rebuilt."""


def _missing(what: str) -> FacesExtraMissing:
    return FacesExtraMissing(f"{what} is not installed; face recognition needs the faces extra: {INSTALL_HINT}")


def import_dlib() -> ModuleType:
    """The ``dlib`` module, or :class:`FacesExtraMissing` saying which extra to install."""
    try:
        import dlib
    except ImportError as err:
        raise _missing("dlib (the dlib-bin package)") from err
    return dlib


def model_file(name: str = RECOGNITION_MODEL) -> Path:
    """Path of one of face-recognition-models' .dat files.

    Found without importing the package: its ``__init__`` needs ``pkg_resources``, which
    setuptools >= 81 no longer ships.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise _missing("face-recognition-models")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / name
    if not path.is_file():
        raise _missing(f"face-recognition-models' {name}")
    return path


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/unlearnable/faces`` or ``~/.cache/unlearnable/faces``."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "unlearnable" / "faces"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor in name order: name, dtype, shape, little-endian bytes."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().astype(t.numpy().dtype.newbyteorder("<"), copy=False).tobytes())
    return h.hexdigest()


def convert(dat: bytes, name: str) -> dict[str, torch.Tensor]:
    """The .dat's tensors under the torch module's names, plus ``means`` (3,)."""
    parsed = read_face_net(dat, name)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in parsed.tensors.items()}
    tensors["means"] = torch.tensor(parsed.means, dtype=torch.float32)
    return tensors


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder + os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _check_cache(path: Path, dat_sha: str) -> dict[str, torch.Tensor]:
    """The cached tensors, or ValueError saying what is wrong with ``path``."""
    try:
        tensors = load_file(str(path))
        meta = _metadata(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"unreadable ({err})") from err
    if meta.get("source_sha256") != dat_sha:
        raise ValueError(f"made from another .dat (source_sha256 {meta.get('source_sha256')!r})")
    actual = tensors_sha256(tensors)
    if actual != meta.get("tensors_sha256"):
        raise ValueError("its tensors do not match the hash it records (modified or corrupted)")
    if dat_sha == RELEASED_DAT_SHA256 and actual != RELEASED_TENSORS_SHA256:
        raise ValueError("its tensors differ from the released model's conversion")
    return tensors


def _metadata(path: Path) -> dict[str, str]:
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def cached_tensors(dat_path: Path | None = None, cache: Path | None = None) -> dict[str, torch.Tensor]:
    """The converted tensors of ``dat_path`` (default: the released model), from the cache
    when it checks out, else converted and (re)written there."""
    dat_path = Path(dat_path) if dat_path is not None else model_file()
    dat = dat_path.read_bytes()
    dat_sha = sha256_bytes(dat)
    folder = Path(cache) if cache is not None else cache_dir()
    path = folder / f"{dat_path.stem}-{dat_sha[:16]}.safetensors"
    if path.exists():
        try:
            return _check_cache(path, dat_sha)
        except ValueError as err:
            warnings.warn(f"face model cache {path}: {err}; rebuilding it from {dat_path}", stacklevel=2)
    tensors = convert(dat, str(dat_path))
    digest = tensors_sha256(tensors)
    if dat_sha == RELEASED_DAT_SHA256 and digest != RELEASED_TENSORS_SHA256:
        raise FaceCacheError(f"converting {dat_path} gave tensors with SHA-256 {digest}, not the released "
                             f"model's {RELEASED_TENSORS_SHA256}")
    blob = save(tensors, metadata={"source": dat_path.name, "source_sha256": dat_sha, "tensors_sha256": digest,
                                   "format": "unlearnable dlib face net 1"})
    try:
        write_atomic(path, blob)
    except OSError as err:
        warnings.warn(f"could not write the face model cache {path} ({err}); using the conversion in memory",
                      stacklevel=2)
    return tensors


def load_face_net(dat_path: Path | None = None, cache: Path | None = None,
                  device: str | torch.device = "cpu") -> DlibFaceNet:
    """dlib's face descriptor network as a frozen :class:`DlibFaceNet` in eval mode."""
    tensors = dict(cached_tensors(dat_path, cache))
    means = tuple(float(v) for v in tensors.pop("means"))
    return DlibFaceNet.from_tensors(tensors, means).to(device)  # type: ignore[arg-type]
