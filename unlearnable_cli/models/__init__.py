"""Models: the architecture registry (:mod:`.architectures`) and generator files with their
card (:mod:`.weights`: safetensors only, hash-checked, shipped generators found by name)."""

from .architectures import CIFAR_MEAN, CIFAR_STD, MODELS, build_model

__all__ = ["CIFAR_MEAN", "CIFAR_STD", "MODELS", "build_model"]
