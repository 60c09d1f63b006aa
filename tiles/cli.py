"""``twin tiles ...``: added to the twin command through entry points.

A build is audited (``tiles-build``, role ``cli``) once it is written, as the API's builds are.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from twin.audit import record_command
from twin.db import open_twin
from twin.progress import shown
from twin.settings import TwinSettings, get_settings

__all__ = ["app", "build"]

app = typer.Typer(help="Build the 3D Tiles of the twin.", no_args_is_help=True)
err = Console(stderr=True)


@contextmanager
def _progress(enabled: bool):
    """A progress bar per stage, on a terminal only."""
    if not enabled or not err.is_terminal:
        yield None
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=True) as bar:
        tasks: dict[str, int] = {}

        def step(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(shown(stage), total=max(total, 1))
            bar.update(tasks[stage], completed=done, total=max(total, 1))

        yield step


@app.command("build")
def build(
    out: Path | None = typer.Option(None, "--out", help="Output folder (default: TWIN_TILES_DIR or "
                                    "<data dir>/tiles)."),
    full: bool = typer.Option(False, "--full", help="Rebuild every tile, ignoring the last build."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    dask: bool | None = typer.Option(None, "--dask/--no-dask", help="Mesh on a Dask cluster: "
                                     "TWIN_DASK_SCHEDULER's, else a LocalCluster of TWIN_DASK_WORKERS "
                                     "processes (default: when TWIN_DASK_SCHEDULER is set)."),
) -> None:
    """Build the 3D Tiles 1.1 tileset of the live network; only changed tiles unless --full."""
    from tiles.build import build_tileset

    settings = get_settings()
    with _progress(not as_json) as step:
        report = build_tileset(settings, out_dir=out, full=full, progress=step, cluster=dask)
    _audit(settings, report)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    table = Table(title=f"3D Tiles {'full build' if report['full'] else 'incremental build'}: "
                        f"{report['tileset']}")
    for c in ("tiles", "written", "kept", "removed", "features", "triangles", "MB", "seconds"):
        table.add_column(c, justify="right")
    table.add_row(f"{report['tiles']:,}", f"{report['tiles_written']:,}", f"{report['tiles_kept']:,}",
                  f"{report['tiles_removed']:,}", f"{report['features']:,}", f"{report['triangles']:,}",
                  f"{report['bytes'] / 2**20:,.1f}", f"{report['seconds']:.1f}")
    Console().print(table)


def _audit(settings: TwinSettings, report: dict) -> None:
    """The build's audit entry, in a transaction of its own (the tiles are files, not rows)."""
    engine = open_twin(settings)
    try:
        with engine.begin() as conn:
            record_command(conn, settings.user_name, "tiles build", "tiles-build", params={
                "full": report["full"], "tileset": str(report["tileset"]),
                **{k: report[k] for k in ("tiles", "tiles_written", "tiles_removed", "features")}})
    finally:
        engine.dispose()
