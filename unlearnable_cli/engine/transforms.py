"""Differentiable, batched random transforms t ~ T used inside the noise optimization.

One operator covers both cases the tool meets:

- images already at the generator's input size (CIFAR-style 32x32): t is the
  generator's own training augmentation, a pad-``pad`` random crop plus horizontal
  flip, reproduced exactly (zero padding, integer shifts);
- larger photos: t is a random resized crop plus flip *and* an antialiased resize to
  the generator's input size, so the noise is optimized at full resolution and the
  gradient reaches every full-resolution pixel (never low-resolution noise upsampled).

The resize is a separable linear map ``out = R @ x @ C^T`` with a row matrix ``R``
(out_h x H) and a column matrix ``C`` (out_w x W) per sample, built from a triangle
(antialiased bilinear) filter whose radius grows with the downscale factor; entries
outside the image are zeros, which is what zero padding means.  At equal sizes the
same draws are integer crops, applied as one index gather (the matrices would be
one-hot; the gather is about twice as fast, which matters in the training loop).
Everything is batched: one call handles all images and all J draws.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config.common import TransformSpec


def _filter_matrix(start: torch.Tensor, length: torch.Tensor, n_in: int, n_out: int,
                   reverse: torch.Tensor) -> torch.Tensor:
    """Resampling matrices ``(N, n_out, n_in)`` mapping the window [start, start+length) to n_out samples.

    Output sample ``o`` is centred at ``start + (o + 0.5) * length / n_out`` (input
    pixel ``i`` is centred at ``i + 0.5``); weights are a triangle of radius
    ``max(1, length / n_out)``.  Only pixels inside the window contribute and the
    weights are renormalized at the window's border (like resizing a crop); parts of
    the window outside the image count as zeros (zero padding).  An integer shift at
    scale 1 therefore gives an exact one-hot crop matrix, and the full-frame window
    matches ``F.interpolate(..., antialias=True)``.
    """
    step = length / n_out                                              # (N,)
    radius = step.clamp(min=1.0)                                       # (N,)
    lo, hi = start[:, None, None], (start + length)[:, None, None]
    o = torch.arange(n_out, dtype=start.dtype, device=start.device)
    centres = start[:, None] + (o[None, :] + 0.5) * step[:, None]      # (N, n_out)
    centres = torch.where(reverse[:, None], centres.flip(1), centres)

    def triangle(pos: torch.Tensor) -> torch.Tensor:
        w = (1 - (pos - centres[..., None]).abs() / radius[:, None, None]).clamp(min=0)
        return w * ((pos >= lo) & (pos < hi))

    # Normalizer: every pixel position in the window, inside the image or not.
    reach = int(torch.ceil(radius.max()).item()) + 2
    k = torch.arange(-reach, reach + 1, dtype=start.dtype, device=start.device)
    norm = triangle(torch.floor(centres)[..., None] + k + 0.5).sum(-1, keepdim=True)
    weights = triangle(torch.arange(n_in, dtype=start.dtype, device=start.device) + 0.5)
    return weights / norm


@dataclass
class ResampleParams:
    """Per-sample row/column matrices of one draw of t for a batch of images."""

    rows: torch.Tensor  # (N, out_h, H)
    cols: torch.Tensor  # (N, out_w, W)

    def __getitem__(self, index: slice) -> "ResampleParams":
        return ResampleParams(self.rows[index], self.cols[index])


@dataclass
class CropParams:
    """Per-sample integer crops of the zero-padded image (inputs already at the output size)."""

    top: torch.Tensor   # (N,) int64 in [0, 2*pad]
    left: torch.Tensor  # (N,) int64 in [0, 2*pad]
    flip: torch.Tensor  # (N,) bool
    pad: int

    def __getitem__(self, index: slice) -> "CropParams":
        return CropParams(self.top[index], self.left[index], self.flip[index], self.pad)


Params = ResampleParams | CropParams


def sample_params(spec: TransformSpec, n: int, in_hw: tuple[int, int], out_hw: tuple[int, int],
                  generator: torch.Generator | None = None,
                  device: torch.device | str = "cpu") -> Params:
    """Draw ``n`` transformations for images of size ``in_hw`` resized to ``out_hw``.

    When the input already has the output size the draw is the exact pad-crop + flip
    (integer shifts, scale 1).  Otherwise each draw picks side fractions in
    ``[min_scale, 1]`` and a continuous shift of up to ``pad / out`` of the image
    side, then resizes that window with antialiasing.
    """
    (h, w), (oh, ow) = in_hw, out_hw
    u = torch.rand(n, 5, generator=generator, dtype=torch.float64)
    flip = (u[:, 4] < 0.5) & spec.flip
    if (h, w) == (oh, ow):
        shift = torch.floor(u[:, 2:4] * (2 * spec.pad + 1)).long()          # integers in [0, 2*pad]
        return CropParams(shift[:, 0].to(device), shift[:, 1].to(device), flip.to(device), spec.pad)
    scale = spec.min_scale + (1 - spec.min_scale) * u[:, 0:2]
    shift = (2 * u[:, 2:4] - 1) * spec.pad                                    # output-pixel units
    size = torch.tensor([h, w], dtype=torch.float64)
    length = scale * size                                                    # window side in input px
    start = (size - length) / 2 + shift * size / torch.tensor([oh, ow], dtype=torch.float64)
    rows = _filter_matrix(start[:, 0], length[:, 0], h, oh, torch.zeros(n, dtype=torch.bool))
    cols = _filter_matrix(start[:, 1], length[:, 1], w, ow, flip)
    return ResampleParams(rows.float().to(device), cols.float().to(device))


def identity_params(n: int, in_hw: tuple[int, int], out_hw: tuple[int, int],
                    device: torch.device | str = "cpu") -> ResampleParams:
    """The deterministic full-frame resize (no crop, no flip) for ``n`` images."""
    return sample_params(TransformSpec.identity(), n, in_hw, out_hw, device=device)


def resize_to(x: torch.Tensor, out_hw: tuple[int, int]) -> torch.Tensor:
    """``x`` ``(B, C, H, W)`` as the generator sees it without a random draw: the
    deterministic full-frame resize to ``out_hw``, or ``x`` itself (channels-last)
    when it is already that size.  Differentiable in ``x``."""
    b, _, h, w = x.shape
    if (h, w) == tuple(out_hw):
        return x.contiguous(memory_format=torch.channels_last)
    return apply(x, identity_params(b, (h, w), tuple(out_hw), x.device))


def apply(x: torch.Tensor, params: Params) -> torch.Tensor:
    """Apply J draws of t to each of B images without copying the images J times.

    ``x``: ``(B, C, H, W)`` in [0, 1]; ``params`` holds ``J * B`` draws ordered
    draw-major (all images for draw 0, then draw 1, ...).  Returns
    ``(J * B, C, out_h, out_w)`` in the same order.  Differentiable in ``x``.
    """
    if isinstance(params, CropParams):
        return _crop(x, params)
    b, c, h, w = x.shape
    n, oh, _ = params.rows.shape
    ow = params.cols.shape[1]
    j = n // b
    # Only the small matrices are broadcast; the (possibly 12-megapixel) images are used in place.
    rows = params.rows.view(j, b, oh, h).transpose(0, 1).reshape(b, 1, j * oh, h)
    y = torch.matmul(rows, x.contiguous())                                   # (B, C, J*oh, W)
    cols = params.cols.view(j, b, ow, w).permute(1, 0, 3, 2).unsqueeze(1)    # (B, 1, J, W, ow)
    y = torch.matmul(y.view(b, c, j, oh, w), cols)                           # (B, C, J, oh, ow)
    return y.permute(2, 0, 1, 3, 4).reshape(n, c, oh, ow).contiguous(memory_format=torch.channels_last)


def _crop(x: torch.Tensor, p: CropParams) -> torch.Tensor:
    """Integer crops of the zero-padded batch as one flat gather (backward: one scatter-add)."""
    b, c, h, w = x.shape
    n = p.top.numel()
    hp, wp = h + 2 * p.pad, w + 2 * p.pad
    xp = F.pad(x, (p.pad, p.pad, p.pad, p.pad)) if p.pad else x
    dev = x.device
    rows = p.top[:, None] + torch.arange(h, device=dev)                       # (N, H)
    cols = p.left[:, None] + torch.arange(w, device=dev)                      # (N, W)
    cols = torch.where(p.flip[:, None], cols.flip(1), cols)
    plane = (torch.arange(n, device=dev) % b)[:, None] * c + torch.arange(c, device=dev)   # (N, C)
    index = (plane[:, :, None, None] * hp + rows[:, None, :, None]) * wp + cols[:, None, None, :]
    out = xp.reshape(-1)[index.reshape(-1)].view(n, c, h, w)
    return out.contiguous(memory_format=torch.channels_last)


#: ITU-R BT.601 luma weights, as in kornia's and Pillow's RGB-to-grayscale conversions.
LUMA = (0.299, 0.587, 0.114)


def grayscale_where(x: torch.Tensor, which: torch.Tensor) -> torch.Tensor:
    """``x`` ``(N, 3, H, W)`` with the images where ``which`` ``(N,)`` is True replaced by
    their luma on all three channels (what a trainer's grayscale conversion leaves)."""
    luma = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    gray = (x * luma).sum(1, keepdim=True).expand_as(x)
    return torch.where(which.view(-1, 1, 1, 1), gray, x)
