"""``twin analyze scan``: the whole-network scan, as the server runs it; its stored findings.

``scan`` is a thin call of :func:`analysis.findings.scan_and_store` (the ``network-scan``
process of the API and the benchmark run the same function): progress on the terminal, then
the counts and the worst findings as tables, or the whole result with ``--json``; the findings
are stored with their status unless ``--no-store``. ``findings`` lists the stored findings
(filters as ``GET /findings``; ``--bcf OUT`` also writes them as BCF 3.0 topics, audited) and
``finding KEY --status S`` moves one (audited).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Annotated

import typer
from rich import progress as bar
from rich.console import Console
from rich.table import Table

from analysis.findings import (
    STATUS_LABELS,
    STATUSES,
    VERDICT_LABELS,
    VERDICTS,
    get_finding,
    list_findings,
    scan_and_store,
    set_status,
)
from analysis.scan import DEFAULT_INCLUDE
from documents.limits import MAX_TOPICS, SNAPSHOTS
from twin.audit import record_command
from twin.db import open_twin
from twin.jsonable import plain
from twin.progress import shown as in_both
from twin.settings import get_settings

__all__ = ["app", "scan", "findings", "finding"]

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
        yield lambda percent, message: shown.update(task, completed=percent, description=in_both(message))


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
    stored = r.get("findings")
    if stored:
        out.print(f"findings stored: {stored['found']:,} found, {stored['new']:,} new, {stored['active_again']:,} "
                  f"found again, {stored['resolved']:,} resolved; {stored['open']:,} open "
                  "(twin analyze findings)")


@app.command("scan")
def scan(
    include: Annotated[list[str] | None, typer.Option(
        "--include", help="Pipe statuses scanned (repeatable; default: active and planned).")] = None,
    limit: Annotated[int, typer.Option("--limit", min=0, help="Findings listed per analysis in --json "
                                                                "(counts are complete).")] = 1000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole result as JSON.")] = False,
    store: Annotated[bool, typer.Option("--store/--no-store", help="Store the findings with their status "
                                        "(default) or only report them.")] = True,
    dask: Annotated[bool | None, typer.Option("--dask/--no-dask", help="Scan by partitions on a Dask cluster: "
                                              "TWIN_DASK_SCHEDULER's, else a LocalCluster (default: when "
                                              "TWIN_DASK_SCHEDULER is set).")] = None,
    partition_m: Annotated[float | None, typer.Option("--partition-m", min=1.0, help="Width of the square "
                                                      "partitions (m; default: ~150,000 segments each, at "
                                                      "least 4 per worker); without a cluster they are "
                                                      "scanned on two processes here.")] = None,
) -> None:
    """Hard clashes, duplicates and clearance violations across the whole live network."""
    settings = get_settings()
    engine = open_twin(settings)
    try:
        with _progress(err) as progress:
            result = scan_and_store(engine, user=settings.user_name, store=store, include=include or DEFAULT_INCLUDE,
                                    settings=settings, limit=limit, progress=progress, cluster=dask,
                                    partition_m=partition_m)
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(plain(result), ensure_ascii=False, indent=2))
    else:
        _show(result, Console())


def _finding_table(doc: dict, out: Console) -> None:
    c = doc["counts"]
    out.print(f"[bold]{doc['numberMatched']:,}[/] findings: "
              + ", ".join(f"{k} {STATUS_LABELS[k]} {v:,}" for k, v in c["status"].items() if v) + "; "
              + ", ".join(f"{k} {VERDICT_LABELS[k]} {v:,}" for k, v in c["verdict"].items() if v))
    t = Table()
    for col in ("key", "status", "verdict", "kind", "a", "b", "utilities", "measured m", "required m", "road"):
        t.add_column(col)
    num = lambda v: "" if v is None else f"{v:.3f}"  # noqa: E731
    for f in doc["findings"]:
        t.add_row(f["key"], f"{f['status']} {f['status_label']}", f"{f['verdict']} {f['verdict_label']}", f["kind"],
                  f["a_id"], f["b_id"] or "", f["utility_pair"] or "", num(f["measured_m"]), num(f["required_m"]),
                  f["road"] or "")
    out.print(t)


def _write_bcf(engine, settings, out: Path, filters: dict) -> None:
    """The findings matching ``filters`` as a BCF file at ``out`` (audited: a copy out of the twin)."""
    with err.status("writing BCF") if err.is_terminal else nullcontext():
        from documents.bcf import network_findings_bcf  # noqa: PLC0415 - loads VTK: only for --bcf

        export = network_findings_bcf(engine, settings, author=settings.user_name, **filters)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(export.data)
    with engine.begin() as conn:
        record_command(conn, settings.user_name, "analyze findings", "findings-bcf",
                       params={**{k: v for k, v in filters.items() if v}, "out": str(out),
                               "topics": len(export.keys)}, affected=export.affected)
    err.print(f"BCF: {len(export.keys)} topics ({export.snapshots} with a snapshot) -> {out}")


@app.command("findings")
def findings(
    status: Annotated[list[str] | None, typer.Option("--status", help=f"Status (repeatable): {', '.join(STATUSES)}.")
                      ] = None,
    verdict: Annotated[list[str] | None, typer.Option("--verdict", help="Verdict (repeatable): "
                                                      f"{', '.join(VERDICTS)}.")] = None,
    road: Annotated[str | None, typer.Option("--road", help="Road name (findings on or across it).")] = None,
    utility_pair: Annotated[str | None, typer.Option("--utility-pair", help="Two utilities, e.g. JS-RQ "
                                                     "(either order), or one.")] = None,
    owner_pair: Annotated[str | None, typer.Option("--owner-pair", help="Two owners as 'A/B', or one.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=0, help="Findings listed (default 100; with "
                                              f"--bcf all that match, at most {MAX_TOPICS}).")] = None,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Findings skipped.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    bcf: Annotated[Path | None, typer.Option("--bcf", help="Also write them as BCF 3.0 topics (with 3D "
                                             "snapshots) to this file, for BIM tools.")] = None,
    snapshots: Annotated[int, typer.Option("--snapshots", min=0, help="With --bcf: topics (the first ones) "
                                           "with a rendered 3D snapshot, about a second each.")] = SNAPSHOTS,
) -> None:
    """The stored findings of the whole-network scan, open ones first."""
    settings = get_settings()
    engine = open_twin(settings)
    try:
        doc = list_findings(engine, status=status, verdict=verdict, road=road, utility_pair=utility_pair,
                            owner_pair=owner_pair, limit=100 if limit is None else limit, offset=offset)
        if bcf is not None:
            _write_bcf(engine, settings, bcf, dict(status=status, verdict=verdict, road=road,
                                                   utility_pair=utility_pair, owner_pair=owner_pair,
                                                   limit=limit, offset=offset, snapshots=snapshots))
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(plain(doc), ensure_ascii=False, indent=2))
    else:
        _finding_table(doc, Console())


@app.command("finding")
def finding(
    key: Annotated[str, typer.Argument(help="The finding's key (twin analyze findings).")],
    status: Annotated[str | None, typer.Option("--status", help="Move it to: active, reviewed or approved.")
                      ] = None,
    note: Annotated[str | None, typer.Option("--note", help="Why (needed to approve a violation or a pair "
                                             "no rule covers).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One stored finding and its history; with ``--status``, move it (audited)."""
    settings = get_settings()
    engine = open_twin(settings)

    def audit(conn, doc: dict) -> None:
        record_command(conn, settings.user_name, "analyze finding", "finding-status",
                       params={"finding": key, "status": status, "note": note}, affected=[f"finding:{key}"])

    try:
        doc = (set_status(engine, key, status, user=settings.user_name, note=note, before_commit=audit)
               if status else get_finding(engine, key))
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(plain(doc), ensure_ascii=False, indent=2))
        return
    out = Console()
    out.print(f"finding {doc['key']}: [bold]{doc['status']}[/] {doc['status_label']}, {doc['verdict']} "
              f"{doc['verdict_label']} ({doc['kind']} {doc['a_id']} / {doc['b_id']}, {doc['road']})")
    for h in doc["history"]:
        out.print(f"  {h['at']}  {h['user_name']}: {h['from_status'] or '-'} -> {h['to_status']}"
                  + (f"  {h['note']}" if h["note"] else ""))
