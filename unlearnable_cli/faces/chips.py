"""Face chips as dlib makes them, with the warp in torch so gradients reach the photo.

dlib's ``compute_face_descriptor(img, shape, num_jitters, padding=0.25)``
(``tools/python/src/face_recognition.cpp``) runs the net on the 150x150 chip of
``extract_image_chips(img, get_face_chip_details(shape, 150, 0.25))``
(``dlib/image_transforms/interpolation.h``).  This module redoes both steps:

1. **geometry** (:func:`chip_geometry`, numpy float64, not differentiable; the landmarks
   are fixed): the similarity transform (Umeyama's least squares, dlib's
   ``find_similarity_transform``) from dlib's 5-point template, padded as
   ``(padding + p) / (1 + 2 padding)`` and scaled by 150, to the landmarks; the chip's
   rectangle and angle (``chip_details``); the image pyramid depth and the crop
   (``extract_image_chips``: a ``pyramid_down<2>`` level is used whenever the chip's
   rectangle, halved, still covers more than 150x150 pixels, i.e. a face wider than about
   300 px in the photo; LFW's 250 px photos never need one); the affine map from chip pixel
   ``(c, r)`` (pixel centres at integer coordinates) to the sampled image.
2. **warp** (:func:`warp_chip`, torch, differentiable): crop, the pyramid levels (5x5
   binomial filter ``[1 4 6 4 1]^2 / 256``, stride 2, no padding, as
   ``pyramid_down_2_1``), then bilinear sampling by ``grid_sample`` (``align_corners=True``
   makes normalised coordinates land on pixel centres); a sample whose 2x2 neighbourhood
   leaves the image is black, as dlib's ``interpolate_bilinear`` + ``transform_image``
   make it.  dlib stores the chip and each pyramid level as 8-bit, truncating; with
   ``quantize=True`` (the default) the port truncates the same way in the forward pass
   and lets the gradient through unchanged (a straight-through estimator).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .dlib_net import CHIP_SIZE

#: dlib's 5-point template (get_face_chip_details): outer/inner corners of the subject's
#: left eye, then of the right eye, then the bottom of the nose, in unit chip coordinates.
TEMPLATE_5 = np.array([[0.8595674595992, 0.2134981538014], [0.6460604764104, 0.2289674387677],
                       [0.1205750620789, 0.2137274526848], [0.3340850613712, 0.2290642403242],
                       [0.4901123135679, 0.6277975316475]])
PADDING = 0.25


@dataclass(frozen=True)
class ChipGeometry:
    """Where one chip comes from: crop ``box`` (left, top, right, bottom; inclusive pixel
    indices of the photo), ``levels`` pyramid_down<2> steps of the crop, and ``affine``
    (2x3, float64) mapping chip pixel (c, r, 1) to (x, y) in that level's pixels."""

    box: tuple[int, int, int, int]
    levels: int
    affine: np.ndarray
    size: int = CHIP_SIZE
    copy: bool = False     # dlib's fast path: an upright chip at scale 1 is a plain crop


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """dlib's ``find_similarity_transform`` (Umeyama 1991, eqs. 34-43): ``dst ~ M @ src + t``."""
    mean_s, mean_d = src.mean(0), dst.mean(0)
    sigma_s = ((src - mean_s) ** 2).sum(1).mean()
    cov = (dst - mean_d).T @ (src - mean_s) / len(src)
    u, d, vt = np.linalg.svd(cov)
    s = np.eye(2)
    if np.linalg.det(cov) < 0 or (np.linalg.det(cov) == 0 and np.linalg.det(u) * np.linalg.det(vt) < 0):
        s[1, 1] = -1 if d[1] < d[0] else 1
        s[0, 0] = 1 if d[1] < d[0] else -1
    r = u @ s @ vt
    c = np.trace(np.diag(d) @ s) / sigma_s if sigma_s != 0 else 1.0
    return c * r, mean_d - c * r @ mean_s


def _lround(x: float) -> int:
    """C's ``std::lround``: halves away from zero."""
    return int(np.sign(x) * np.floor(abs(x) + 0.5))


