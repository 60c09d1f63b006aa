"""``twin analyze ...``: added to the twin command through entry points.

The commands live beside the analyses they run, each module with a Typer of its own:
``cli_approval`` (collision, clearance, cover), ``cli_drawings`` (section, profile and the
proposal workflow), ``cli_emergency`` (shutoff, hazards), ``cli_scan`` (the whole-network scan and its
findings) and ``cli_criticality`` (criticality of every segment). This module gathers them into :data:`app`; they never import it. A TwinError from a
command is reported by ``twin``'s main (``error [CODE] message``, exit 2).
"""

from __future__ import annotations

import typer

from analysis import cli_approval, cli_criticality, cli_drawings, cli_emergency, cli_scan

__all__ = ["app"]

app = typer.Typer(help="Analyses of the twin: approval checks and emergency shutoff.", no_args_is_help=True)
for _commands in (cli_approval.app, cli_drawings.app, cli_emergency.app, cli_scan.app, cli_criticality.app):
    app.add_typer(_commands)  # no name: their commands join ``twin analyze`` itself
