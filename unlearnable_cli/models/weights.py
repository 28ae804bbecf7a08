"""Generator weights: safetensors files with a metadata card, loaded safely.

A generator file is a ``.safetensors`` file whose string metadata holds a
:class:`GeneratorCard` (format version, architecture, classes, input size, method,
hyperparameters, data set hash, accuracies, provenance) and a SHA-256 of the
tensor bytes.  Beside the model's tensors a file may hold a method's own tensors under
a reserved prefix (:data:`EXTRA_PREFIXES`: class-wise EM's patterns, TUE's score
estimator); the SHA-256 covers them too.  Loading never unpickles anything, checks the card and the hash, and
turns every problem into a :class:`WeightsError` that names the file and the reason.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from ..io.atomic import atomic_path
from .architectures import MODELS, build_model
from ..config import TransformSpec

FORMAT = "unlearnable-generator"
FORMAT_VERSION = 1

#: Shipped generators by name (``protect --weights cifar10``): name -> file in ``weights/``.
SHIPPED: dict[str, str] = {
    "cifar10": "sem-resnet18w16-cifar10.safetensors",
    "faces": "sem-resnet18w16-lfw10-64px.safetensors",
}
#: The generator ``protect`` uses when ``--weights`` is not given.
DEFAULT_GENERATOR = "cifar10"
#: Name prefixes of tensors that are not the model's (no registered model uses them).
EXTRA_PREFIXES = ("classwise.", "score.")
#: First bytes of files written by ``torch.save``: a zip archive (torch >= 1.6) or a raw pickle.
PICKLE_MAGIC = (b"PK\x03\x04", b"\x80")


class WeightsError(Exception):
    """A weights file that cannot be used; ``str()`` names the file and the reason."""


@dataclass
class GeneratorCard:
    """Everything needed to rebuild and trust a generator, saved beside its tensors."""

    arch: str
    arch_kwargs: dict[str, Any]
    class_names: list[str]
    input_size: tuple[int, int] = (32, 32)
    value_range: tuple[float, float] = (0.0, 1.0)
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    method: str = "sem"
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    transform: dict[str, Any] = field(default_factory=lambda: dataclasses.asdict(TransformSpec()))
    dataset: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def transform_spec(self) -> TransformSpec:
        return TransformSpec(**self.transform)

    @property
    def adv_radius(self) -> float:
        """ρ_a the generator was adversarially trained with (0 for EM), in [0, 1] units."""
        return float(self.hyperparameters.get("adv_radius", 0.0))

    def build(self) -> nn.Module:
        """An untrained model of this card's architecture."""
        kwargs = dict(self.arch_kwargs)
        if self.mean:
            kwargs.update(mean=tuple(self.mean), std=tuple(self.std))
        return build_model(self.arch, self.num_classes, **kwargs)

    def to_metadata(self) -> dict[str, str]:
        data = dataclasses.asdict(self)
        meta = {k: json.dumps(v) for k, v in data.items()}
        meta.update(format=FORMAT, format_version=str(FORMAT_VERSION))
        return meta

    @classmethod
    def from_metadata(cls, meta: dict[str, str], path: Path) -> "GeneratorCard":
        if meta.get("format") != FORMAT:
            raise WeightsError(f"{path}: not an unlearnable generator (metadata 'format' is "
                               f"{meta.get('format')!r}, expected {FORMAT!r})")
        if meta.get("format_version") != str(FORMAT_VERSION):
            raise WeightsError(f"{path}: generator format version {meta.get('format_version')!r} "
                               f"is not supported (this version reads {FORMAT_VERSION})")
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in ("arch", "arch_kwargs", "class_names") if n not in meta]
        if missing:
            raise WeightsError(f"{path}: metadata lacks {', '.join(missing)}")
        try:
            values = {n: json.loads(meta[n]) for n in names if n in meta}
        except json.JSONDecodeError as e:
            raise WeightsError(f"{path}: metadata is not valid JSON ({e})") from e
        values["input_size"] = tuple(values.get("input_size", (32, 32)))
        for key in ("value_range", "mean", "std"):
            if key in values:
                values[key] = tuple(values[key])
        card = cls(**values)
        if card.arch not in MODELS:
            raise WeightsError(f"{path}: unknown architecture {card.arch!r} "
                               f"(known: {', '.join(sorted(MODELS))})")
        return card


def tensors_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over named tensors' names, dtypes, shapes and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def state_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict as contiguous CPU tensors, ready for safetensors."""
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def model_digest(model: nn.Module) -> str:
    """SHA-256 of a model's tensors, as recorded in (and checked against) its weights file."""
    return tensors_digest(state_tensors(model))


