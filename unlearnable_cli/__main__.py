"""``python -m unlearnable_cli`` runs the command line."""

from .cli import app

app(prog_name="unlearnable")
