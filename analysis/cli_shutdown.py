"""``twin shutdown ...``: planned shutdowns (关阀方案) as records, added through entry points.

``plan`` stores a shutdown of a pipe (or the pipe nearest a point) for a time window; ``list``
and ``show`` read them; ``notify``, ``execute``, ``restore`` and ``cancel`` move them
(:mod:`analysis.shutdown`); ``valve`` is the crew's mark (closed or failed: a failed valve
recomputes the ring); ``customers`` writes the notification list as CSV; ``exercise`` records
a valve's exercise. Every change is audited as the operator (``TWIN_USER``, else the login name).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import sqlalchemy as sa
import typer
from rich.console import Console
from rich.table import Table

from analysis.shutdown import (
    customers_csv,
    get_shutdown,
    list_shutdowns,
    mark_valve,
    move_shutdown,
    plan_shutdown,
)
from analysis.shutdown_valves import EXERCISE_RESULTS, exercise_history, record_exercise
from twin.audit import record_command
from twin.db import open_twin
from twin.errors import InputError
from twin.settings import get_settings

__all__ = ["app"]

app = typer.Typer(help="Planned shutdowns (关阀方案): plan, notify, execute, restore.", no_args_is_help=True)

JSON_HELP = "Print the record as JSON."
CsvOut = Annotated[Path, typer.Option("--csv", help="CSV file to write (UTF-8 with BOM).")]


def _audited(command: str, action: str, params: dict) -> Callable[[sa.Connection, int], None]:
    """A ``before_commit`` hook writing the command's audit entry with the write."""
    def write(conn: sa.Connection, shutdown_id: int) -> None:
        record_command(conn, get_settings().user_name, command, action, params=params,
                       affected=[f"shutdown:{shutdown_id}"])
    return write


def _point(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"{text!r} is not a point: give EASTING,NORTHING in the twin CRS",
                         zh=f"{text!r} 不是一个点：请按孪生库坐标系给出 东坐标,北坐标（EASTING,NORTHING）") from None
    return x, y


def _emit(record: dict, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(record, ensure_ascii=False, indent=2, default=str))
    else:
        _show(record, Console())


def _show(r: dict, out: Console) -> None:
    out.print(f"[bold]shutdown {r['id']}[/] {r['status_zh']} {r['status']}: pipe {r['pipe']} ({r['utility']}) "
              f"{r['planned_start']} .. {r['planned_end']}" + (f"  {r['reason']}" if r["reason"] else ""))
    t = Table(title="valves to close 关阀")
    for c in ("#", "valve", "on pipe", "state", "likely to fail", "because"):
        t.add_column(c)
    for v in r["valves"]:
        t.add_row(str(v["order"]), v["id"], v.get("pipe") or "", v["state"] + ("" if v["needed"] else " (not needed)"),
                  v.get("likely_reason") or "", f"{v['added_for']} failed" if v.get("added_for") else "")
    out.print(t)
    out.print(f"isolated {len(r.get('isolated_pipes', []))} pipes, cut off {len(r.get('outage_pipes', []))} more; "
              f"customers {r['customer_count']} ({r['critical_count']} critical); hydrants {r['hydrant_count']}")
    for c in r.get("critical_customers", []):
        out.print(f"  [bold red]critical 重要用户[/] {c['id']} {c.get('name') or ''}")
    for h in r.get("hydrants", []):
        out.print(f"  [yellow]hydrant out of service 消火栓停用[/] {h['id']}")
    for c in r.get("conflicts", []):
        out.print(f"[red]conflict[/] with shutdown {c['shutdown']} ({', '.join(c['kinds'])}): "
                  f"{len(c['extra_customers'])} extra customers, {len(c['extra_pipes'])} extra pipes")


