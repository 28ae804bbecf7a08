"""Unlearnable-examples methods, one class per file, registered by name (timm-style registry).

``METHODS`` maps (``--method`` name, class-wise) to the class; :func:`method_class`
resolves a training config's choice, :func:`card_method` a generator card's.  Adding a
method: a file here with an :class:`~.base.UnlearnableMethod` subclass decorated with
:func:`register`, imported at the bottom of this module, plus its ``Method`` enum value
(docs/design.md, "Adding a method").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from ..config import ConfigError, Method

if TYPE_CHECKING:
    from ..models.weights import GeneratorCard
    from .base import UnlearnableMethod

M = TypeVar("M", bound="type[UnlearnableMethod]")

#: (name, class-wise) -> method class.
METHODS: dict[tuple[str, bool], "type[UnlearnableMethod]"] = {}


def register(cls: M) -> M:
    """Class decorator: make a method available under its ``name`` (and ``class_wise``)."""
    key = (cls.name, cls.class_wise)
    if key in METHODS:
        raise ValueError(f"method {key} is registered twice")
    METHODS[key] = cls
    return cls


def method_class(method: Method | str, class_wise: bool = False) -> "type[UnlearnableMethod]":
    """The class of ``--method`` (with ``--class-wise``); :class:`ConfigError` if there is none."""
    name = method.value if isinstance(method, Method) else str(method)
    if (name, class_wise) not in METHODS:
        takes = [n for n, cw in METHODS if cw == class_wise]
        raise ConfigError("--class-wise applies to --method " + " / ".join(takes) + " only" if class_wise
                          else f"unknown method {name!r} (known: {', '.join(sorted({n for n, _ in METHODS}))})")
    return METHODS[(name, class_wise)]


def card_method(card: "GeneratorCard") -> "type[UnlearnableMethod]":
    """The method class that made ``card``'s generator."""
    return method_class(card.method, bool(card.hyperparameters.get("class_wise")))


from . import classwise_em, em, pil, rem, sem, tue  # noqa: E402,F401  (each registers its class)
