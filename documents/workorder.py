"""The shutoff work order (关阀作业单): what a repair crew carries to a burst, as a PDF.

From a shutoff answer (:func:`analysis.shutoff.shutoff` as a dict, or a planned shutdown's
record, :func:`analysis.shutdown.get_shutdown`): the valves to close in order with their
positions (E/N and lon/lat), depths and chamber ids; a plan map; the second ring of valves for
each valve likely to fail (or reported failed); the customers to notify, critical first, with
counts; the hydrants out of service; a 3D picture of the dig site with every other utility
within 10 m (:func:`documents.pictures.site_picture`). One column, big type, tables that fit:
it prints on A4 and reads on a phone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import sqlalchemy as sa

from analysis.shutdown import STATUS_ZH
from documents.pdf import Document, local_time, quantity
from documents.pictures import site_picture
from documents.planmap import Mark, map_frame, plan_map
from twin.crs import transformer
from twin.db import CHANGE_MARK_SQL, twin_srid
from twin.domain import APPURTENANCES, UTILITIES
from twin.errors import InputError
from twin.settings import TwinSettings

__all__ = ["work_order_pdf", "WorkSite", "work_site"]

_CHAMBERS = ("valve_chamber", "manhole", "meter")
_HYDRANT = ["hydrant", *APPURTENANCES["hydrant"]]
#: Valve records carry ``x``/``y`` (twin CRS); these come from the node the valve sits at.
_NODE_SQL = (
    "SELECT id, map_id, appurtenance, depth_m, well_depth_m, ground_z, eccentric_well_id, "
    "ST_X(geom) AS x, ST_Y(geom) AS y FROM current_node WHERE id = ANY(:ids)")


@dataclass
class WorkSite:
    """What the work order reads from the twin besides the answer."""

    burst: tuple[float, float]
    srid: int
    change_mark: str
    nodes: dict[str, dict] = field(default_factory=dict)  # valve and hydrant nodes by id
    hydrants: list[dict] = field(default_factory=list)
    lonlat: dict[str, tuple[float, float]] = field(default_factory=dict)  # by valve id


def _burst_point(conn: sa.Connection, answer: Mapping, at: Sequence[float] | None) -> tuple[float, float]:
    """Where the burst is: the point given, else the middle of the pipe, else the node."""
    at = at or answer.get("at")
    if at:
        return float(at[0]), float(at[1])
    if answer.get("pipe"):
        row = conn.execute(sa.text(
            "SELECT ST_X(p) AS x, ST_Y(p) AS y FROM (SELECT ST_LineInterpolatePoint("
            "ST_LineMerge(geom), 0.5) AS p FROM current_segment WHERE id = :i) q"),
            {"i": answer["pipe"]}).first()
    else:
        row = conn.execute(sa.text("SELECT ST_X(geom) AS x, ST_Y(geom) AS y FROM current_node "
                                   "WHERE id = :i"), {"i": answer.get("node")}).first()
    if row is None or row.x is None:
        raise InputError("the work order cannot place the burst: give its point (at)",
                         zh="工单无法定位爆管点：请给出其位置（at）")
    return float(row.x), float(row.y)


def work_site(engine: sa.Engine, answer: Mapping, *, at: Sequence[float] | None = None) -> WorkSite:
    """The burst's place, the valves' and hydrants' nodes (depths, chambers), the hydrants out
    of service (unless the answer, a shutdown record, has them) and the valves' lon/lat."""
    valves = [*answer.get("valves", []), *answer.get("failed_valves", [])]
    with engine.connect() as conn:
        srid = twin_srid(conn)
        mark = conn.execute(sa.text(f"SELECT {CHANGE_MARK_SQL}")).scalar()
        burst = _burst_point(conn, answer, at)
        hydrants = answer.get("hydrants")
        if hydrants is None:
            hydrants = [dict(r) for r in conn.execute(sa.text(
                "SELECT id, appurtenance, ST_X(geom) AS x, ST_Y(geom) AS y FROM current_node "
                "WHERE id = ANY(:n) AND appurtenance = ANY(:h) ORDER BY id"),
                {"n": [*answer.get("isolated_nodes", []), *answer.get("outage_nodes", [])],
                 "h": _HYDRANT}).mappings()]
        ids = [v.get("node") for v in valves] + [h["id"] for h in hydrants]
        nodes = {r["id"]: dict(r) for r in conn.execute(
            sa.text(_NODE_SQL), {"ids": [i for i in ids if i]}).mappings()}
    site = WorkSite(burst, srid, "-" if mark is None else str(mark), nodes, list(hydrants))
    xy = np.array([[_num(v.get("x")), _num(v.get("y"))] for v in valves], float).reshape(-1, 2)
    if len(xy):
        lon, lat = transformer(f"EPSG:{srid}", "EPSG:4326").transform(xy[:, 0], xy[:, 1])
        site.lonlat = {v["id"]: (float(a), float(b)) for v, a, b in
                       zip(valves, np.atleast_1d(lon), np.atleast_1d(lat), strict=True)}
    return site


