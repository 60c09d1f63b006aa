"""Commands of ``twin analyze``: section, profile and the proposal workflow (see analysis.cli).

``section`` and ``profile`` print a summary table (or ``--json``) and write an SVG drawing with
``--svg`` (and the same drawing for CAD with ``--dxf``). ``proposal FILE`` stores and checks a
proposal (``--id`` re-checks a stored one,
with FILE as its revised geometry; ``--no-store`` only checks) and writes the printable report
with ``--html``, the approval package (PDF) with ``--pdf`` and its findings as BCF 3.0 topics
with ``--bcf``; it exits 1 when the proposal fails. ``proposal-show``, ``proposal-list`` and
``proposal-decide`` read and decide stored proposals, ``proposal-withdraw`` takes one back;
decisions record ``TWIN_USER`` or the login name. Bad input prints the error and exits 2.
Every stored change is audited inside its own transaction (the workflow's ``before_commit``
hook), with the actions of the API's routes and the role ``cli``.

_documents_on_demand: the documents layer (VTK, matplotlib, fpdf2: seconds to load) is imported
by the command that writes a document, when asked, so that every other ``twin`` command starts
at once (the STYLE rule against imports in functions is about dodging cycles; this is not one).
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

from analysis.proposal_workflow import changes_summary
from twin.audit import record_command
from twin.settings import TwinSettings

__all__ = ["app", "section", "profile", "proposal", "proposal_show", "proposal_list", "proposal_decide",
           "proposal_withdraw"]

#: The commands of this module; :mod:`analysis.cli` adds them to ``twin analyze``.
app = typer.Typer()
err = Console(stderr=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]


def _engine():
    from twin.db import open_twin
    from twin.settings import get_settings

    settings = get_settings()
    return settings, open_twin(settings)


def _audited(settings: TwinSettings, command: str, action: str, proposal_id: int | None = None,
             **params: object) -> Callable[..., None]:
    """A workflow ``before_commit`` hook writing the command's audit entry on its connection."""

    def hook(conn: sa.Connection, report=None) -> None:
        pid = proposal_id if proposal_id is not None else report.proposal_id
        record_command(conn, settings.user_name, f"analyze {command}", action,
                       params={"proposal_id": pid, **{k: v for k, v in params.items() if v is not None}},
                       affected=[f"proposal:{pid}"])

    return hook


def _echo_json(d: dict | list) -> None:
    typer.echo(json.dumps(d, ensure_ascii=False, indent=2, default=str))


def _write(path: Path | None, content: str, what: str) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        err.print(f"{what} written to {path}")


def _write_dxf(path: Path | None, drawing: Callable[[object], bytes], result: object) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(drawing(result))
        err.print(f"DXF drawing written to {path}")