def _rect_down(rect: np.ndarray) -> np.ndarray:
    """``pyramid_down<2>::rect_down`` of (l, t, r, b): each corner ``p / 2 - (1.25, 0.75)``."""
    return rect / 2.0 - np.array([1.25, 0.75, 1.25, 0.75])


def _area(rect: np.ndarray) -> float:
    """``drectangle::area``: (r - l + 1) (b - t + 1), 0 when empty."""
    w, h = rect[2] - rect[0] + 1, rect[3] - rect[1] + 1
    return 0.0 if w <= 0 or h <= 0 else float(w * h)


def _rotated_corners(rect: np.ndarray, angle: float) -> np.ndarray:
    """tl, tr, bl, br of ``rect`` rotated by ``angle`` about its centre (``rotate_point``)."""
    centre = np.array([(rect[0] + rect[2]) / 2.0, (rect[1] + rect[3]) / 2.0])
    corners = np.array([[rect[0], rect[1]], [rect[2], rect[1]], [rect[0], rect[3]], [rect[2], rect[3]]])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return (corners - centre) @ rot.T + centre


def chip_details(landmarks: np.ndarray, size: int = CHIP_SIZE, padding: float = PADDING) -> tuple[np.ndarray, float]:
    """``get_face_chip_details``: the chip's rectangle (l, t, r, b) in the photo and its angle.

    ``landmarks``: (5, 2) integer pixel coordinates (x, y) of dlib's 5-point shape predictor.
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (5, 2):
        raise ValueError(f"expected 5 landmarks (dlib's 5-point model), got shape {landmarks.shape}")
    template = (padding + TEMPLATE_5) / (2 * padding + 1) * size
    m, t = similarity_transform(template, landmarks)
    p = m @ np.array([1.0, 0.0])
    angle, scale = float(np.arctan2(p[1], p[0])), float(np.hypot(p[0], p[1]))
    centre = m @ np.array([size / 2.0, size / 2.0]) + t
    half = (size * scale - 1) / 2.0                   # centered_drect(p, w, h) subtracts 1
    return np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half]), angle


def chip_geometry(landmarks: np.ndarray, image_hw: tuple[int, int], size: int = CHIP_SIZE,
                  padding: float = PADDING) -> ChipGeometry:
    """Everything ``extract_image_chips`` decides for one chip of a photo of ``image_hw``."""
    rect, angle = chip_details(landmarks, size, padding)
    if angle == 0 and rect[2] - rect[0] + 1 == size and rect[3] - rect[1] + 1 == size:
        box = tuple(_lround(v) for v in rect)    # basic_extract_image_chip(img, rectangle(rect))
        return ChipGeometry(box, 0, np.array([[1.0, 0, box[0]], [0, 1.0, box[1]]]), size, copy=True)  # type: ignore
    depth, grow, down = 0, 2.0, _rect_down(rect)
    while _area(down) > size * size:
        down, depth, grow = _rect_down(down), depth + 1, grow * 2 + 2
    corners = _rotated_corners(rect, angle)
    lo, hi = corners.min(0) - grow, corners.max(0) + grow
    h, w = image_hw
    box = tuple(_lround(v) for v in (max(lo[0], 0), max(lo[1], 0), min(hi[0], w - 1), min(hi[1], h - 1)))
    if box[2] < box[0] or box[3] < box[1]:
        raise ValueError("the face chip lies outside the photo")
    local = rect - np.array([box[0], box[1], box[0], box[1]], dtype=np.float64)
    levels = 0
    while _area(_rect_down(local)) > size * size:
        local, levels = _rect_down(local), levels + 1
    tl, tr, bl, _ = _rotated_corners(local, angle)
    affine = np.stack([(tr - tl) / (size - 1), (bl - tl) / (size - 1), tl], axis=1)
    return ChipGeometry(box, levels, affine, size)  # type: ignore[arg-type]


#: Added before truncating: where four equal pixels are interpolated, float64 grid_sample
#: can land a few ulp below the integer that dlib's own formula returns exactly; without it
#: about 0.5% of chip values came out one level low (LFW), with it none (23 photos).
_ULP_SLACK = 1e-9


def _truncate(x: torch.Tensor) -> torch.Tensor:
    """``floor(x)`` forward, identity backward (dlib's cast of a double to an 8-bit pixel)."""
    return x + (torch.floor(x + _ULP_SLACK) - x).detach()


def pyramid_down(img: torch.Tensor, quantize: bool = True) -> torch.Tensor:
    """``pyramid_down<2>`` of (C, H, W) 0..255 values: binomial 5x5, stride 2 -> (H-3)//2."""
    if min(img.shape[-2:]) <= 8:
        raise ValueError("pyramid_down of an image of 8 pixels or fewer")
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=img.dtype, device=img.device)
    kernel = (k[:, None] * k[None, :]).expand(img.shape[0], 1, 5, 5)
    out = F.conv2d(img[None], kernel, stride=2, groups=img.shape[0])[0] / 256.0
    return _truncate(out) if quantize else out


