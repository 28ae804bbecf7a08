"""The files of one generator-training run, beside its output weights: the checkpoint
(model, optimizer momentum, EM noise, step), the JSONL log, and the rules that keep a
finished generator or an unfinished run from being discarded without ``--overwrite``.

A checkpoint records a fingerprint of the run's options and data; resuming with other
ones is refused.  Checkpoints and trimmed logs are written atomically.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from .. import __version__
from ..io.atomic import atomic_path
from ..config import ConfigError, TrainConfig
from ..models.weights import state_tensors


@dataclass
class RunPaths:
    """Files that belong to one training run, all beside the output weights."""

    weights: Path

    @property
    def checkpoint(self) -> Path:
        return self.weights.with_suffix(".ckpt.safetensors")

    @property
    def log(self) -> Path:
        return self.weights.with_suffix(".log.jsonl")

    @property
    def score(self) -> Path:
        """TUE: the score estimator trained by the run's first phase (reused on resume)."""
        return self.weights.with_suffix(".score.safetensors")


@dataclass
class CheckpointState:
    """What :func:`load` restores beyond the model and optimizer: step, timer, extras."""

    step: int
    elapsed: float
    extra: dict[str, torch.Tensor] = field(default_factory=dict)


def save(path: Path, model: nn.Module, opt: torch.optim.Optimizer, extra: dict[str, torch.Tensor],
         step: int, elapsed: float, fingerprint: str) -> None:
    """Write model, SGD momentum buffers and ``extra`` tensors with the step, atomically."""
    tensors = {f"model.{k}": v for k, v in state_tensors(model).items()}
    for i, p in enumerate(model.parameters()):
        buf = opt.state.get(p, {}).get("momentum_buffer")
        if buf is not None:
            tensors[f"opt.momentum.{i}"] = buf.detach().cpu().contiguous()
    tensors.update({k: v.contiguous() for k, v in extra.items()})
    meta = {"step": str(step), "elapsed": repr(elapsed), "fingerprint": fingerprint,
            "package_version": __version__}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def load(path: Path, model: nn.Module, opt: torch.optim.Optimizer, fingerprint: str) -> CheckpointState:
    """Restore ``model`` and ``opt`` from ``path``; :class:`ConfigError` if unreadable or
    made with other options or data."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise ConfigError(f"{path}: cannot read checkpoint ({e})") from e
    if meta.get("fingerprint") != fingerprint:
        raise ConfigError(f"{path}: checkpoint was made with different options or data; "
                          "rerun with the same options, or delete it to start over")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    params = list(model.parameters())
    device = params[0].device
    for k, v in tensors.items():
        if k.startswith("opt.momentum."):
            opt.state[params[int(k.rsplit(".", 1)[1])]]["momentum_buffer"] = v.to(device)
    extra = {k: v for k, v in tensors.items() if not k.startswith(("model.", "opt."))}
    return CheckpointState(int(meta["step"]), float(meta["elapsed"]), extra)


def truncate_log(log: Path, step: int) -> None:
    """Drop log lines written after ``step`` (a resumed run writes them again)."""
    if not log.exists():
        return
    kept = [line for line in log.read_text().splitlines()
            if line.strip() and json.loads(line).get("step", 0) <= step]
    with atomic_path(log) as tmp:  # the log of a long run must survive a crash here
        tmp.write_text("".join(line + "\n" for line in kept))


def append_log(log: Path, record: dict[str, object]) -> None:
    with open(log, "a") as f:
        f.write(json.dumps(record) + "\n")


def default_dataset_name(data_dir: Path) -> str:
    """``parent/folder`` (``cifar10/train``): a folder's own name is often just ``train``."""
    resolved = Path(data_dir).resolve()
    return f"{resolved.parent.name}/{resolved.name}" if resolved.parent.name else resolved.name


def checkpoint_step(path: Path) -> str:
    """The step a checkpoint file says it reached, or ``"?"`` if it cannot be read."""
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("step", "?")
    except (SafetensorError, OSError):
        return "?"


def check_previous_run(paths: RunPaths, cfg: TrainConfig, resume: bool, overwrite: bool,
                       export_only: bool) -> None:
    """Refuse to discard a finished generator or an unfinished run's checkpoint unless asked.

    A finished ``OUTPUT`` is replaced only with ``overwrite``; a checkpoint is continued
    with ``resume`` (or exported), and discarded only with ``overwrite``.
    """
    if overwrite:
        return
    if paths.weights.exists():
        raise ConfigError(f"{paths.weights}: a generator is already there; add --overwrite to replace it, "
                          "or choose another -o")
    if paths.checkpoint.exists() and not (resume or export_only):
        raise ConfigError(f"{paths.checkpoint}: an unfinished run's checkpoint (step "
                          f"{checkpoint_step(paths.checkpoint)} of {cfg.steps}) is there; add --resume to "
                          "continue it, or --overwrite to start over and discard it")




def fingerprint(cfg: TrainConfig, data_digest: str) -> str:
    """What a checkpoint must have been made with to be resumed: the options and the data."""
    d = cfg.to_dict()
    d.pop("checkpoint_every"), d.pop("log_every")
    for key, before in TrainConfig.ADDED_LATER.items():   # checkpoints from before these existed resume
        if d.get(key, before) == before:
            d.pop(key, None)
    return json.dumps({"config": d, "data": data_digest}, sort_keys=True)
