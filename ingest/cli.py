"""``twin ingest ...`` and ``twin sample``: added to the twin command through entry points.

An applied import is audited (action ``import``, as ``TWIN_USER`` or the login name, role
``cli``) inside the batch's own transaction, like the API's imports.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
import typer
from rich.console import Console
from rich.table import Table

from ingest.report import CHECK_TITLES_ZH, CHECKS, SEVERITY_ZH, Report, check_title
from twin.audit import record_command
from twin.progress import shown
from twin.settings import get_settings

__all__ = ["app", "sample", "spinner", "finish", "print_report", "audited"]

app = typer.Typer(help="Import survey data into the twin.", no_args_is_help=True)
err = Console(stderr=True)


@contextmanager
def spinner(enabled: bool) -> Iterator[Callable[[str], None] | None]:
    """A spinner naming the current stage, on a terminal only: the ingest's ``progress``."""
    if not enabled or not err.is_terminal:
        yield None
        return
    with err.status("starting") as status:
        yield lambda msg: status.update(shown(msg))


def finish(report: Report, as_json: bool, **extra: object) -> None:
    """Print a batch's report (JSON, with ``extra`` keys, or tables); exit 1 when rejected."""
    if as_json:
        typer.echo(json.dumps({**report.as_dict(), **extra}, ensure_ascii=False, indent=2, default=str))
    else:
        print_report(report)
    if report.status == "rejected":
        raise typer.Exit(code=1)


def audited(
    command: str, action: str, params: dict, affected: Callable[[Report], list[str]] | None = None
) -> Callable[[sa.Connection, Report], None]:
    """A ``before_commit`` hook writing the batch's audit entry inside the batch's transaction.

    The entry holds ``params``, the files' names, the outcome and counts; ``affected`` defaults
    to the batch id.
    """
    user = get_settings().user_name

    def hook(conn: sa.Connection, report: Report) -> None:
        outcome = {"files": [f.get("name") for f in report.files], **report.outcome()}
        record_command(conn, user, command, action, params={**params, **outcome},
                       affected=affected(report) if affected else [str(report.batch_id)])

    return hook


def print_report(report: Report) -> None:
    out = Console()
    colour = {"applied": "green", "rejected": "red"}.get(report.status, "yellow")
    status_zh = {"applied": "已导入", "rejected": "已拒绝", "checked": "已检查"}.get(report.status, "")
    out.print(f"[bold {colour}]{status_zh} {report.status}[/]"
              + (f"  批次 batch {report.batch_id}" if report.batch_id else ""))
    changes = report.counts.get("changes")
    if changes:
        t = Table(title="changes")
        for c in ("table", "added", "changed", "retired"):
            t.add_column(c, justify="left" if c == "table" else "right")
        for name, ch in changes.items():
            t.add_row(name, f"{ch['added']:,}", f"{ch['changed']:,}", f"{ch['retired']:,}")
        out.print(t)
    if report.issue_counts:
        t = Table(title=f"数据检查 data checks: {report.error_count} 个错误 errors, "
                        f"{report.warning_count} 个警告 warnings")
        for c in ("代码 code", "检查项 check", "级别 severity", "数量 count", "首例 first"):
            t.add_column(c)
        for code, n in sorted(report.issue_counts.items()):
            first = next((i for i in report.issues if i.code == code), None)
            where = f"{first.file}:{first.row} {first.message_zh or first.message}" if first else ""
            severity = CHECKS[code][0]
            t.add_row(code, check_title(code), f"{SEVERITY_ZH[severity]} {severity}", f"{n:,}", where)
        out.print(t)
    for issue in report.errors[:20]:
        out.print(f"[red]{issue.code} {CHECK_TITLES_ZH[issue.code]}[/] {issue.file or ''}"
                  f"{':' + str(issue.row) if issue.row else ''} "
                  f"{' '.join(issue.ids)}: {issue.message_zh or issue.message}")


