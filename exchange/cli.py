"""``twin export ...``: added to the twin command through entry points.

A thin call of :func:`exchange.export.export_network`; the export is audited (action
``export``, as ``TWIN_USER`` or the login name, role ``cli``): the network is confidential and
every copy of it out of the twin is attributable.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from exchange.export import FORMATS, ExportReport, export_network
from ingest.cli import spinner
from twin.audit import record_command
from twin.db import open_twin
from twin.settings import get_settings

__all__ = ["export"]


def export(
    out: Path = typer.Argument(..., help="the file (gpkg, dxf, inp) or folder (shp, geojson, cjj61)"),
    fmt: str = typer.Option(..., "--format", "-f", help=f"one of {', '.join(FORMATS)}"),
    utility: str | None = typer.Option(None, "--utility", help="one utility (JS) or subtype (YS)"),
    bbox: str | None = typer.Option(None, "--bbox", help="E1,N1,E2,N2 in the twin's CRS"),
    at: str | None = typer.Option(None, "--at", help="the network as it was then (ISO 8601)"),
    xlsx: bool = typer.Option(False, "--xlsx", help="cjj61: XLSX workbooks instead of CSV"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """导出 Export the network: GeoPackage, Shapefile, GeoJSON, DXF, CJJ 61 tables or EPANET."""
    settings = get_settings()
    engine = open_twin(settings)
    try:
        with spinner(not as_json) as say:
            report = export_network(engine, out, fmt.lower(), utility=utility, bbox=bbox, at=at,
                                    xlsx=xlsx, progress=(lambda _p, m: say(m)) if say else None)
        with engine.begin() as conn:
            record_command(conn, settings.user_name, "export", "export",
                           params={"format": report.format, "out": report.out, **report.selection,
                                   "counts": report.counts})
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2, default=str))
    else:
        _print(report)


def _print(report: ExportReport) -> None:
    out = Console()
    out.print(f"[bold green]exported[/] {report.format} -> {report.out} in {report.seconds:.1f} s")
    t = Table(title="layers")
    t.add_column("layer")
    t.add_column("features", justify="right")
    for name, n in report.counts.items():
        t.add_row(name, f"{n:,}")
    out.print(t)
    for path in report.files:
        out.print(f"  {path}")
