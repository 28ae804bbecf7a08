"""How the commands talk: one red line and exit 1 for a domain error, one yellow line
and exit 130 (Ctrl-C) or 143 (SIGTERM) for a run stopped on request, and help pages
without Python type names."""

from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import Any, Iterator

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

from .config import ConfigError
from .data import DatasetError
from .imageio import ImageReadError
from .weights import WeightsError

console = Console()
err_console = Console(stderr=True)


class _PlainMetavars:
    """Help without type labels where they say nothing: no ``<bool>`` beside a flag
    (``--help`` included); list options name their values with an explicit metavar."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            option.metavar = ""
        return option

    def get_params(self, ctx: Any) -> Any:
        params = super().get_params(ctx)  # type: ignore[misc]
        for p in params:
            if getattr(p, "is_flag", False) and p.metavar is None:
                p.metavar = ""
        return params


class Command(_PlainMetavars, TyperCommand):
    pass


class Group(_PlainMetavars, TyperGroup):
    pass


DOMAIN_ERRORS = (ConfigError, DatasetError, ImageReadError, WeightsError)


def _exit_line(tag: str, message: str, code: int) -> typer.Exit:
    """Print one tagged line on stderr and return the Exit to raise."""
    err_console.print(f"{tag} {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def fail(message: str, code: int = 1) -> typer.Exit:
    """A red error line and the Exit to raise."""
    return _exit_line("[red]error:[/red]", message, code)


def os_failure(e: OSError, kept: str) -> typer.Exit:
    """A file the run could not write or read (disk full, permissions): name it, say what is kept."""
    where = e.filename2 or e.filename
    return fail(f"{f'{where}: ' if where else ''}{e.strerror or e}; {kept}")


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler, ``kill``), handled like Ctrl-C: stop, say what is kept."""


def stopped(message: str, terminated: bool = False) -> typer.Exit:
    """A run stopped on request: its work is saved, so not an error; exit 130 after Ctrl-C,
    143 after SIGTERM (the shells' 128 + signal number)."""
    return _exit_line("[yellow]stopped:[/yellow]", message, 143 if terminated else 130)


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises :class:`Terminated`, so the command's Ctrl-C path
    (finished work kept, one line saying so) also serves ``kill``."""
    def handler(signum: int, frame: object) -> None:
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:                     # not the main thread (tests): nothing to install
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
