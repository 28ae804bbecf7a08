"""``python -m unlearnable_cli`` runs the command line."""

from .commands.app import app

app(prog_name="unlearnable")