def warp_chip(photo: torch.Tensor, geometry: ChipGeometry, quantize: bool = True) -> torch.Tensor:
    """The chip of ``photo`` (3, H, W) RGB in [0, 1]: (3, size, size) in [0, 1], differentiable.

    Computed in float64 (dlib interpolates in double) and returned in ``photo``'s dtype.
    With ``quantize`` the photo is first rounded to 8 bits and every 8-bit store of dlib is
    a truncation, all straight-through; without it the chip is the smooth interpolation.
    """
    if photo.ndim != 3 or photo.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) RGB photo, got shape {tuple(photo.shape)}")
    l, t, r, b = geometry.box
    v = photo.double() * 255.0
    if quantize:
        v = v + (torch.round(v) - v).detach()
    if geometry.copy:                            # zero outside the photo, as dlib's plain crop
        h, w = v.shape[-2:]
        v = F.pad(v, (max(0, -l), max(0, r - w + 1), max(0, -t), max(0, b - h + 1)))
        return (v[:, max(t, 0):max(t, 0) + geometry.size, max(l, 0):max(l, 0) + geometry.size] / 255.0).to(photo.dtype)
    v = v[:, t:b + 1, l:r + 1]
    for _ in range(geometry.levels):
        v = pyramid_down(v, quantize)
    h, w = v.shape[-2:]
    n = geometry.size
    grid_c, grid_r = torch.meshgrid(torch.arange(n, dtype=torch.float64), torch.arange(n, dtype=torch.float64),
                                    indexing="xy")
    a = torch.from_numpy(geometry.affine)
    x = a[0, 0] * grid_c + a[0, 1] * grid_r + a[0, 2]
    y = a[1, 0] * grid_c + a[1, 1] * grid_r + a[1, 2]
    inside = (x >= 0) & (y >= 0) & (torch.floor(x) + 1 < w) & (torch.floor(y) + 1 < h)
    grid = torch.stack([2 * x / max(w - 1, 1) - 1, 2 * y / max(h - 1, 1) - 1], dim=-1).to(v.device)
    chip = F.grid_sample(v[None], grid[None], mode="bilinear", padding_mode="zeros", align_corners=True)[0]
    chip = chip * inside.to(v.device)
    if quantize:
        chip = _truncate(chip)
    return (chip / 255.0).to(photo.dtype)


def face_chips(photo: torch.Tensor, landmarks: list[np.ndarray], quantize: bool = True) -> torch.Tensor:
    """(N, 3, 150, 150) chips of one photo, one per 5-point landmark set, as
    ``compute_face_descriptor`` makes them face by face (each with its own crop and pyramid)."""
    if not landmarks:
        return photo.new_zeros((0, 3, CHIP_SIZE, CHIP_SIZE))
    hw = (int(photo.shape[1]), int(photo.shape[2]))
    return torch.stack([warp_chip(photo, chip_geometry(lm, hw), quantize) for lm in landmarks])
