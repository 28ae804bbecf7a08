"""Command layer: thin Typer commands that build a config and call a library function.

Domain errors (bad input, bad options, unusable weights) become one red line and
exit code 1; everything else is in the library modules.
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from .. import __version__
from ..config import Device
from .console import Group, console

app = typer.Typer(add_completion=False, no_args_is_help=True, cls=Group,
                  help="Protect your own images against unauthorized use as training data.")


def version_callback(value: bool) -> None:
    if value:
        console.print(f"unlearnable {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: Annotated[Optional[bool], typer.Option("--version", callback=version_callback,
                                                         is_eager=True, help="Show the version.")] = None) -> None:
    """unlearnable: small, bounded noise that makes your images less useful as training data."""


DeviceOpt = Annotated[Device, typer.Option(help="auto = CUDA when available, else CPU.")]
QuietOpt = Annotated[bool, typer.Option(help="No progress bar.")]




from . import protect, info, evaluate, train  # noqa: E402,F401,I001  (each registers its command, in --help's order)