@app.command("section")
def section(
    line: Annotated[str, typer.Option("--line", help="Plan line X1,Y1,X2,Y2[,...]: easting,northing in the twin CRS.")],
    svg_out: Annotated[Path | None, typer.Option("--svg", help="Write the drawing (true scale) here.")] = None,
    dxf_out: Annotated[Path | None, typer.Option("--dxf", help="Write the drawing for CAD (DXF, metres, true "
                                                 "scale) here.")] = None,
    utility: Annotated[list[str] | None, typer.Option("--utility", help="Only these utilities (repeatable).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Cross-section (横断面): every pipe the line crosses, with elevations and clear distances."""
    from analysis.section import cross_section

    settings, engine = _engine()
    sec = cross_section(engine, line, utilities=utility or None, crs=settings.crs)
    engine.dispose()
    _write(svg_out, sec.to_svg(), "drawing")
    from documents.drawing_dxf import section_dxf  # noqa: PLC0415 - see _documents_on_demand

    _write_dxf(dxf_out, section_dxf, sec)
    if as_json:
        _echo_json(sec.as_dict())
        return
    t = Table(title=f"cross-section, {sec.length_m:.2f} m, {len(sec.pipes)} pipes")
    for c in ("offset m", "id", "utility", "size", "angle°", "top", "bottom", "cover", "clear left", "clear right"):
        t.add_column(c, justify="left" if c in ("id", "utility", "size") else "right")
    f = lambda v: "" if v is None else f"{v:.2f}"  # noqa: E731
    for p in sec.pipes:
        t.add_row(f"{p.offset_m:.2f}", p.id, p.subtype or p.utility, p.size_text, f"{p.angle_deg:.0f}",
                  f"{p.top_z:.2f}", f"{p.bottom_z:.2f}", f(p.cover_m), f(p.clear_left_m), f(p.clear_right_m))
    Console().print(t)
    if sec.along:
        Console().print(f"running along the line (no cut): {', '.join(sec.along)}")


@app.command("profile")
def profile(
    from_node: Annotated[str, typer.Option("--from", help="Survey point id where the profile starts.")],
    to_node: Annotated[str, typer.Option("--to", help="Survey point id where it ends (same utility).")],
    svg_out: Annotated[Path | None, typer.Option("--svg", help="Write the drawing here.")] = None,
    dxf_out: Annotated[Path | None, typer.Option("--dxf", help="Write the drawing for CAD (DXF, metres; "
                                                 "the SVG's vertical exaggeration, stated) here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Longitudinal profile (纵断面) along one utility between two points (shortest path)."""
    from analysis.profile import longitudinal_profile

    settings, engine = _engine()
    prof = longitudinal_profile(engine, from_node, to_node, crs=settings.crs)
    engine.dispose()
    _write(svg_out, prof.to_svg(), "drawing")
    from documents.drawing_dxf import profile_dxf  # noqa: PLC0415 - see _documents_on_demand

    _write_dxf(dxf_out, profile_dxf, prof)
    if as_json:
        _echo_json(prof.as_dict())
        return
    out = Console()
    t = Table(title=f"profile {prof.utility} {from_node} → {to_node}, {prof.length_m:.2f} m")
    for c in ("pipe", "from", "to", "chainage", "length", "size", "slope ‰", "direction"):
        t.add_column(c, justify="right" if c in ("chainage", "length", "slope ‰") else "left")
    for s in prof.segments:
        t.add_row(s.id, s.from_node, s.to_node, f"{s.chainage_start_m:.2f}", f"{s.length_m:.2f}", s.size_text,
                  f"{s.slope_permille:+.2f}", s.direction + (" (reverse grade!)" if s.reverse_grade else ""))
    out.print(t)
    if prof.crossings:
        c = Table(title="pipes crossing the path")
        for col in ("chainage", "id", "utility", "size", "position", "clear m"):
            c.add_column(col)
        for x in prof.crossings:
            c.add_row(f"{x.chainage_m:.2f}", x.id, x.subtype or x.utility, x.size_text, x.position,
                      f"{x.vertical_clear_m:.2f}")
        out.print(c)


def _print_report(d: dict) -> None:
    out = Console()
    colour = "green" if d["passed"] else "red"
    pid = d.get("proposal_id")
    out.print(f"[bold {colour}]{d['result'].upper()}[/]  {d['name']}"
              + (f"  (proposal {pid}, {d['status']}, version {d['version']})" if pid is not None else "")
              + f"  {d['utility']} {d['size']} {d['length_m']:.1f} m; {d['candidates']} existing pipes near")
    stamp = d.get("stamp") or {}
    if stamp:
        out.print(f"checked against 管网版本 network {stamp.get('network_mark')}, "
                  f"规则表版本 rules {stamp.get('rules_version')}")
    if d.get("changes"):
        out.print(changes_summary(d["changes"]))
    if d["findings"]:
        t = Table(title=f"{len(d['findings'])} findings, {d['open_findings']} not accepted")
        for c in ("kind", "summary", "shortfall m", "status", "key"):
            t.add_column(c)
        for f in d["findings"]:
            t.add_row(f["kind"], f["summary"], f"{f['shortfall_m']:.3f}", f["status"], f["key"])
        out.print(t)


def _write_bcf(settings: TwinSettings, engine: sa.Engine, out: Path, report, file: Path) -> None:
    """A check's findings as BCF at ``out`` (audited: a copy out of the twin)."""
    from documents.bcf import report_bcf  # noqa: PLC0415 - see _documents_on_demand

    export = report_bcf(engine, settings, report, file, author=settings.user_name)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(export.data)
    with engine.begin() as conn:
        record_command(conn, settings.user_name, "analyze proposal", "proposal-bcf",
                       params={"proposal_id": report.proposal_id, "file": str(file), "out": str(out),
                               "topics": len(export.keys)}, affected=export.affected)
    err.print(f"BCF: {len(export.keys)} topics ({export.snapshots} with a snapshot) written to {out}")


def _write_pdf(settings: TwinSettings, engine: sa.Engine, out: Path, report,
               file: Path | None) -> None:
    """The approval package at ``out``: of the stored proposal, or of a check not stored
    (audited)."""
    pid = report.proposal_id if not isinstance(report, dict) else report["proposal_id"]
    from documents.approval_pdf import approval_pdf, check_pdf  # noqa: PLC0415 - see _documents_on_demand

    pdf = (approval_pdf(engine, settings, pid, user=settings.user_name) if pid is not None
           else check_pdf(engine, settings, report, file, user=settings.user_name))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(pdf)
    with engine.begin() as conn:
        record_command(conn, settings.user_name, "analyze proposal", "proposal-pdf",
                       params={"proposal_id": pid, "file": None if file is None else str(file),
                               "out": str(out), "bytes": len(pdf)},
                       affected=[f"proposal:{pid}"] if pid is not None else [])
    err.print(f"approval package 管线审批报告 written to {out}")


@app.command("proposal")
def proposal(
    file: Annotated[Path, typer.Argument(help="GeoJSON: a LineString pipe or a Polygon excavation.")],
    name: Annotated[str | None, typer.Option("--name", help="Name of the proposal (default: the file name).")] = None,
    proposal_id: Annotated[int | None, typer.Option("--id", help="Re-check stored proposal ID with FILE as its "
                                                                 "revised geometry.")] = None,
    no_store: Annotated[bool, typer.Option("--no-store", help="Check only; store nothing.")] = False,
    html: Annotated[Path | None, typer.Option("--html", help="Write the printable report here.")] = None,
    bcf: Annotated[Path | None, typer.Option("--bcf", help="Write the findings as BCF 3.0 topics (with 3D "
                                             "snapshots) here, for BIM tools.")] = None,
    pdf: Annotated[Path | None, typer.Option(
        "--pdf", help="Write the approval package (PDF, Chinese and English, 3D pictures) here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a proposed pipe or excavation against the twin; store it for review (exit 1: it fails)."""
    from analysis.proposal import check_proposal
    from analysis.proposal_report import report_html
    from analysis.proposal_workflow import recheck_proposal, submit_proposal

    settings, engine = _engine()
    if no_store:
        report = check_proposal(engine, file, settings, name=name)
    elif proposal_id is not None:
        report = recheck_proposal(engine, proposal_id, settings, source=file, before_commit=_audited(
            settings, "proposal", "proposal-recheck", proposal_id, revised=str(file)))
    else:
        report = submit_proposal(engine, file, settings, name=name, before_commit=_audited(
            settings, "proposal", "proposal-submit", name=name, file=str(file)))
    if bcf is not None:
        _write_bcf(settings, engine, bcf, report, file)
    if pdf is not None:
        _write_pdf(settings, engine, pdf, report, file)
    engine.dispose()
    _write(html, report_html(report), "report")
    d = report.as_dict()
    _echo_json(d) if as_json else _print_report(d)
    if not report.passed:
        raise typer.Exit(code=1)


@app.command("proposal-show")
def proposal_show(
    proposal_id: Annotated[int, typer.Argument(help="Stored proposal id.")],
    recheck: Annotated[bool, typer.Option("--recheck", help="Check it again against the current network.")] = False,
    html: Annotated[Path | None, typer.Option("--html", help="Write the printable report here.")] = None,
    pdf: Annotated[Path | None, typer.Option(
        "--pdf", help="Write the approval package (PDF) here.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a stored proposal: its last check, the decisions and the history."""
    from analysis.proposal_report import report_html
    from analysis.proposal_workflow import get_proposal, recheck_proposal

    settings, engine = _engine()
    if recheck:
        recheck_proposal(engine, proposal_id, settings,
                         before_commit=_audited(settings, "proposal-show", "proposal-recheck", proposal_id))
    d = get_proposal(engine, proposal_id)
    if pdf is not None:
        _write_pdf(settings, engine, pdf, d, None)
    engine.dispose()
    _write(html, report_html(d), "report")
    _echo_json(d) if as_json else _print_report(d)


@app.command("proposal-list")
def proposal_list(as_json: JsonOpt = False) -> None:
    """List the stored proposals with their status."""
    from analysis.proposal_workflow import list_proposals

    _settings, engine = _engine()
    rows = list_proposals(engine)
    engine.dispose()
    if as_json:
        _echo_json(rows)
        return
    t = Table(title="proposals")
    for c in ("id", "name", "utility", "status", "passed", "open", "created", "decided"):
        t.add_column(c)
    for r in rows:
        t.add_row(str(r["id"]), r["name"], r["utility"] or "", r["status"], str(r["passed"]), str(r["open"]),
                  f"{r['created_by']} {r['created_at']}", f"{r['decided_by'] or ''} {r['decided_at'] or ''}")
    Console().print(t)


@app.command("proposal-decide")
def proposal_decide(
    proposal_id: Annotated[int, typer.Argument(help="Stored proposal id.")],
    status: Annotated[str, typer.Option("--status", help="Proposal: reviewed | approved | rejected; with "
                                                         "--finding: accepted | rejected | open.")],
    finding: Annotated[str | None, typer.Option("--finding", help="Decide this finding (its key).")] = None,
    note: Annotated[str | None, typer.Option("--note", help="Why.")] = None,
    override: Annotated[str | None, typer.Option("--override", help="Approve although findings are not accepted: "
                                                                    "the reason (recorded).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Decide a proposal or one of its findings; records who (TWIN_USER or the login) and when."""
    from analysis.proposal_workflow import decide_finding, decide_proposal

    settings, engine = _engine()
    if finding is not None:
        d = decide_finding(engine, proposal_id, finding, status, settings, note=note, before_commit=_audited(
            settings, "proposal-decide", "proposal-finding", proposal_id, key=finding, status=status, note=note))
    else:
        d = decide_proposal(engine, proposal_id, status, settings, note=note, override=override,
                            before_commit=_audited(settings, "proposal-decide", f"proposal-{status}", proposal_id,
                                                   status=status, note=note, override=override))
    engine.dispose()
    _echo_json(d) if as_json else _print_report(d)


@app.command("proposal-withdraw")
def proposal_withdraw(
    proposal_id: Annotated[int, typer.Argument(help="Stored proposal id.")],
    note: Annotated[str | None, typer.Option("--note", help="Why.")] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Withdraw a proposal someone else submitted "
                                                        "(as an admin).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Withdraw a new or reviewed proposal you submitted (TWIN_USER or the login); --admin: anyone's."""
    from analysis.proposal_workflow import withdraw_proposal

    settings, engine = _engine()
    d = withdraw_proposal(engine, proposal_id, settings, note=note, admin=admin, before_commit=_audited(
        settings, "proposal-withdraw", "proposal-withdrawn", proposal_id, note=note, admin=admin or None))
    engine.dispose()
    _echo_json(d) if as_json else _print_report(d)
