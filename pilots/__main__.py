"""`python -m pilots` runs the `pilots` command."""

from pilots.cli import app

app()
