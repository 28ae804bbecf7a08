"""``protect``'s cloak stage (``--against recognizers|both``): a target per folder, then the
cloak of each batch (the algorithm: :mod:`unlearnable_cli.faces.cloak`).

The target of a folder (one person) is chosen once, from its photos as they are, before
any batch: the bank centroid farthest from their mean descriptor.  It depends only on the
folder's files, so a resumed or sharded run chooses the same one.  A folder where no face
is found in any photo gets no target and its photos no cloak (the summary says so).
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import asdict

import numpy as np
import torch

from ..config import ProtectConfig
from .scan import Entry


class Cloaker:
    """dlib's network (the port), the shipped target bank and each folder's target."""

    def __init__(self, cfg: ProtectConfig, device: torch.device) -> None:
        from ..faces import load_face_net
        from ..faces.targets import bank_path, load_bank
        self.cfg, self.device = cfg, device
        self.net = load_face_net(device=device)               # frozen, in eval mode
        self.bank, self.names = load_bank()
        self.bank_sha256 = hashlib.sha256(bank_path().read_bytes()).hexdigest()
        self.targets: dict[str, int] = {}
        self.faceless: list[str] = []           # folders with no face in any photo

    def prepare(self, entries: list[Entry]) -> list[str]:
        """Choose every folder's target from its photos' clean descriptors; returns a
        warning for each folder in which no photo shows a face."""
        from ..evaluate.recognizers import embed
        from ..faces.cloak import choose_target
        from ..faces.enrol import NO_FACE, has_face, photo_chip
        from ..io.datasets import DatasetError

        def chip(e: Entry) -> torch.Tensor:
            try:
                return photo_chip(e.source, self.cfg.max_pixels)
            except DatasetError:              # changed since the scan: the batch stage reports it
                return NO_FACE
        by_group: dict[str, list[Entry]] = defaultdict(list)
        for e in entries:
            by_group[e.group].append(e)
        for group, members in sorted(by_group.items()):
            chips = torch.stack([chip(e) for e in members])
            chips = chips[has_face(chips)]
            if len(chips):
                self.targets[group] = choose_target(embed(self.net, chips, self.device).cpu(), self.bank)
            else:
                self.faceless.append(group)
        return [f"{g or '.'}: no face found in any photo, so its photos are not cloaked against recognizers"
                for g in self.faceless]

    def __call__(self, x_u8: torch.Tensor, x3: torch.Tensor, delta: torch.Tensor, groups: list[str],
                 bound: float | torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The batch's noise ``delta`` cloaked: photos ``x_u8`` (B, C, H, W) and the same in
        [0, 1] with 3 channels (``x3``), each photo of folder ``groups[i]``."""
        from ..faces import detect_landmarks
        from ..faces.cloak import cloak
        from ..faces.enrol import largest_face
        marks = []
        for img, group in zip(x_u8, groups):
            rgb = img.expand(3, -1, -1).permute(1, 2, 0).cpu().numpy()
            face = largest_face(detect_landmarks(np.ascontiguousarray(rgb))) if group in self.targets else None
            marks.append(face)
        targets = torch.stack([self.bank[self.targets[g]] if g in self.targets else torch.zeros(128, dtype=torch.float64)
                               for g in groups]).to(self.device)
        return cloak(self.net, x3, delta, marks, targets, bound, self.cfg.cloak, generator)

    def settings(self) -> dict[str, object]:
        """What the manifest records of the cloak."""
        cloak = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self.cfg.cloak).items()}
        return {"cloak": {k: v for k, v in cloak.items() if k != "objective"},   # as before the objective existed
                "cloak_objective": self.cfg.cloak.objective.value,
                "cloak_bank_sha256": self.bank_sha256,
                "cloak_targets": {g or ".": self.names[i] for g, i in sorted(self.targets.items())}}
