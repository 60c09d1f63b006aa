"""``twin analyze criticality``: what isolating each segment cuts off, and the N-1 next ring."""

from __future__ import annotations

import typer

__all__ = ["app"]

app = typer.Typer()
