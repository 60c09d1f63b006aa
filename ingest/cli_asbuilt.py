"""``twin asbuilt ...``: as-built batches (竣工测量) submitted, reviewed and committed from a shell.

The same workflow as the API's ``/asbuilt`` routes (:mod:`ingest.asbuilt`), acting as
``TWIN_USER`` or, when unset, the login name: the submitter cannot review their own batch.
Each step is audited inside its own transaction (``asbuilt-submit``, ``asbuilt-review``,
``asbuilt-commit``; role ``cli``). Added to the twin command through the ``twin.commands``
entry points.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import sqlalchemy as sa
import typer
from rich.console import Console
from rich.table import Table

from ingest import asbuilt
from ingest.cli import audited, finish, print_report, spinner
from ingest.pipeline import ImportOptions
from ingest.report import Report
from ingest.tables import load_column_mapping
from twin.audit import record_command
from twin.db import open_twin
from twin.settings import TwinSettings, get_settings

__all__ = ["app"]

app = typer.Typer(
    help="As-built batches (竣工): submit, review by another person, commit to the twin.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
IdArg = Annotated[int, typer.Argument(help="The as-built batch.", min=1)]


def _acting() -> tuple[TwinSettings, str, sa.Engine]:
    """The settings, the user acting (TWIN_USER, else the login name) and the twin's engine."""
    settings = get_settings()
    return settings, settings.user_name, open_twin(settings)


def _echo(doc: object) -> None:
    typer.echo(json.dumps(doc, ensure_ascii=False, indent=2, default=str))


def _line(doc: dict) -> str:
    return f"as-built batch {doc['id']} {doc['name']!r}: [bold]{doc['status']}[/]"


@app.command("submit")
def submit(
    points: Annotated[Path, typer.Option("--points", "-p", help="Point table (管线点成果表), CSV or XLSX.")],
    segments: Annotated[Path, typer.Option("--segments", "-s", help="Segment table (管线段成果表), CSV or XLSX.")],
    name: Annotated[str | None, typer.Option("--name", help="Project or contract name (default: the folder "
                                             "holding the point table).")] = None,
    scope: Annotated[str | None, typer.Option("--scope", help="Scope of the batch (default: asbuilt:<id>).")] = None,
    axis_order: Annotated[str, typer.Option("--axis-order", help="ne: X is northing (Chinese survey); "
                                            "en: X is easting.")] = "ne",
    encoding: Annotated[str, typer.Option("--encoding", help="auto, utf-8 or gbk.")] = "auto",
    columns: Annotated[Path | None, typer.Option("--columns", help="Header mapping file (JSON or CSV "
                                                 "header,column).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the two tables and store them for review; exit 1 when the checks reject them."""
    settings, user, engine = _acting()
    options = ImportOptions(axis_order, scope or "", encoding, load_column_mapping(columns))

    def record(conn: sa.Connection, sub: asbuilt.Submission) -> None:
        audit = audited("asbuilt submit", "asbuilt-submit", {**sub.options.params(), "name": sub.name,
                                                             "outcome": sub.status},
                        affected=lambda _report: [f"asbuilt:{sub.id}"])
        audit(conn, sub.report)

    with spinner(not as_json) as step:
        sub = asbuilt.submit(engine, settings, points, segments, user=user, options=options,
                             name=name if name is not None else points.resolve().parent.name,
                             progress=step, before_commit=record)
    with engine.connect() as conn:
        doc = asbuilt.get(conn, sub.id)
    if as_json:
        _echo(doc)
    else:
        out = Console()
        out.print(_line(doc) + f" by {user} (scope {sub.options.scope})")
        print_report(sub.report)
    if sub.status == "rejected":
        raise typer.Exit(code=1)


@app.command("review")
def review(
    asbuilt_id: IdArg,
    accept: Annotated[bool, typer.Option("--accept/--reject", help="Accept it, or reject it (with --note).")],
    note: Annotated[str | None, typer.Option("--note", help="Why; required when rejecting.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Accept or reject a submitted batch; the submitter may not review their own."""
    _, user, engine = _acting()
    with engine.begin() as conn:
        doc = asbuilt.review(conn, asbuilt_id, user=user, accept=accept, note=note)
        record_command(conn, user, "asbuilt review", "asbuilt-review",
                       params={"decision": "accept" if accept else "reject", "note": doc["review_note"]},
                       affected=[f"asbuilt:{asbuilt_id}"])
    if as_json:
        _echo(doc)
        return
    Console().print(_line(doc) + f" by {user}" + (f": {doc['review_note']}" if doc["review_note"] else ""))


@app.command("commit")
def commit(asbuilt_id: IdArg, as_json: JsonOpt = False) -> None:
    """Import a reviewed batch into the twin, all or nothing; exit 1 when the checks reject it."""
    settings, user, engine = _acting()
    with engine.begin() as conn:
        batch = asbuilt.reviewed(conn, asbuilt_id)
    audit = audited("asbuilt commit", "asbuilt-commit", {**batch.options.params(), "name": batch.name},
                    affected=lambda report: [f"asbuilt:{asbuilt_id}", str(report.batch_id)])
    with spinner(not as_json) as step:
        report: Report = asbuilt.commit(settings, batch, user=user, progress=step, before_commit=audit)
    with engine.connect() as conn:
        status = asbuilt.current_status(conn, asbuilt_id)
    if not as_json:
        Console().print(f"as-built batch {asbuilt_id} {batch.name!r}: [bold]{status}[/]")
    finish(report, as_json, asbuilt={"id": asbuilt_id, "status": status})


@app.command("list")
def list_command(
    status: Annotated[str | None, typer.Option("--status", help="Only batches in this state: "
                                               + ", ".join(asbuilt.STATES) + ".")] = None,
    limit: Annotated[int, typer.Option("--limit", help="How many, newest first.", min=1)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """List the as-built batches, newest first."""
    _, _, engine = _acting()
    with engine.connect() as conn:
        docs = asbuilt.list_batches(conn, status=status, limit=limit)
    if as_json:
        _echo(docs)
        return
    table = Table(title="As-built batches")
    for col in ("id", "name", "status", "errors", "submitted by", "reviewed by", "committed by", "batch"):
        table.add_column(col, justify="right" if col in ("id", "errors", "batch") else "left")
    for d in docs:
        table.add_row(
            str(d["id"]), d["name"], d["status"], str(d["check"]["error_count"] or 0),
            d["submitted_by"], d["reviewed_by"] or "",
            d["committed_by"] or "", str(d["batch_id"] or ""),
        )
    Console().print(table)
