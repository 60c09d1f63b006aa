"""``twin analyze scan``: the whole-network collision and clearance scan, as the server runs it.

A thin call of :func:`analysis.scan.scan_network` (the ``network-scan`` process of the API and
the benchmark run the same function): progress on the terminal, then the counts and the worst
findings as tables, or the whole result with ``--json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich import progress as bar
from rich.console import Console
from rich.table import Table

from analysis.scan import DEFAULT_INCLUDE, scan_network
from twin.db import open_twin
from twin.jsonable import plain
from twin.settings import get_settings

__all__ = ["app", "scan"]

#: The commands of this module; :mod:`analysis.cli` adds them to ``twin analyze``.
app = typer.Typer()
err = Console(stderr=True)
#: Findings of each kind shown on the terminal (``--json`` lists up to ``--limit``).
SHOWN = 20


@contextmanager
def _progress(console: Console) -> Iterator[Callable[[int, str], None]]:
    """A progress callback drawing a bar on ``console`` (silent when it is not a terminal)."""
    if not console.is_terminal:
        yield lambda percent, message: None
        return
    with bar.Progress(bar.TextColumn("{task.description}"), bar.BarColumn(), bar.TaskProgressColumn(),
                      bar.TimeElapsedColumn(), console=console, transient=True) as shown:
        task = shown.add_task("scanning", total=100)
        yield lambda percent, message: shown.update(task, completed=percent, description=message)


def _show(r: dict, out: Console) -> None:
    clash, clear = r["collision"], r["clearance"]
    out.print(f"[bold]{clash['counts']['hard']:,}[/] hard clashes, [bold]{clash['counts']['duplicate']:,}[/] "
              f"duplicates, [bold]{clear['counts']['horizontal']:,}[/] horizontal and "
              f"[bold]{clear['counts']['vertical']:,}[/] vertical clearance violations; {r['segments']:,} "
              f"segments ({', '.join(r['include'])}), {r['candidate_pairs']:,} candidate pairs, "
              f"{r['timings_s']['total']:.1f} s")
    t = Table(title=f"clashes, worst first (first {SHOWN})")
    for c in ("kind", "a", "b", "utilities", "overlap m", "road"):
        t.add_column(c)
    for c in clash["clashes"][:SHOWN]:
        t.add_row(c["kind"], c["a_id"], c["b_id"], f"{c['a_utility']}/{c['b_utility']}", f"{c['overlap_m']:.3f}",
                  c["road"])
    out.print(t)
    t = Table(title=f"clearance violations, largest shortfall first (first {SHOWN})")
    for c in ("kind", "a", "b", "utilities", "measured m", "required m", "rule", "road"):
        t.add_column(c)
    for v in clear["violations"][:SHOWN]:
        t.add_row(v["kind"], v["a_id"], v["b_id"], f"{v['a_utility']}/{v['b_utility']}", f"{v['measured_m']:.3f}",
                  f"{v['required_m']:.3f}", v["rule_id"], v["road"])
    out.print(t)


@app.command("scan")
def scan(
    include: Annotated[list[str] | None, typer.Option(
        "--include", help="Pipe statuses scanned (repeatable; default: active and planned).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="Findings listed per analysis in --json "
                                                                "(counts are complete).")] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole result as JSON.")] = False,
) -> None:
    """Hard clashes, duplicates and clearance violations across the whole live network."""
    settings = get_settings()
    engine = open_twin(settings)
    try:
        with _progress(err) as progress:
            result = scan_network(engine, include=include or DEFAULT_INCLUDE, settings=settings, limit=limit,
                                  progress=progress)
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(plain(result), ensure_ascii=False, indent=2))
    else:
        _show(result, Console())
