"""``twin analyze ...``: added to the twin command through entry points.

The commands live beside the analyses they run (``cli_approval``, ``cli_drawings``, ``cli_emergency``) and
register themselves on :data:`app` when imported at the bottom of this module.
"""

from __future__ import annotations

import typer

__all__ = ["app"]

app = typer.Typer(help="Analyses of the twin: approval checks and emergency shutoff.", no_args_is_help=True)

from analysis import cli_approval, cli_drawings, cli_emergency  # noqa: E402,F401  (they register commands)
