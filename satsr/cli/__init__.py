"""The `satsr` command line: the Typer app (app.py), one module per verb (cmd_*.py) and the
options they share, each declared once (options.py)."""

from satsr.cli.app import app, main

__all__ = ["app", "main"]