def save_generator(path: Path, model: nn.Module, card: GeneratorCard,
                   extras: dict[str, torch.Tensor] | None = None) -> None:
    """Write weights, ``extras`` (names under :data:`EXTRA_PREFIXES`) and card atomically
    (temporary file, then rename)."""
    tensors = state_tensors(model)
    for name, t in (extras or {}).items():
        if not name.startswith(EXTRA_PREFIXES):
            raise ValueError(f"extra tensor {name!r} must be named under one of {EXTRA_PREFIXES}")
        tensors[name] = t.detach().cpu().contiguous()
    meta = card.to_metadata()
    meta["tensors_sha256"] = tensors_digest(tensors)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def read_card(path: Path) -> GeneratorCard:
    """Read only the card of a generator file (cheap: the header, not the tensors)."""
    return GeneratorCard.from_metadata(_open(path)[0], path)


def _open(path: Path, load: bool = False) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    if path.suffix != ".safetensors":
        raise WeightsError(f"{path}: only .safetensors weights are loaded (pickle-based "
                           "formats such as .pt/.pth/.bin can run code and are refused)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()} if load else {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        if _looks_like_pickle(path):
            raise WeightsError(f"{path}: looks like a PyTorch pickle (torch.save) renamed .safetensors; "
                               "pickles can run code when loaded and are refused for safety") from e
        raise WeightsError(f"{path}: not a readable safetensors file, it may be truncated or "
                           f"corrupted ({e})") from e
    return meta, tensors


def _looks_like_pickle(path: Path) -> bool:
    """Whether ``path`` starts like a ``torch.save`` file (zip archive or raw pickle)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    return head.startswith(PICKLE_MAGIC)


@dataclass
class LoadedGenerator:
    """A verified generator file: the model (eval mode), its card, a method's extra
    tensors, and the SHA-256 of all its tensors as recorded in (and checked against) the file."""

    model: nn.Module
    card: GeneratorCard
    extras: dict[str, torch.Tensor]
    digest: str


def load_generator_file(path: Path, device: torch.device | str = "cpu") -> LoadedGenerator:
    """Load a generator with its extra tensors; :class:`WeightsError` for any mismatch or corruption."""
    meta, tensors = _open(path, load=True)
    card = GeneratorCard.from_metadata(meta, path)
    expected = meta.get("tensors_sha256")
    if expected is None or tensors_digest(tensors) != expected:
        raise WeightsError(f"{path}: tensor data does not match its recorded SHA-256; "
                           "the file is corrupted or was modified")
    extras = {k: v.to(device) for k, v in tensors.items() if k.startswith(EXTRA_PREFIXES)}
    model = card.build()
    try:
        model.load_state_dict({k: v for k, v in tensors.items() if k not in extras}, strict=True)
    except RuntimeError as e:
        first = str(e).splitlines()[0:3]
        raise WeightsError(f"{path}: weights do not fit architecture {card.arch} "
                           f"{card.arch_kwargs}: {' '.join(first)}") from e
    return LoadedGenerator(model.to(device, memory_format=torch.channels_last).eval(), card, extras, expected)


def load_generator(path: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, GeneratorCard]:
    """Load a generator in eval mode; raise :class:`WeightsError` for any mismatch or corruption."""
    loaded = load_generator_file(path, device)
    return loaded.model, loaded.card


def shipped_dirs() -> list[Path]:
    """Where shipped generators are looked for: inside the installed package (a wheel
    carries ``weights/`` as ``unlearnable_cli/weights/``), then the source checkout."""
    here = Path(__file__).resolve().parents[1]
    return [here / "weights", here.parent / "weights"]


def shipped_path(name: str) -> Path:
    """The file of the shipped generator ``name``; :class:`WeightsError` lists the names."""
    if name not in SHIPPED:
        raise WeightsError(f"{name!r} is neither a weights file nor a shipped generator "
                           f"(shipped: {', '.join(sorted(SHIPPED))})")
    for folder in shipped_dirs():
        candidate = folder / SHIPPED[name]
        if candidate.is_file():
            return candidate
    raise WeightsError(f"shipped generator {name!r} is not installed (looked for {SHIPPED[name]} in the "
                       "package and in the source checkout's weights/ folder); pass --weights PATH")


def resolve_weights(spec: str | Path | None) -> Path:
    """A ``--weights`` value: a path to a file, a shipped generator's name, or None for the
    default (``$UNLEARNABLE_WEIGHTS`` if set, else the shipped ``DEFAULT_GENERATOR``)."""
    if spec is None:
        env = os.environ.get("UNLEARNABLE_WEIGHTS")
        return Path(env) if env else shipped_path(DEFAULT_GENERATOR)
    path = Path(spec)
    if str(spec) in SHIPPED and not path.is_file():
        return shipped_path(str(spec))
    if path.suffix or path.exists() or "/" in str(spec):
        return path
    return shipped_path(str(spec))       # a bare word that is no file: a name, or a clear error
