"""`pilots tokens`: the API's bearer tokens; the commands themselves live in `pilots.tokens`."""

from __future__ import annotations

import typer

from pilots.tokens import tokens_app


def register(app: typer.Typer) -> None:
    """Add `pilots tokens` and its commands."""
    app.add_typer(tokens_app, name="tokens")
