"""From a command's parameters to a config's fields, in one place.

Command-line options default to ``None`` ("the default in :mod:`unlearnable_cli.config`"),
flags to False; radii and steps are given in pixel levels out of 255 and stored in
[0, 1] units inside.  :func:`config_fields` makes that conversion once, for any config
dataclass, so the commands hold no per-option plumbing.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..config import from_levels

#: Options given in levels out of 255 (every config stores them in [0, 1]).
LEVEL_OPTIONS = frozenset({"radius", "step_size", "random_radius", "adv_radius", "adv_step_size", "score_step",
                           "score_sigma"})


def config_fields(params: dict[str, Any], config: type, renamed: dict[str, str] | None = None) -> dict[str, Any]:
    """The parameters that are fields of dataclass ``config`` and were given: levels
    converted to [0, 1], paths to strings where the field holds a string, a flag left
    off as "keep the default".  ``renamed``: parameter -> field where the names differ."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    out: dict[str, Any] = {}
    for name, value in params.items():
        field = (renamed or {}).get(name, name)
        if field not in fields or value is None or value is False:
            continue
        if field in LEVEL_OPTIONS:
            value = from_levels(value)
        elif isinstance(value, Path) and "str" in str(fields[field].type):
            value = str(value)
        out[field] = value
    return out
