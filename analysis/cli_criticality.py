"""``twin analyze criticality``: what isolating each segment cuts off, and the N-1 next ring.

A thin call of :func:`analysis.criticality.criticality`: the stored results are recomputed
first when the network has changed since (progress on the terminal; the recomputation is
audited), then the worst segments are listed, or everything as JSON with ``--json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import sqlalchemy as sa
import typer
from rich import progress as bar
from rich.console import Console
from rich.table import Table

from analysis.criticality import criticality
from twin.audit import record_command
from twin.db import open_twin
from twin.jsonable import plain
from twin.progress import shown as in_both
from twin.settings import get_settings

__all__ = ["app", "criticality_command"]

#: The commands of this module; :mod:`analysis.cli` adds them to ``twin analyze``.
app = typer.Typer()
err = Console(stderr=True)


@contextmanager
def _progress(console: Console) -> Iterator[Callable[[int, str], None]]:
    """A progress callback drawing a bar on ``console`` (silent when it is not a terminal)."""
    if not console.is_terminal:
        yield lambda percent, message: None
        return
    with bar.Progress(bar.TextColumn("{task.description}"), bar.BarColumn(), bar.TaskProgressColumn(),
                      bar.TimeElapsedColumn(), console=console, transient=True) as shown:
        task = shown.add_task("criticality", total=100)
        yield lambda percent, message: shown.update(task, completed=percent, description=in_both(message))


@app.command("criticality")
def criticality_command(
    top: Annotated[int, typer.Option("--top", help="How many segments, worst first.")] = 20,
    min_valves: Annotated[int | None, typer.Option(
        "--min-valves", help="Only segments needing at least K valves to isolate.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print everything as JSON, with the N-1 next "
                                          "ring of each valve the listed segments need.")] = False,
) -> None:
    """Worst segments to lose (关阀影响): what isolating each cuts off, and the valves it needs."""
    settings = get_settings()
    engine = open_twin(settings)

    def audit(conn: sa.Connection, run: dict) -> None:
        record_command(conn, settings.user_name, "analyze criticality", "criticality computed", params=run)

    try:
        with _progress(err) as progress:
            result = criticality(engine, top=top, min_valves=min_valves, with_valves=as_json,
                                 user=settings.user_name, progress=progress, audit=audit)
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(plain(result), ensure_ascii=False, indent=2))
    else:
        _show(result, Console())


def _show(r: dict, out: Console) -> None:
    s = r["state"]
    out.print(f"[bold]关阀影响 criticality[/] of {s.get('segments', 0):,} segments, {s.get('valves', 0):,} "
              f"valves; computed {s.get('computed_at', '-')} in {s.get('seconds', 0):.2f} s")
    t = Table(title=f"worst {len(r['segments'])} segments (critical customers, customers, length)")
    for c in ("segment", "utility", "pipes", "valves", "outage pipes", "length (m)", "用户数 customers",
              "critical", "demand"):
        t.add_column(c)
    for g in r["segments"]:
        o = g["outage"]
        pipes = ", ".join(g["pipes"][:3]) + (" ..." if len(g["pipes"]) > 3 else "")
        t.add_row(str(g["segment"]), g["utility"] or "", pipes, str(g["valves_needed"]), f"{o['pipes']:,}",
                  f"{o['length_m']:,.1f}", f"{o['customers']:,}", f"{o['critical_customers']:,}",
                  f"{o['demand']:,.2f}")
    out.print(t)
