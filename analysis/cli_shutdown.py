"""``twin shutdown ...``: planned shutdowns (关阀方案) as records, added through entry points."""

from __future__ import annotations

import typer

__all__ = ["app"]

app = typer.Typer(help="Planned shutdowns (关阀方案): plan, notify, execute, restore.", no_args_is_help=True)
