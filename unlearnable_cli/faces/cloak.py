"""A cloak against pretrained face recognizers, within ``protect``'s bound (Fawkes' idea).

Shan et al. (USENIX Security 2020) move each photo's face descriptor towards another
identity's, so that a recognizer enrolled on the cloaked photos learns the wrong place
for the person and does not match their clean photos.  Here the recognizer is dlib's
network, ported (:mod:`.model`), so the gradient runs from the descriptor through the
differentiable face chip (:mod:`.chips`) to the photo's pixels:

    δ ← clip(δ − α · sign ∇_δ E_t L(f(chip(t(x + δ))))),  |δ| ≤ the bound

- ``L``: by :class:`~..config.protect.CloakObjective`, ``target``: ‖e − c‖² (towards the
  target ``c``); ``away``: −‖e − e₀‖² (away from the photo's own clean descriptor ``e₀``,
  no target needed); ``both``: the sum of the two;
- ``c``: the target, one per person (all the photos of a folder move the same way): of a
  bank of identity centroids shipped with the tool (:mod:`.targets`, computed once from
  public photos of people in no benchmark), the one farthest from the person's own mean
  descriptor, as Fawkes picks it;
- ``t``: what a site does to an upload, drawn ``eot_samples`` times per step (EOT): a
  JPEG re-encode at quality 75-95, a resize to half, a crop of up to 10% per side, each
  with its own chance; the landmarks move with the photo and the chip is cut again;
- the landmarks are dlib's, found on the original photo and kept fixed (the detector is
  not differentiable): :func:`~.enrol.largest_face`, the photo's subject.

The cloak starts from the unlearnable noise when both protections are asked for
(``--against both``) and moves within the same per-pixel bound; ``protect`` then rounds
to 8 bits with the exact bound as always.  Photos in which no face is found are left as
the other stages made them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..config.protect import CloakConfig, CloakObjective
from ..engine.noise import ball_bounds
from .chips import chip_geometry, warp_chip
from .model import DlibFaceNet


@dataclass(frozen=True)
class SiteDraw:
    """One random "what a site does": crop margins (left, top, right, bottom) in pixels,
    a resize to half, and a JPEG quality (None: not re-encoded)."""

    crop: tuple[int, int, int, int]
    half: bool
    quality: float | None


def sample_draws(n: int, hw: tuple[int, int], cfg: CloakConfig, g: torch.Generator) -> list[SiteDraw]:
    """``n`` site transforms for a photo of size ``hw`` (the first always the photo as is)."""
    draws = [SiteDraw((0, 0, 0, 0), False, None)]
    for _ in range(n - 1):
        u = torch.rand(8, generator=g).tolist()
        margins = [int(u[i] * cfg.max_crop * hw[(i + 1) % 2]) if u[4] < cfg.crop_chance else 0 for i in range(4)]
        quality = cfg.jpeg_quality[0] + u[7] * (cfg.jpeg_quality[1] - cfg.jpeg_quality[0])
        draws.append(SiteDraw((margins[0], margins[1], margins[2], margins[3]), u[5] < cfg.half_chance,
                              quality if u[6] < cfg.jpeg_chance else None))
    return draws


def site_view(photo: torch.Tensor, marks: np.ndarray, draw: SiteDraw) -> tuple[torch.Tensor, np.ndarray]:
    """``photo`` (3, H, W) in [0, 1] as ``draw`` serves it, and the landmarks moved with it."""
    left, top, right, bottom = draw.crop
    h, w = photo.shape[1:]
    view = photo[:, top:h - bottom, left:w - right]
    pts = marks.astype(np.float64) - np.array([left, top])
    if draw.half:
        size = (max(1, view.shape[1] // 2), max(1, view.shape[2] // 2))
        pts = pts * np.array([size[1] / view.shape[2], size[0] / view.shape[1]])
        view = F.interpolate(view[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    if draw.quality is not None:
        import kornia
        view = kornia.enhance.jpeg_codec_differentiable(view[None].float().clamp(0, 1),
                                                        torch.tensor([draw.quality], device=view.device))[0].to(view.dtype)
    return view, np.round(pts).astype(np.int64)


def choose_target(own: torch.Tensor, bank: torch.Tensor) -> int:
    """Index of the bank centroid farthest from the mean of ``own`` descriptors (N, 128)."""
    return int(torch.cdist(own.double().mean(0, keepdim=True), bank.double())[0].argmax())


def cloak_loss(emb: torch.Tensor, target: torch.Tensor, own: torch.Tensor, objective: CloakObjective) -> torch.Tensor:
    """The loss the cloak minimizes, summed over descriptors ``emb`` (N, 128) with each
    one's ``target`` and ``own`` clean descriptor (N, 128)."""
    toward = (emb - target).square().sum(1).sum()
    away = -(emb - own).square().sum(1).sum()
    return {CloakObjective.TARGET: toward, CloakObjective.AWAY: away, CloakObjective.BOTH: toward + away}[objective]


