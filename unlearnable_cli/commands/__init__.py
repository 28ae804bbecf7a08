"""The command layer: thin Typer commands (:mod:`.app`) and how they talk (:mod:`.console`)."""

from .app import app

__all__ = ["app"]
