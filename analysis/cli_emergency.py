"""``twin analyze shutoff`` and ``twin analyze hazards``: what a repair crew asks at a burst."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from twin.errors import InputError
from twin.settings import get_settings

__all__ = ["app", "shutoff_command", "hazards_command"]

#: The commands of this module; :mod:`analysis.cli` adds them to ``twin analyze``.
app = typer.Typer()


def _point(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(f"{text!r} is not a point: give EASTING,NORTHING in the twin CRS",
                         zh=f"{text!r} 不是一个点：请按孪生库坐标系给出 东坐标,北坐标（EASTING,NORTHING）") from None
    return x, y


def _emit(result: dict, as_json: bool, show) -> None:
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False, indent=2, default=str))
    else:
        show(result, Console())


@app.command("shutoff")
def shutoff_command(
    pipe: str | None = typer.Option(None, "--pipe", help="Id of the burst pipe."),
    at: str | None = typer.Option(None, "--at", help="EASTING,NORTHING of the burst: the nearest pipe."),
    node: str | None = typer.Option(None, "--node", help="Id of a burst node (fitting, chamber)."),
    failed_valves: str = typer.Option("", "--failed-valves", help="Valves that would not turn: V1,V2."),
    max_distance: float = typer.Option(25.0, "--max-distance", help="How far (m) --at may be from a pipe."),
    as_json: bool = typer.Option(False, "--json", help="Print the answer as JSON."),
    pdf: str | None = typer.Option(None, "--pdf", help="Also write the work order (关阀作业单) as PDF here."),
) -> None:
    """Valves to close for a burst, in order; what loses supply; the next ring past failed valves."""
    from analysis.shutoff import shutoff
    from twin.db import open_twin

    failed = [v.strip() for v in failed_valves.split(",") if v.strip()]
    if pdf is not None and not Path(pdf).resolve().parent.is_dir():
        raise InputError(f"--pdf {pdf}: no folder {Path(pdf).resolve().parent}",
                         zh=f"--pdf {pdf}：文件夹 {Path(pdf).resolve().parent} 不存在")
    settings = get_settings()
    engine = open_twin(settings)
    point = _point(at) if at else None
    result = shutoff(engine, pipe=pipe, node=node, at=point,
                     failed_valves=failed, max_distance_m=max_distance).as_dict()
    if pdf is not None:
        from documents.workorder import work_order_pdf  # pyvista and fpdf2 only when asked

        Path(pdf).write_bytes(work_order_pdf(engine, settings, result, by=settings.user_name, at=point))
        typer.echo(f"work order 关阀作业单: {pdf}", err=True)
    _emit(result, as_json, _show_shutoff)


def _show_shutoff(r: dict, out: Console) -> None:
    what = f"pipe {r['pipe']}" if r["pipe"] else f"node {r['node']}"
    out.print(f"[bold]Shutoff for {what}[/] ({r['utility']})")
    t = Table(title=f"close {len(r['valves'])} valve(s) in this order")
    for c in ("#", "valve", "on pipe", "at node", "from source (m)", "because"):
        t.add_column(c)
    for v in r["valves"]:
        d = v["distance_from_source_m"]
        t.add_row(str(v["order"]), v["id"], v["pipe"], v["node"], "-" if d is None else f"{d:,.1f}",
                  f"{v['added_for']} failed" if v["added_for"] else "")
    out.print(t)
    for f in r["failed_valves"]:
        out.print(f"[yellow]failed[/] {f['id']} on {f['pipe']}: {f['reason']}")
    out.print(f"isolated: {len(r['isolated_pipes'])} pipes, {r['length_m']:,.1f} m, "
              f"{r['volume_m3']:,.2f} m³ to drain")
    out.print(f"cut off from sources: {len(r['outage_pipes'])} more pipes, {r['outage_length_m']:,.1f} m")
    crit = r["critical_customers"]
    out.print(f"customers without supply: {len(r['customers'])} ({len(crit)} critical)")
    for c in crit:
        out.print(f"  [bold red]critical[/] {c['id']} {c.get('name') or ''}")
    for n in r["notes"]:
        out.print(f"[yellow]note[/] {n}")


@app.command("hazards")
def hazards_command(
    at: str = typer.Option(..., "--at", help="EASTING,NORTHING of the dig site."),
    radius: float = typer.Option(10.0, "--radius", help="Radius (m) of the dig site."),
    utility: str | None = typer.Option(None, "--utility", help="Utility of the burst (default: nearest pipe's)."),
    as_json: bool = typer.Option(False, "--json", help="Print the answer as JSON."),
) -> None:
    """What lies in a dig site: other pipes and cables, nearest valves, old or shallow pipes."""
    from analysis.hazards import hazards
    from twin.db import open_twin

    settings = get_settings()
    x, y = _point(at)
    result = hazards(open_twin(settings), x, y, radius, utility=utility, settings=settings).as_dict()
    _emit(result, as_json, _show_hazards)


def _show_hazards(r: dict, out: Console) -> None:
    out.print(f"[bold]Dig site[/] ({r['x']:.2f}, {r['y']:.2f}) radius {r['radius_m']:g} m; "
              f"burst utility {r['utility'] or '-'}")
    t = Table(title=f"{len(r['pipes'])} pipes and cables within the site")
    for c in ("utility", "id", "size", "material", "top depth (m)", "distance (m)", "notes"):
        t.add_column(c)
    for p in r["pipes"]:
        t.add_row(p["utility"], p["id"], p["size"] or "", p["material"] or "",
                  "-" if p["top_depth_m"] is None else f"{p['top_depth_m']:.2f}", f"{p['distance_m']:.2f}",
                  "; ".join(p["flags"]))
    out.print(t)
    for v in r["valves"]:
        out.print(f"valve {v['id']} on {v['pipe']} at {v['distance_m']:.1f} m"
                  + ("" if v["operable"] else " [red](inoperable)[/]"))
