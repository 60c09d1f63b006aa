"""``twin export ...``: added to the twin command through entry points."""

from __future__ import annotations

import typer

__all__ = ["export"]


def export() -> None:
    """Export the network (not built yet)."""
    raise typer.Exit(2)