@app.command("plan")
def plan_command(
    pipe: str | None = typer.Option(None, "--pipe", help="Id of the pipe to isolate."),
    at: str | None = typer.Option(None, "--at", help="EASTING,NORTHING: the nearest pipe."),
    start: str = typer.Option(..., "--start", help="Forecast start, ISO 8601 (local time when no zone)."),
    end: str = typer.Option(..., "--end", help="Forecast end, ISO 8601."),
    reason: str | None = typer.Option(None, "--reason", help="Why (maintenance, new connection, ...)."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Plan a shutdown: the valves to close, what loses supply, the customers, conflicts."""
    settings = get_settings()
    params = {"pipe": pipe, "at": at, "start": start, "end": end, "reason": reason}
    record = plan_shutdown(open_twin(settings), settings, pipe=pipe, at=_point(at) if at else None, start=start,
                           end=end, reason=reason, by=settings.user_name,
                           before_commit=_audited("shutdown plan", "shutdown-plan", params))
    _emit(record, as_json)


@app.command("list")
def list_command(
    status: str | None = typer.Option(None, "--status", help="Only shutdowns in this status."),
    as_json: bool = typer.Option(False, "--json", help="Print the list as JSON."),
) -> None:
    """Every shutdown, soonest first."""
    rows = list_shutdowns(open_twin(get_settings()), status=status)
    if as_json:
        typer.echo(json.dumps({"shutdowns": rows}, ensure_ascii=False, indent=2, default=str))
        return
    t = Table(title=f"{len(rows)} shutdowns 关阀方案")
    for c in ("id", "status", "pipe", "start", "end", "customers", "critical", "hydrants"):
        t.add_column(c)
    for r in rows:
        t.add_row(str(r["id"]), f"{r['status_zh']} {r['status']}", r["pipe"] or "", str(r["planned_start"]),
                  str(r["planned_end"]), str(r["customer_count"]), str(r["critical_count"]), str(r["hydrant_count"]))
    Console().print(t)


@app.command("show")
def show_command(shutdown_id: int = typer.Argument(..., help="Shutdown id."),
                 as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """One shutdown: valves and their states, outage, customers, hydrants, conflicts, events."""
    _emit(get_shutdown(open_twin(get_settings()), shutdown_id), as_json)


def _mover(move: str, doc: str) -> None:
    def command(shutdown_id: int = typer.Argument(..., help="Shutdown id."),
                note: str | None = typer.Option(None, "--note", help="Why, or what was done."),
                as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
        settings = get_settings()
        record = move_shutdown(open_twin(settings), shutdown_id, move, by=settings.user_name, note=note,
                               before_commit=_audited(f"shutdown {move}", f"shutdown-{move}", {"note": note}))
        _emit(record, as_json)

    command.__doc__ = doc
    app.command(move)(command)


_mover("notify", "The customers have been told: planned -> notified (已通知).")
_mover("execute", "The crew starts closing valves: notified -> executing (执行中); the actual start.")
_mover("restore", "Supply is back: executing -> restored (已恢复); the actual end.")
_mover("cancel", "Cancel a shutdown planned, notified or executing (已取消).")


@app.command("valve")
def valve_command(
    shutdown_id: int = typer.Argument(..., help="Shutdown id."),
    valve: str = typer.Argument(..., help="Valve id."),
    closed: bool = typer.Option(False, "--closed", help="The valve is closed."),
    failed: bool = typer.Option(False, "--failed", help="The valve would not close: the ring is recomputed."),
    note: str | None = typer.Option(None, "--note", help="What the crew saw."),
    as_json: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """A crew marks a valve of an executing shutdown closed or failed."""
    if closed == failed:
        raise InputError("give exactly one of --closed or --failed",
                         zh="--closed 与 --failed 须且只能给一个")
    state = "closed" if closed else "failed"
    settings = get_settings()
    record = mark_valve(open_twin(settings), settings, shutdown_id, valve, state, by=settings.user_name, note=note,
                        before_commit=_audited("shutdown valve", "shutdown-valve",
                                               {"valve": valve, "state": state, "note": note}))
    _emit(record, as_json)


@app.command("customers")
def customers_command(shutdown_id: Annotated[int, typer.Argument(help="Shutdown id.")],
                      csv_out: CsvOut) -> None:
    """The customers to notify, critical first, as CSV."""
    text = customers_csv(open_twin(get_settings()), shutdown_id)
    csv_out.write_text(text, encoding="utf-8-sig", newline="")
    Console(stderr=True).print(f"{text.count(chr(10)) - 1} customers written to {csv_out}")


@app.command("exercise")
def exercise_command(
    valve: str = typer.Argument(..., help="Valve id."),
    result: str = typer.Option(..., "--result", help=f"How it went: {', '.join(EXERCISE_RESULTS)}."),
    at: str | None = typer.Option(None, "--at", help="When, ISO 8601 (now when unset)."),
    note: str | None = typer.Option(None, "--note", help="Remarks."),
    as_json: bool = typer.Option(False, "--json", help="Print the valve's history as JSON."),
) -> None:
    """Record a valve exercise (operated, with its result); prints the valve's history."""
    settings = get_settings()
    engine = open_twin(settings)

    def audit(conn: sa.Connection) -> None:
        record_command(conn, settings.user_name, "shutdown exercise", "valve-exercise",
                       params={"valve": valve, "result": result, "at": at, "note": note}, affected=[valve])

    record_exercise(engine, valve, result, by=settings.user_name, at=at, note=note, before_commit=audit)
    history = exercise_history(engine, valve)
    if as_json:
        typer.echo(json.dumps({"valve": valve, "exercises": history}, ensure_ascii=False, indent=2, default=str))
        return
    for e in history[:10]:
        Console().print(f"{e['at']}  {e['result']}  {e['by']}  {e['note'] or ''}")
