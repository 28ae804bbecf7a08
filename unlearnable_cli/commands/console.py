"""How the commands talk: one red line and exit 1 for a domain error, one yellow line
and exit 130 (Ctrl-C) or 143 (SIGTERM) for a run stopped on request, and help pages
without Python type names."""

from __future__ import annotations

import signal
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

from ..config import ConfigError, Interrupted
from ..io.datasets import DatasetError
from ..io.images import ImageReadError
from ..faces.dlib_format import DlibFormatError
from ..faces.weights import FaceCacheError, FacesExtraMissing
from ..models.weights import WeightsError

if TYPE_CHECKING:
    from ..distributed import Shard

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


DOMAIN_ERRORS = (ConfigError, DatasetError, ImageReadError, WeightsError, DlibFormatError, FaceCacheError,
                 FacesExtraMissing)


def _exit_line(tag: str, message: str, code: int) -> typer.Exit:
    """Print one tagged line on stderr and return the Exit to raise; ``message`` is plain
    text (a file named ``photo[1].jpg`` or ``pip install "unlearnable[faces]"`` prints as is)."""
    from rich.markup import escape
    err_console.print(f"{tag} {escape(message)}", highlight=False, soft_wrap=True)
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


class StopRequests:
    """The commands' one interruption mechanism: Ctrl-C (SIGINT) and SIGTERM.

    Calling it returns the number of the signal that asked to stop (0: none).  With
    ``graceful`` (``train-generator``) the first signal only sets that number, which the
    loop checks between steps to save a checkpoint first; without it (``protect``,
    ``eval``, whose finished outputs are already on disk) the first signal stops at once,
    as :class:`KeyboardInterrupt` (SIGINT) or :class:`Terminated` (SIGTERM).  A second
    signal always stops at once.
    """

    def __init__(self, graceful: bool) -> None:
        self.graceful, self.signum = graceful, 0

    def __call__(self) -> int:
        return self.signum

    def handle(self, signum: int, frame: object) -> None:
        again, self.signum = bool(self.signum), self.signum or signum
        if again or not self.graceful:
            raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


@contextmanager
def stop_requests(graceful: bool = False) -> Iterator[StopRequests]:
    """Within the block SIGINT and SIGTERM go to a :class:`StopRequests` (not installed
    outside the main thread, where Python's default Ctrl-C stays)."""
    requests = StopRequests(graceful)
    previous = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, requests.handle)
    except ValueError:                     # not the main thread (tests): nothing to install
        pass
    try:
        yield requests
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stopped(message: str, terminated: bool = False) -> typer.Exit:
    """A run stopped on request: its work is saved, so not an error; exit 130 after Ctrl-C,
    143 after SIGTERM (the shells' 128 + signal number)."""
    return _exit_line("[yellow]stopped:[/yellow]", message, 143 if terminated else 130)


@contextmanager
def command_errors(kept: str, shard: "Shard | None" = None, extra: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """Every command's one exception-to-message wrapper: a stop on request (exit 130/143,
    saying what is ``kept``), a domain error (``extra`` too: one red line, exit 1), a file
    that could not be read or written, and, under torchrun (``shard``), a lost process.
    With ``shard`` the process group is closed on the way out."""
    try:
        yield
    except Interrupted as e:
        raise stopped(str(e), e.signum == signal.SIGTERM)
    except KeyboardInterrupt as e:
        raise stopped(kept, isinstance(e, Terminated))
    except DOMAIN_ERRORS + extra as e:
        raise fail(str(e))
    except OSError as e:
        raise os_failure(e, kept)
    except RuntimeError as e:
        if shard is None or not shard.torchrun:
            raise
        from .. import distributed
        raise fail(distributed.lost_peer(shard, e, kept))
    finally:
        if shard is not None:
            from .. import distributed
            distributed.stop()


#: ``progress(label, done, total, status="")``: one bar per label, updated in place.
ProgressFn = Callable[..., None]


@contextmanager
def progress_bar(unit: str, disable: bool, elapsed: bool = False, status: bool = False,
                 transient: bool = True) -> Iterator[ProgressFn]:
    """The progress display of every command, on stderr: one bar per label the library
    reports (``read``/``protect``, each victim, ``score estimator``/``train sem``)."""
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)
    columns: list[Any] = ["[bold]{task.description}", BarColumn(), MofNCompleteColumn(), unit]
    columns += [TextColumn("{task.fields[status]}")] if status else []
    columns += [TimeElapsedColumn()] if elapsed or status else []
    columns += [] if elapsed else [TimeRemainingColumn()]
    with Progress(*columns, console=err_console, disable=disable, transient=transient) as bar:
        tasks: dict[str, Any] = {}

        def progress(label: str, done: float, total: int | None, state: str = "") -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total, status=state)
            bar.update(tasks[label], completed=done, total=total, status=state)

        yield progress
