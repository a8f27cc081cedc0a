"""One module per verb; each exposes `command`, a Typer function that parses and delegates."""