def _num(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("nan")


def _chamber(node: Mapping | None) -> str:
    """The chamber a valve is reached through: its node when that is a chamber, or the
    eccentric well the survey names, else none (a buried valve: dig or use the key box)."""
    if not node:
        return "-"
    if node.get("eccentric_well_id"):
        return str(node["eccentric_well_id"])
    if node.get("appurtenance") in _CHAMBERS or node.get("well_depth_m") is not None:
        return str(node["id"])
    return "-"


def _what(answer: Mapping) -> str:
    return f"管段 pipe {answer['pipe']}" if answer.get("pipe") else f"管点 node {answer.get('node')}"


def _summary(doc: Document, answer: Mapping, site: WorkSite) -> None:
    util = UTILITIES.get(str(answer.get("utility")))
    customers = answer.get("customers", [])
    pairs: list[tuple[str, object]] = []
    if answer.get("status"):  # a shutdown record
        pairs += [("停水作业 Shutdown", f"#{answer['id']} {STATUS_ZH.get(answer['status'], '')} "
                   f"{answer['status']}"),
                  ("计划时间 Planned", f"{local_time(answer['planned_start'])} - "
                   f"{local_time(answer['planned_end'])}")]
        if answer.get("reason"):
            pairs.append(("原因 Reason", answer["reason"]))
    pairs += [
        ("爆管位置 Burst", _what(answer)),
        ("管线 Utility", f"{util.name_zh} {util.name_en}" if util else answer.get("utility")),
        ("坐标 Position", f"E {site.burst[0]:.2f}  N {site.burst[1]:.2f}"),
        ("关阀 Valves to close", f"{len(answer.get('valves', []))}"),
        ("隔离管段 Isolated", f"{len(answer.get('isolated_pipes', []))} 段 pipes, "
         f"{quantity(answer.get('length_m'), 'm', 1)}, 放水 {quantity(answer.get('volume_m3'), 'm³', 2)}"),
        ("停水用户 Customers", f"{len(customers)} (重要 critical {len(answer.get('critical_customers', []))})"),
        ("消火栓停用 Hydrants", f"{len(site.hydrants)}"),
    ]
    doc.key_values(pairs)


def _valves(doc: Document, answer: Mapping, site: WorkSite, exercise_years: float) -> None:
    doc.heading("关阀顺序 Valves to close, in this order")
    doc.paragraph("先关水源侧阀门。每关一个，打勾并记下时间。 Close source-side valves first; tick each "
                  f"one and note the time. 可能失灵 may fail: {exercise_years:g} 年内未操作或上次操作失败, "
                  f"not exercised for {exercise_years:g} years or its last exercise failed.", size=10)
    rows, flags = [], []
    for v in answer.get("valves", []):
        if v.get("needed") is False:
            continue
        node = site.nodes.get(v.get("node"), {})
        lon, lat = site.lonlat.get(v["id"], (float("nan"), float("nan")))
        warn = "可能失灵 may fail" if v.get("likely_to_fail") else ""
        if v.get("added_for"):
            warn = f"替代 for {v['added_for']} " + warn
        if v.get("state") and v["state"] != "pending":
            warn = f"{v['state']} " + warn
        rows.append([v.get("order", len(rows) + 1), v["id"],
                     f"E {_num(v.get('x')):.2f}\nN {_num(v.get('y')):.2f}\n{lon:.6f}, {lat:.6f}",
                     quantity(node.get("depth_m"), "m", 2), _chamber(node), v.get("pipe") or "-",
                     warn.strip() or "☐"])
        flags.append(bool(v.get("likely_to_fail") or v.get("state") == "failed"))
    if not rows:
        doc.paragraph("无阀门可关：见下方说明。 No valve can close this segment off: see the notes.")
        return
    doc.table(["#", "阀门 Valve", "位置 E/N, lon/lat", "埋深 Depth", "阀门井 Chamber", "管段 Pipe",
               "备注 Note"], rows, widths=(0.6, 1.6, 3.0, 1.3, 1.5, 1.6, 1.8), emphasis=flags)
    failed = answer.get("failed_valves", [])
    if failed:
        doc.table(["失灵阀门 Failed valve", "管段 Pipe", "原因 Reason"],
                  [[f["id"], f.get("pipe") or "-", f.get("reason") or "-"] for f in failed],
                  widths=(2, 2, 4))


def _plan(doc: Document, engine: sa.Engine, answer: Mapping, site: WorkSite) -> None:
    valves = [v for v in answer.get("valves", []) if v.get("needed") is not False]
    marks = [Mark(_num(v.get("x")), _num(v.get("y")), str(v.get("order", i)))
             for i, v in enumerate(valves, 1)]
    marks.append(Mark(*site.burst, "爆管 burst", shape="X"))
    marks += [Mark(_num(f.get("x")), _num(f.get("y")), f"{f['id']} 失灵 failed", colour="#555555",
                   shape="s") for f in answer.get("failed_valves", [])]
    marks += [Mark(_num(h["x"]), _num(h["y"]), f"消火栓 {h['id']}", colour="#b8860b", shape="^")
              for h in site.hydrants[:20]]
    x, y, r = map_frame(np.array([[m.x, m.y] for m in marks]))
    png = plan_map(engine, x, y, r, highlight=answer.get("isolated_pipes", []), marks=marks)
    doc.heading("平面图 Plan map", keep_mm=doc.picture_height(png))
    doc.picture(png, caption="红圈数字为关阀顺序，高亮为隔离管段，灰方块为失灵阀门。 Numbers: closing "
                "order; highlighted: isolated pipes; grey squares: failed valves.")


def _second_ring(doc: Document, answer: Mapping) -> None:
    ring = answer.get("next_ring") or {}
    added = answer.get("added_for_failures") or {}
    if not ring and not added:
        return
    doc.heading("二次关阀 Second ring, if a valve fails")
    rows = [[k, "、".join(v) or "-", "已计入 in the order above", "-"] for k, v in added.items()]
    rows += [[k, "、".join(r.get("valves", [])) or "-",
              f"{len(r.get('extra_pipes', []))} 段 pipes",
              f"{len(r.get('extra_customers', []))} (重要 critical "
              f"{len(r.get('extra_critical_customers', []))})"] for k, r in ring.items()]
    doc.table(["若失灵 If it fails", "改关 Close instead", "多停管段 More pipes",
               "多停用户 More customers"], rows, widths=(2, 3, 2, 2.6))


def _customers(doc: Document, answer: Mapping) -> None:
    customers = answer.get("customers", [])
    critical = sum(bool(c.get("critical")) for c in customers)
    doc.heading(f"通知用户 Customers to notify: {len(customers)} (重要 critical {critical})")
    if not customers:
        doc.paragraph("无。 None.")
        return
    rows = [[n, c["id"], c.get("name") or "-", c.get("kind") or "-",
             "重要 critical" if c.get("critical") else ""] for n, c in enumerate(customers, 1)]
    doc.table(["#", "用户 Customer", "名称 Name", "类型 Kind", ""], rows, widths=(0.6, 1.8, 3.8, 1.6, 1.6),
              emphasis=[bool(c.get("critical")) for c in customers])


def _hydrants(doc: Document, site: WorkSite) -> None:
    doc.heading(f"消火栓停用 Hydrants out of service: {len(site.hydrants)}")
    if not site.hydrants:
        doc.paragraph("无。 None.")
        return
    doc.paragraph("通知消防部门。 Tell the fire service.", size=10)
    rows = [[h["id"], f"E {_num(h.get('x')):.2f}  N {_num(h.get('y')):.2f}",
             site.nodes.get(h["id"], {}).get("map_id") or "-"] for h in site.hydrants]
    doc.table(["消火栓 Hydrant", "位置 Position", "图上点号 Map id"], rows, widths=(2, 4, 2))


def _dig_site(doc: Document, engine: sa.Engine, answer: Mapping, site: WorkSite, radius_m: float) -> None:
    pic = site_picture(engine, *site.burst, radius_m=radius_m,
                       highlight=[p for p in (answer.get("pipe"),) if p],
                       title=f"开挖点 Dig site, {radius_m:g} m")
    doc.heading(f"开挖现场 Dig site: every utility within {radius_m:g} m",
                keep_mm=doc.picture_height(pic.png))
    doc.picture(pic.png, caption="三维示意，地面半透明；开挖前须探明其他管线。 3D view, ground "
                "translucent: locate the other utilities before digging.")


def work_order_pdf(engine: sa.Engine, settings: TwinSettings, answer: Mapping, *, by: str = "",
                   at: Sequence[float] | None = None, radius_m: float = 10.0,
                   picture: bool = True) -> bytes:
    """The work order of a shutoff answer (or a shutdown record) as PDF bytes: valves in order,
    plan map, second ring, customers, hydrants, and (``picture``) the dig site in 3D."""
    if not answer.get("utility") or "valves" not in answer:
        raise InputError("a work order needs a shutoff answer (utility, valves, ...)",
                         zh="工单需要关阀分析结果（管线类别、阀门等）")
    site = work_site(engine, answer, at=at)
    doc = Document("关阀作业单", "Shutoff work order", generated_by=by, change_mark=site.change_mark,
                   subject=_what(answer))
    doc.paragraph(f"坐标系 CRS EPSG:{site.srid}（E 东坐标, N 北坐标）; 经纬度 lon/lat WGS 84. "
                  "埋深为阀门所在管线点的探测埋深。 Depth: the surveyed depth at the valve's point.",
                  size=9, muted=True)
    _summary(doc, answer, site)
    _valves(doc, answer, site, settings.valve_exercise_years)
    _plan(doc, engine, answer, site)
    _second_ring(doc, answer)
    _customers(doc, answer)
    _hydrants(doc, site)
    if picture:
        _dig_site(doc, engine, answer, site, radius_m)
    for note in answer.get("notes", []):
        doc.paragraph(f"注意 Note: {note}", size=10)
    return doc.to_bytes()