@torch.no_grad()
def _own_descriptors(net: DlibFaceNet, photos: torch.Tensor, marks: list[np.ndarray]) -> torch.Tensor:
    """(N, 128): each clean photo's descriptor, the point ``away`` moves from."""
    hw = tuple(photos.shape[2:])
    return net(torch.stack([warp_chip(p, chip_geometry(m, hw)) for p, m in zip(photos, marks)]).float())  # type: ignore[arg-type]


def cloak(net: DlibFaceNet, photos: torch.Tensor, delta: torch.Tensor, marks: list[np.ndarray | None],
          targets: torch.Tensor, bound: float | torch.Tensor, cfg: CloakConfig, g: torch.Generator) -> torch.Tensor:
    """The cloaked noise of a batch: ``photos`` (B, 3, H, W) in [0, 1], ``delta`` the noise
    so far, (B, 3, H, W), or (B, 1, H, W) for grayscale photos (one change for R, G and B),
    ``marks`` each photo's subject (None: no face, left alone), ``targets`` (B, 128);
    ``bound`` a number or a per-pixel map (B, 1, H, W), in [0, 1] units.  A draw whose crop
    cuts the face's chip off the photo is skipped.

    Each step cuts ``eot_samples`` chips per photo (a Python loop over photos and draws:
    every chip has its own geometry; the warps are small next to the network) and runs
    the network once on all of them.
    """
    faces = [i for i, m in enumerate(marks) if m is not None]
    if not faces:
        return delta
    delta = delta.clone()
    x = photos[faces]
    d = delta[faces]
    b = bound[faces] if isinstance(bound, torch.Tensor) and bound.ndim == 4 else bound
    step = cfg.step_levels / 255
    lo, hi = ball_bounds(x, 1.0, shared_channels=d.shape[1] == 1)
    own = (targets[faces] if cfg.objective is CloakObjective.TARGET      # unused by ``target``: not computed
           else _own_descriptors(net, x, [marks[i] for i in faces]))  # type: ignore[misc]
    for _ in range(cfg.steps):
        d.requires_grad_(True)
        chips, owners = [], []
        for j, i in enumerate(faces):
            for draw in sample_draws(cfg.eot_samples, tuple(photos.shape[2:]), cfg, g):
                view, pts = site_view((x[j] + d[j]).clamp(0, 1), marks[i], draw)  # type: ignore[arg-type]
                try:
                    geometry = chip_geometry(pts, tuple(view.shape[1:]))
                except ValueError:                # the crop cut the face's chip off: skip this draw
                    continue
                chips.append(warp_chip(view, geometry))
                owners.append(j)
        emb = net(torch.stack(chips).float())
        loss = cloak_loss(emb, targets[faces][owners].to(emb), own[owners].to(emb), cfg.objective)
        grad, = torch.autograd.grad(loss, d)
        with torch.no_grad():
            d = torch.maximum(torch.minimum(d - step * grad.sign(), torch.as_tensor(b)), -torch.as_tensor(b))
            d = d.clamp(lo, hi)               # x + δ in [0, 1] (one change for R, G and B if d has 1 channel)
    delta[faces] = d.detach()
    return delta
