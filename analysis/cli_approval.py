"""Commands of ``twin analyze``: collision, clearance and cover (see analysis.cli).

Each scans the whole live network, or with ``--proposal FILE`` (GeoJSON, see
:mod:`analysis.proposal_input`) checks the proposal against the network around it. ``--json``
prints the report as JSON; on a terminal the findings are shown as tables. A bad input
(missing size, wrong CRS, unreadable rule table) prints the error and exits with code 2.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["app", "collision", "clearance", "cover"]

#: The commands of this module; :mod:`analysis.cli` adds them to ``twin analyze``.
app = typer.Typer()
err = Console(stderr=True)

ProposalOpt = Annotated[Path | None, typer.Option("--proposal", help="GeoJSON LineString (pipe) or Polygon "
                                                   "(excavation) to check against the network.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the report as JSON.")]
LimitOpt = Annotated[int, typer.Option("--limit", help="Findings listed on the terminal.")]


def _run(as_json: bool, work: Callable[[], tuple[dict, Callable[[Console], None]]]) -> None:
    """Run an analysis: JSON or tables out (a TwinError is reported by ``twin``'s main)."""
    with (err.status("analysing") if not as_json and err.is_terminal else _nullcontext()):
        report, show = work()
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False, indent=2, default=str))
    else:
        show(Console())


class _nullcontext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _stored_rules(loader, rules: Path | None, settings):
    """``--rules``, else the table an admin stored in the twin, else the configured or shipped one."""
    from twin.db import open_twin

    if rules is not None:
        return loader(rules, settings)
    engine = open_twin(settings)
    try:
        return loader(None, settings, db=engine)
    finally:
        engine.dispose()


def _networks(proposal: Path | None):
    """The settings, the existing network (around the proposal, if any) and the proposal."""
    from analysis.network import load_network
    from analysis.proposal_input import load_existing_near, read_proposal
    from twin.db import open_twin
    from twin.settings import get_settings

    settings = get_settings()
    engine = open_twin(settings)
    try:
        if proposal is None:
            return settings, load_network(engine), None
        prop = read_proposal(proposal, settings, engine=engine)
        return settings, load_existing_near(engine, prop), prop
    finally:
        engine.dispose()


def _groups(out: Console, title: str, groups: dict[str, int]) -> None:
    if not groups:
        return
    t = Table(title=title)
    t.add_column(title.split(" ")[-1])
    t.add_column("count", justify="right")
    for k, v in list(groups.items())[:15]:
        t.add_row(k, f"{v:,}")
    out.print(t)


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    t = Table(title=title)
    for c in columns:
        t.add_column(c, justify="right" if c.endswith("_m") or c in ("x", "y", "z") else "left")
    for r in rows:
        t.add_row(*["" if v is None else f"{v:.3f}" if isinstance(v, float) else str(v) for v in r])
    return t


@app.command("collision")
def collision(proposal: ProposalOpt = None, as_json: JsonOpt = False, limit: LimitOpt = 20,
              min_overlap: Annotated[float, typer.Option("--min-overlap", help="Overlaps up to this (m) "
                                                         "are not reported.")] = 0.0) -> None:
    """Hard clashes (solids overlap, 碰撞) and duplicates, in 3D with real pipe sizes."""
    from analysis.clash import collisions

    def work():
        _, existing, prop = _networks(proposal)
        report = collisions(existing, prop, min_overlap_m=min_overlap)

        def show(out: Console) -> None:
            d = report.as_dict()
            out.print(f"[bold]{d['counts']['hard']}[/] hard clashes ([bold]{d['counts']['violation']}[/] certain), "
                      f"[bold]{d['counts']['duplicate']}[/] duplicates, [bold]{d['counts']['near_miss']}[/] near "
                      f"misses; [bold]{d['counts']['uncertain']}[/] uncertain 依探测精度无法判定 "
                      f"({len(existing.segments):,} segments scanned)")
            out.print(_table("clashes and near misses (worst first)",
                             ["kind", "verdict", "a", "b", "utilities", "measured_m", "uncertainty_m", "x", "y", "z",
                              "road"],
                             [[c.kind, c.verdict, c.a_id, c.b_id, f"{c.a_utility}/{c.b_utility}", c.measured_m,
                               c.uncertainty_m, c.x, c.y, c.z, c.road] for c in report.findings[:limit]]))
            _groups(out, "clashes by road", d["by_road"])
            _groups(out, "clashes by owner pair", d["by_owner_pair"])
        return report.as_dict(), show

    _run(as_json, work)


