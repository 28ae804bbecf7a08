"""dlib's face recognizer (what ``face_recognition`` uses), ported to torch (issue 47).

- :mod:`.dlib_format`, :mod:`.dlib_net`: read dlib's own
  ``dlib_face_recognition_resnet_model_v1.dat`` in pure Python (no dlib needed);
- :mod:`.model`: :class:`DlibFaceNet`, the same ResNet, 150x150 chips in [0, 1] -> (N, 128);
- :mod:`.weights`: the .dat files of the faces extra and the safetensors cache
  (:func:`load_face_net`);
- :mod:`.chips`: face chips exactly as dlib cuts them, differentiable in the photo;
- :mod:`.dlib_tools`: dlib's detector, 5-point landmarks and reference descriptors.

Typical use (``docs/faces.md``)::

    net = load_face_net()
    marks = detect_landmarks(photo_uint8)              # dlib, once per photo
    photo = torch.from_numpy(photo_uint8).permute(2, 0, 1) / 255
    emb = embed_faces(net, photo.requires_grad_(), marks)  # (N, 128), gradient to photo

Everything but :mod:`.dlib_tools` and the default model location works without the
extra; those raise :class:`FacesExtraMissing` naming ``pip install "unlearnable[faces]"``.
"""

from __future__ import annotations

import numpy as np
import torch

from .chips import ChipGeometry, chip_geometry, face_chips, warp_chip
from .dlib_format import DlibFormatError
from .model import DlibFaceNet
from .weights import FaceCacheError, FacesExtraMissing, load_face_net

from ..config.evaluate import MATCH_THRESHOLD  # face_recognition's tolerance (0.6)


def embed_faces(net: DlibFaceNet, photo: torch.Tensor, landmarks: list[np.ndarray],
                quantize: bool = True) -> torch.Tensor:
    """Descriptors (N, 128) of the faces at ``landmarks`` in ``photo`` (3, H, W) RGB [0, 1]."""
    return net(face_chips(photo, landmarks, quantize).to(next(net.parameters()).device))


def detect_landmarks(image: np.ndarray, upsample: int = 1) -> list[np.ndarray]:
    """dlib's 5-point landmarks of every face in an (H, W, 3) uint8 image (needs the extra)."""
    from .dlib_tools import detect_landmarks as detect
    return detect(image, upsample)


__all__ = ["MATCH_THRESHOLD", "ChipGeometry", "DlibFaceNet", "DlibFormatError", "FaceCacheError",
           "FacesExtraMissing", "chip_geometry", "detect_landmarks", "embed_faces", "face_chips",
           "load_face_net", "warp_chip"]
