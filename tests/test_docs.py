"""The README's option table states the defaults the code has (and ``--help`` says the same)."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from unlearnable_cli.commands.app import app
from unlearnable_cli.config import ProtectConfig
from unlearnable_cli.engine.transforms import TransformSpec
from unlearnable_cli.models.weights import DEFAULT_GENERATOR

README = Path(__file__).resolve().parents[1] / "README.md"
PROTECT = ProtectConfig()
#: Options whose default is not a ProtectConfig field of the same name.
ELSEWHERE = {"weights": DEFAULT_GENERATOR, "radius": PROTECT.radius_levels, "eot_scale": TransformSpec().min_scale,
             "format": PROTECT.output_format.value}


def protect_table() -> dict[str, str]:
    """``--option`` -> its default cell, from the README's protect table."""
    text = README.read_text()
    start = text.index("## `unlearnable protect")
    rows = re.findall(r"^\| `(-[^`]*)` \| ([^|]*) \|", text[start:text.index("\n## ", start + 1)], re.M)
    return {opt.split(", ")[-1].split(" ")[0]: default.strip() for opt, default in rows}


def code_default(option: str) -> object:
    name = option.lstrip("-").replace("-", "_")
    if name in ELSEWHERE:
        return ELSEWHERE[name]
    value = getattr(PROTECT, name)
    return getattr(value, "value", value)


def cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return f"`{value}`"


def test_the_readme_protect_table_states_the_code_defaults():
    table = protect_table()
    checked = []
    for option, default in table.items():
        name = option.lstrip("-").replace("-", "_")
        if default in ("off", "auto", "`auto`") or not (hasattr(PROTECT, name) or name in ELSEWHERE):
            continue
        if not re.match(r"^(`\w+`|[\d,.]+)", default):   # derived defaults ("R/5", "the generator's ρ_a")
            continue
        if code_default(option) is None:                  # derived from the generator (eot-samples)
            continue
        expected = cell(code_default(option))
        assert default.split(" ")[0] == expected, f"README says {option} defaults to {default}, the code {expected}"
        checked.append(option)
    assert {"--radius", "--steps", "--batch-size", "--max-pixels", "--eot-scale", "--highpass", "--labels",
            "--budget", "--format", "--weights", "--seed"} <= set(checked)


def test_protect_help_names_the_same_defaults():
    out = " ".join(CliRunner().invoke(app, ["protect", "--help"], env={"COLUMNS": "400"}).output.split())
    for text in (f"default {PROTECT.radius * 255:g}", f"default {PROTECT.steps}", f"default {PROTECT.batch_size}",
                 f"default {PROTECT.max_pixels:,}"):
        assert text in out, text