@app.command("clearance")
def clearance(proposal: ProposalOpt = None, as_json: JsonOpt = False, limit: LimitOpt = 20,
              rules: Annotated[Path | None, typer.Option("--rules", help="Clearance rule CSV (default: "
                                                         "TWIN_CLEARANCE_RULES or the shipped GB 50289 table).")] = None
              ) -> None:
    """Horizontal (parallel runs) and vertical (crossings) clearance against the rule table."""
    from analysis.clearance import clearances, load_clearance_rules

    def work():
        settings, existing, prop = _networks(proposal)
        report = clearances(existing, prop, rules=_stored_rules(load_clearance_rules, rules, settings),
                            settings=settings)

        def show(out: Console) -> None:
            d = report.as_dict()
            out.print(f"[bold]{d['counts']['horizontal']}[/] horizontal and [bold]{d['counts']['vertical']}[/] "
                      f"vertical clearance violations, [bold]{d['counts']['uncertain']}[/] uncertain "
                      f"依探测精度无法判定, [bold]{d['counts']['no_rule']}[/] with no rule 无规则; "
                      f"pairs checked {d['checked_pairs']}; rules {d['rules']}")
            columns = ["kind", "a", "b", "utilities", "measured_m", "required_m", "uncertainty_m", "rule", "x", "y",
                       "road"]
            for title, found in (("violations (largest shortfall first)", report.violations),
                                 ("uncertain 依探测精度无法判定 (trial trench or new detection)", report.uncertain)):
                out.print(_table(title, columns, [
                    [v.kind, v.a_id, v.b_id, f"{v.a_utility}/{v.b_utility}", v.measured_m, v.required_m,
                     v.uncertainty_m, f"{v.rule_id}{'' if v.rule_verified else ' (to verify)'}", v.x, v.y, v.road]
                    for v in found[:limit]]))
            if report.no_rule:
                out.print(_table("无规则 no rule, cannot judge", ["clearance", "a", "b", "a is", "b is", "measured_m",
                                                                "x", "y", "road"],
                                 [[n.clearance, n.a_id, n.b_id, n.a_class, n.b_class, n.measured_m, n.x, n.y, n.road]
                                  for n in report.no_rule[:limit]]))
            _groups(out, "violations by road", d["by_road"])
            _groups(out, "violations by owner pair", d["by_owner_pair"])
        return report.as_dict(), show

    _run(as_json, work)


@app.command("cover")
def cover(as_json: JsonOpt = False, limit: LimitOpt = 20,
          proposal: ProposalOpt = None,
          rules: Annotated[Path | None, typer.Option("--rules", help="Cover rule CSV (default: "
                                                     "TWIN_COVER_RULES or the shipped GB 50289 table).")] = None,
          location: Annotated[str | None, typer.Option("--location", help="motor_lane or sidewalk where no "
                                                       "zone applies (default TWIN_COVER_LOCATION).")] = None,
          zones: Annotated[Path | None, typer.Option("--zones", help="GeoJSON polygons with a 'location' "
                                                     "property (motor_lane / sidewalk), twin CRS.")] = None,
          step: Annotated[float, typer.Option("--step", help="Sampling step along pipes (m).")] = 2.0) -> None:
    """Cover depth (覆土) along every pipe against the minimum per utility and location; worst point per pipe."""
    from analysis.cover import cover_depths, load_cover_rules

    def work():
        settings, existing, prop = _networks(proposal)
        report = cover_depths(existing, prop, rules=_stored_rules(load_cover_rules, rules, settings),
                              settings=settings, default_location=location,
                              zones=_read_zones(zones) if zones else None, step_m=step)

        def show(out: Console) -> None:
            d = report.as_dict()
            out.print(f"[bold]{d['counts']['violations']}[/] pipes with too little cover, "
                      f"[bold]{d['counts']['uncertain']}[/] uncertain 依探测精度无法判定, of "
                      f"{d['counts']['checked_segments']:,} checked (default location {d['default_location']})")
            out.print(_table("worst point per pipe", ["id", "utility", "verdict", "location", "cover_m", "required_m",
                                                      "uncertainty_m", "rule", "x", "y", "road"],
                             [[v.id, v.utility, v.verdict, v.location, v.cover_m, v.required_m, v.uncertainty_m,
                               f"{v.rule_id}{'' if v.rule_verified else ' (to verify)'}", v.x, v.y, v.road]
                              for v in (report.violations + report.uncertain)[:limit]]))
            if d["unruled_segments"]:
                out.print(f"pipes no rule covers (not judged): {d['unruled_segments']}")
        return report.as_dict(), show

    _run(as_json, work)


def _read_zones(path: Path):
    """(polygon, location) pairs from a GeoJSON FeatureCollection in the twin CRS."""
    import shapely.geometry

    from twin.errors import InputError

    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8-sig"))
        feats = doc["features"] if doc.get("type") == "FeatureCollection" else [doc]
        out = [(shapely.geometry.shape(f["geometry"]), (f.get("properties") or {})["location"]) for f in feats]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"zones file {path}: GeoJSON polygons with a 'location' property are needed ({exc})",
                         zh=f"分区文件 {path}：须为带 'location' 属性的 GeoJSON 多边形（{exc}）") from None
    return out
