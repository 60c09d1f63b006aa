"""``twin tiles ...``: added to the twin command through entry points."""

from __future__ import annotations

import typer

__all__ = ["app"]

app = typer.Typer(help="Build the 3D Tiles of the twin.", no_args_is_help=True)