@app.command("survey")
def survey(
    points: Path = typer.Option(..., "--points", "-p", help="Point table (管线点成果表), CSV or XLSX."),
    segments: Path = typer.Option(..., "--segments", "-s", help="Segment table (管线段成果表), CSV or XLSX."),
    axis_order: str = typer.Option("ne", "--axis-order", help="ne: X is northing (Chinese survey); en: X is easting."),
    encoding: str = typer.Option("auto", "--encoding", help="auto, utf-8 or gbk."),
    columns: Path | None = typer.Option(None, "--columns", help="Header mapping file (JSON or CSV header,column)."),
    scope: str = typer.Option("survey", "--scope", help="Survey area: a re-import retires what it no longer has."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check only; write nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Import the CJJ 61 two-table survey format, all or nothing."""
    from ingest.pipeline import ingest_survey
    from ingest.tables import load_column_mapping

    params = {"scope": scope, "axis_order": axis_order, "encoding": encoding,
              "columns": str(columns) if columns else None}
    with spinner(not as_json) as step:
        report = ingest_survey(points, segments, get_settings(), axis_order=axis_order, encoding=encoding,
                               mapping=load_column_mapping(columns), scope=scope, dry_run=dry_run,
                               progress=step, before_commit=audited("ingest survey", "import", params))
    finish(report, as_json)


@app.command("epanet")
def epanet(
    network: Path = typer.Argument(..., help="EPANET .inp file."),
    valves: Path | None = typer.Option(None, "--valves", help="CSV with columns pipe,node (WNTR valve layer)."),
    crs: str | None = typer.Option(None, "--crs", help="CRS of the .inp coordinates (default: the twin's)."),
    offset: str | None = typer.Option(None, "--offset", help="E,N added to the coordinates (default: "
                                      "centre small local coordinates on the sample district)."),
    cover: float | None = typer.Option(None, "--cover", help="Cover depth (m) above the pipes."),
    scope: str | None = typer.Option(None, "--scope", help="Scope of the batch (default: epanet:<file stem>)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Import a water network in EPANET format, with its isolation valves."""
    from ingest.epanet import read_epanet
    from ingest.pipeline import ingest_tables, rejected_report
    from twin.errors import InputError

    settings = get_settings()
    with spinner(not as_json) as step:
        try:
            off = tuple(float(v) for v in offset.split(",")) if offset else None
            if off is not None and len(off) != 2:
                raise InputError("--offset takes two numbers: EASTING,NORTHING",
                                 zh="--offset 须为两个数：东坐标,北坐标")
            tables = read_epanet(network, valves=valves, source_crs=crs, twin_crs=settings.crs,
                                 offset=off if off is not None else "auto",
                                 cover_m=cover if cover is not None else settings.default_cover_m)
        except ValueError:
            finish(rejected_report(InputError("--offset takes two numbers: EASTING,NORTHING",
                                                  zh="--offset 须为两个数：东坐标,北坐标")), as_json)
            return
        except InputError as exc:  # unreadable files: a rejected report, not an error
            finish(rejected_report(exc), as_json)
            return
        scope = scope or f"epanet:{network.stem}"
        params = {"scope": scope, "crs": crs, "offset": offset, "cover": cover}
        report = ingest_tables(tables, settings, scope=scope, check_long=False, progress=step,
                               before_commit=audited("ingest epanet", "import", params))
    finish(report, as_json)


@app.command("gis")
def gis(
    source: Path = typer.Argument(..., help="GeoPackage, Shapefile (or a folder/.zip of them), FileGDB, "
                                  "GeoJSON, DXF or CSV with WKT."),
    points: str | None = typer.Option(None, "--points", help="Point layer(s) (管点), comma-separated; "
                                      "'' or none: nodes by snapping the line ends."),
    segments: str | None = typer.Option(None, "--segments", help="Line layer(s) (管线), comma-separated."),
    columns: str | None = typer.Option(None, "--columns", help="FIELD=survey column,... (GJ=管径,QDH=起点号), "
                                       "a JSON object, or a mapping file (JSON or CSV)."),
    crs: str | None = typer.Option(None, "--crs", help="CRS of the data (default: the dataset's, else the twin's)."),
    snap: float = typer.Option(0.05, "--snap", help="Tolerance (m) within which line ends meet."),
    scope: str | None = typer.Option(None, "--scope", help="Scope of the batch (default: gis:<name>)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check only; write nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Import pipes from a GIS or CAD dataset (管点/管线 layers), all or nothing."""
    from ingest.gis import ingest_gis

    params = {"source": source.name, "points": points, "segments": segments, "columns": columns,
              "crs": crs, "snap": snap, "scope": scope or f"gis:{source.stem}"}
    with spinner(not as_json) as step:
        report = ingest_gis(get_settings(), source, points=points, segments=segments, columns=columns,
                            crs=crs, scope=scope, snap_m=snap, dry_run=dry_run, progress=step,
                            before_commit=audited("ingest gis", "import", params))
    read = report.counts.get("gis")
    if read and not as_json:
        built = (f"; {read['nodes_built']:,} nodes built by snapping {read['ends_snapped']:,} line ends "
                 f"(largest move {read['max_snap_m']:.3f} m, tolerance {read['snap_m']:g} m)"
                 if "nodes_built" in read else "")
        Console().print(f"read {read['points_read']:,} points and {read['lines_read']:,} lines{built}")
    finish(report, as_json)


def sample(
    out: Path = typer.Option(..., "--out", help="Folder for points.csv and segments.csv."),
    scale: float = typer.Option(1.0, "--scale", help="1: the demo district; 25+: a million segments."),
    seed: int = typer.Option(0, "--seed", help="Random seed (same seed, same files)."),
    encoding: str = typer.Option("utf-8-sig", "--encoding", help="utf-8-sig, utf-8 or gbk."),
    fmt: str = typer.Option("csv", "--format", help="csv or xlsx."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    defects: bool = typer.Option(False, "--defects", help="Plant the four documented defects (README: "
                                 "sample district)."),
) -> None:
    """Write CJJ 61 survey tables of a realistic sample district in Liaocheng."""
    from ingest.sample import generate_district

    summary = generate_district(out, scale=scale, seed=seed, encoding=encoding, fmt=fmt,
                                progress=not as_json and err.is_terminal, defects=defects)
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False, indent=2, default=str))
    else:
        out = Console()
        out.print(f"sample district (scale {summary['scale']:g}, seed {summary['seed']}): "
                  f"{summary['roads']} roads, {summary['road_km']:.1f} km of road, "
                  f"{summary['points_total']:,} points, {summary['segments_total']:,} segments, "
                  f"{summary['valves']:,} valves, {summary['customers']:,} service connections")
        for d in summary["defects"]:
            out.print(f"defect {d['name']}: {d['what']} -> {d['finding']} "
                      f"({', '.join('-'.join(s) for s in d['segments'])})")
        out.print(f"written: {summary['files']['points']}, {summary['files']['segments']}")
