"""``unlearnable info``: a generator's card, after checking its file."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..models.weights import WeightsError
from .app import app
from .console import Command, console, fail


@app.command(cls=Command)
def info(weights: Annotated[Optional[str], typer.Argument(metavar="[NAME|FILE]", help="A shipped generator's name or a generator .safetensors file (default: list the shipped generators and show the default one).")] = None,
         as_json: Annotated[bool, typer.Option("--json", help="Print the whole card as JSON.")] = False) -> None:
    """Show a generator's card (architecture, classes, data, accuracies), after checking its file."""
    import dataclasses

    from ..protect.summary import card_rows, metric_lines, shipped_table
    from ..models.weights import load_generator, resolve_weights
    try:
        path = resolve_weights(weights)
        _, card = load_generator(path)           # verifies the tensors' SHA-256, as protect does
    except WeightsError as e:
        raise fail(str(e))
    if as_json:
        console.print_json(json.dumps(dataclasses.asdict(card)))
        return
    if weights is None:
        console.print(shipped_table())
    table = Table(title=str(path), show_header=False)
    for k, v in card_rows(card):
        table.add_row(k, v)
    console.print(table)
    for line in metric_lines(card.metrics, card.method):
        console.print(f"accuracy: {line}", highlight=False, soft_wrap=True)
    console.print("[green]verified[/green]: the tensors match the SHA-256 recorded in the file", highlight=False)
