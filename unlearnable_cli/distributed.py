"""One job in several processes: ranks launched by ``torchrun``, or independent ``--shard K/N``.

The engine is PyTorch's own ``torch.distributed`` as ``torchrun`` launches it (one
process per rank; gloo between CPU processes, NCCL between GPUs; multi-node through
its rendezvous, so it runs under Slurm or Kubernetes unchanged).  A :class:`Shard`
says which part of the work is this process's:

* under ``torchrun`` (``WORLD_SIZE`` > 1) the ranks talk: ``protect`` splits its reading
  and its batches over them and rank 0 writes the manifest; ``train-generator`` splits
  every step's minibatch and averages gradients (DistributedDataParallel);
* with ``protect --shard K/N`` the processes never talk (a Slurm array, an indexed Job,
  GNU parallel): each does its part and keeps its own journal, and a final plain
  ``protect`` writes the manifest without redoing any image.

Ranks exchange small JSON values (scan results, manifest records) as byte tensors, so
nothing received from another process is ever unpickled.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from .config import ConfigError

#: How long a rank waits for the others at one collective before giving up.  A dead
#: rank normally ends the job sooner: torchrun stops the others when one fails.
TIMEOUT = timedelta(minutes=30)


@dataclass(frozen=True)
class Shard:
    """Part ``index`` (0-based) of ``count``; ``torchrun``: launched by torchrun, the ranks exchange data."""

    index: int = 0
    count: int = 1
    torchrun: bool = False

    @property
    def single(self) -> bool:
        return self.count == 1

    @property
    def leader(self) -> bool:
        """The process that writes shared files (rank 0) and prints the job's summary."""
        return self.index == 0 or not self.torchrun

    def owns(self, i: int) -> bool:
        """Whether work item ``i`` (a batch, a chunk of files) is this process's."""
        return i % self.count == self.index

    def __str__(self) -> str:
        return f"rank {self.index} of {self.count}" if self.torchrun else f"shard {self.index + 1}/{self.count}"


SINGLE = Shard()


def parse_shard(text: str) -> Shard:
    """``"K/N"`` with 1 ≤ K ≤ N (``--shard 2/3`` is the second of three parts)."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m:
        raise ConfigError(f"--shard {text!r}: expected K/N, e.g. 1/4 for the first of four parts")
    k, n = int(m[1]), int(m[2])
    if n < 1 or not 1 <= k <= n:
        raise ConfigError(f"--shard {text}: K must be between 1 and N (parts are counted from 1)")
    return Shard(k - 1, n, torchrun=False)


def launched() -> Shard:
    """This process's rank under torchrun (``RANK``/``WORLD_SIZE``), else :data:`SINGLE`."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return SINGLE
    return Shard(int(os.environ["RANK"]), world, torchrun=True)


def local_device(device: torch.device) -> torch.device:
    """The GPU of this rank on its node (``LOCAL_RANK``) when the job runs on CUDA."""
    if device.type == "cuda" and dist.is_initialized():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def start(shard: Shard, device: torch.device) -> None:
    """Join the process group of a torchrun job (gloo for CPU tensors, NCCL for CUDA ones)."""
    if not shard.torchrun or dist.is_initialized():
        return
    backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    # Before the group exists: importing torch._dynamo (torch.optim and DDP do) takes
    # references to an existing default group that it never gives back (torch 2.14).
    # The group then outlives destroy_process_group, and a gloo worker thread freeing
    # its last work item while Python shuts down aborts the rank (SIGABRT, "terminate
    # called without an active exception"; about 1 run in 40 before this import).
    importlib.import_module("torch._dynamo")
    dist.init_process_group(backend, timeout=TIMEOUT)


def stop() -> None:
    """Leave the process group (at the end of a command)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def lost_peer(shard: Shard, error: RuntimeError, kept: str) -> str:
    """The one line a rank prints when a collective failed because another process of the
    job died (gloo: "Connection closed by peer"; NCCL: a timeout or a remote error)."""
    reason = " ".join(str(error).split())
    reason = reason[:160] + "…" if len(reason) > 160 else reason
    return f"{shard}: another process of this job stopped ({reason}); {kept}"


def gather_json(value: object) -> list[object]:
    """Every rank's ``value`` (JSON-serializable), in rank order, on every rank."""
    data = torch.frombuffer(bytearray(json.dumps(value).encode()), dtype=torch.uint8)
    sizes = [torch.zeros(1, dtype=torch.int64) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([data.numel()]))
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros(longest, dtype=torch.uint8)
    padded[:data.numel()] = data
    parts = [torch.empty(longest, dtype=torch.uint8) for _ in sizes]
    dist.all_gather(parts, padded)
    return [json.loads(p[:int(s.item())].numpy().tobytes().decode()) for p, s in zip(parts, sizes)]


def barrier() -> None:
    """Wait until every rank gets here."""
    dist.barrier()


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running averages) to every rank."""
    for buffer in model.buffers():
        dist.broadcast(buffer, 0)


def any_rank(flag: int, device: torch.device = torch.device("cpu")) -> int:
    """The largest of every rank's ``flag`` (e.g. a stop request seen by any of them)."""
    t = torch.tensor([flag], dtype=torch.int64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def mean_over_ranks(values: list[float], device: torch.device = torch.device("cpu")) -> list[float]:
    """Each value averaged over the ranks (for logging a step's loss and accuracy)."""
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return (t / dist.get_world_size()).tolist()
