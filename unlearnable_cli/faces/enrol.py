"""From photo files to the face chips a recognizer enrols, as face_recognition would.

Each photo goes through dlib's HOG detector (one upsampling, ``face_recognition``'s
default) and 5-point landmarks, on the photo *as saved*: a protected photo is detected as
a site would detect it.  Of several faces the largest (widest between the outer eye
corners) is the photo's subject, as in LFW, where bystanders are smaller.  Its chip is cut
by :func:`~.chips.face_chips`, which matches dlib's chips pixel for pixel.

A photo where no face is found gets a chip of zeros (:data:`NO_FACE`; a real chip of a
photo is never all black): a recognizer cannot enrol it, and cannot recognize it either.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..config.common import MAX_PIXELS
from ..io.datasets import DatasetError
from ..io.images import ImageReadError, read_image
from .chips import face_chips
from .dlib_net import CHIP_SIZE

#: The chip of a photo in which no face was found.
NO_FACE = torch.zeros(3, CHIP_SIZE, CHIP_SIZE, dtype=torch.uint8)


def largest_face(landmarks: list[np.ndarray]) -> np.ndarray | None:
    """The landmark set whose outer eye corners (points 0 and 2) are farthest apart."""
    if not landmarks:
        return None
    return max(landmarks, key=lambda lm: float(np.hypot(*(lm[0] - lm[2]).astype(float))))


def photo_chip(path: Path, max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    """The (3, 150, 150) uint8 chip of the largest face in ``path``, or :data:`NO_FACE`."""
    from . import detect_landmarks
    try:
        pixels = read_image(path, max_pixels).pixels
    except ImageReadError as e:
        raise DatasetError(f"unreadable image {e}") from e
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    face = largest_face(detect_landmarks(pixels))
    if face is None:
        return NO_FACE.clone()
    photo = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).double() / 255
    chip = face_chips(photo, [face])[0]
    return (chip * 255).round().to(torch.uint8)


def load_chips(files: list[Path]) -> torch.Tensor:
    """(N, 3, 150, 150) uint8 chips of ``files``, in order (:data:`NO_FACE` where none).

    One photo at a time: dlib's detector and shape predictor are shared objects, and two
    threads calling them at once crashed the process (SIGSEGV on LFW-10).
    """
    if not files:
        return torch.zeros((0, 3, CHIP_SIZE, CHIP_SIZE), dtype=torch.uint8)
    return torch.stack([photo_chip(f) for f in files])


def has_face(chips: torch.Tensor) -> torch.Tensor:
    """(N,) bool: which chips hold a face (are not :data:`NO_FACE`)."""
    return chips.flatten(1).ne(0).any(1)
