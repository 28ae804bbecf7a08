"""dlib itself, through the faces extra: detection, 5-point landmarks, reference descriptors.

These are what the ``face_recognition`` library calls: ``face_locations`` is dlib's HOG
``get_frontal_face_detector()`` with one upsampling, ``face_landmarks(model="small")`` the
5-point ``shape_predictor``, ``face_encodings`` ``compute_face_descriptor(img, shape,
num_jitters=1)`` (padding 0.25; one jitter means none).  Detection and landmarks are not
differentiable: they are computed once per photo and the port's chip warp
(:mod:`.chips`) reuses them.  Every function needs dlib (``FacesExtraMissing`` otherwise).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from .weights import LANDMARKS_MODEL, RECOGNITION_MODEL, import_dlib, model_file


@functools.lru_cache(maxsize=1)
def _tools() -> tuple[Any, Any, Any]:
    """(detector, 5-point shape predictor, face recognition model), loaded once."""
    dlib = import_dlib()
    return (dlib.get_frontal_face_detector(), dlib.shape_predictor(str(model_file(LANDMARKS_MODEL))),
            dlib.face_recognition_model_v1(str(model_file(RECOGNITION_MODEL))))


def _rgb8(image: np.ndarray) -> np.ndarray:
    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.dtype} {image.shape}")
    return image


def detect_landmarks(image: np.ndarray, upsample: int = 1) -> list[np.ndarray]:
    """The 5-point landmarks of every face dlib's HOG detector finds, in its order.

    ``image``: (H, W, 3) uint8 RGB.  Returns a list of (5, 2) int64 arrays of (x, y) pixel
    coordinates (empty when no face is found).
    """
    detector, predictor, _ = _tools()
    image = _rgb8(image)
    shapes = [predictor(image, rect) for rect in detector(image, upsample)]
    return [np.array([(s.part(i).x, s.part(i).y) for i in range(5)], dtype=np.int64) for s in shapes]


def _shape(landmarks: np.ndarray) -> Any:
    """A ``dlib.full_object_detection`` with these parts (its rectangle is not used by
    ``get_face_chip_details``, so it is the landmarks' bounding box)."""
    dlib = import_dlib()
    pts = np.asarray(landmarks, dtype=np.int64)
    rect = dlib.rectangle(int(pts[:, 0].min()), int(pts[:, 1].min()), int(pts[:, 0].max()), int(pts[:, 1].max()))
    return dlib.full_object_detection(rect, [dlib.point(int(x), int(y)) for x, y in pts])


def dlib_descriptors(image: np.ndarray, landmarks: list[np.ndarray], num_jitters: int = 1) -> np.ndarray:
    """dlib's own descriptors (N, 128) float64, face by face as ``face_encodings`` does."""
    _, _, model = _tools()
    image = _rgb8(image)
    rows = [np.array(model.compute_face_descriptor(image, _shape(lm), num_jitters)) for lm in landmarks]
    return np.stack(rows) if rows else np.zeros((0, 128))


def dlib_chip(image: np.ndarray, landmarks: np.ndarray, size: int = 150, padding: float = 0.25) -> np.ndarray:
    """dlib's ``get_face_chip``: the (size, size, 3) uint8 chip the descriptor is computed on."""
    dlib = import_dlib()
    return dlib.get_face_chip(_rgb8(image), _shape(landmarks), size=size, padding=padding)
