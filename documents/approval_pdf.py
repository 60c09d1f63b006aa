"""The approval package (管线审批报告): a proposal check as a PDF for the officer who signs it.

:func:`approval_pdf` prints a stored proposal (its last check, decisions and history);
:func:`check_pdf` a check that was not stored (``twin analyze proposal FILE --no-store --pdf``).
Both hold, Chinese first and English second:

- the result, the proposal and who submitted and decided it;
- the stamp: the network version (change mark) and the rule-table version the check was made
  against (:func:`analysis.proposal.check_stamp`), and whether either has moved since;
- after a re-check, what changed since the check before
  (:func:`analysis.proposal_workflow.check_changes`);
- a plan map of the proposal and its surroundings, the findings numbered on it;
- the cross-section at the worst place and the longitudinal profile along the proposal's worst
  part (the pipes it crosses, with their vertical clear distances);
- each finding with its verdict (违规 / 无法判定 / 无规则), rule, clause, measured, required and
  uncertainty, the officer's decision, and its 3D picture
  (:func:`documents.pictures.finding_picture`, the proposal drawn as an extra pipe);
- the decisions and who made them (the event log), and lines to sign.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import shapely
import sqlalchemy as sa

from analysis.network import Network, load_network
from analysis.profile import Profile, profile_of_network, shortest_path
from analysis.proposal import (
    SECTION_TITLE,
    ProposalReport,
    check_stamp,
    merge_networks,
    unchecked_pairs,
)
from analysis.proposal_input import read_proposal
from analysis.proposal_report import VERDICT_LABELS, section_svg
from analysis.proposal_workflow import changes_summary, get_proposal
from documents.pdf import Document, local_time, quantity
from documents.pictures import KIND_LABELS, finding_picture, proposal_extras
from documents.planmap import Mark, map_frame, plan_map
from twin.db import twin_srid
from twin.errors import NotFound
from twin.settings import TwinSettings

__all__ = ["approval_pdf", "check_pdf", "VERDICT_SHORT", "ACTION_LABELS", "PICTURE_SIZE"]

#: A verdict in a word or two (in full: :data:`analysis.proposal_report.VERDICT_LABELS`).
VERDICT_SHORT = {
    "violation": "违规 violation",
    "uncertain": "无法判定 uncertain",
    "no_rule": "无规则 no rule",
}
#: Status words of the proposal and of its findings.
STATUS_LABELS = {
    "new": "新提交 new",
    "reviewed": "已审核 reviewed",
    "approved": "已批准 approved",
    "rejected": "已驳回 rejected",
    "withdrawn": "已撤回 withdrawn",
    "open": "待定 open",
    "accepted": "已接受 accepted",
    "resolved": "已消除 resolved",
}
#: What the event log's actions read as.
ACTION_LABELS = {
    "submitted": "提交 submitted",
    "rechecked": "复核 rechecked",
    "revised": "修订 revised",
    "decided": "决定 decided",
    "finding decided": "发现项决定 finding decided",
    "finding resolved": "发现项消除 finding resolved",
    "withdrawn": "撤回 withdrawn",
    "approved with override": "越过发现项批准 approved with override",
}
#: The 3D pictures' size in pixels (printed 160 mm wide: about 150 dpi).
PICTURE_SIZE = (960, 640)
_PICTURE_MM = 160.0


class _Package(Document):
    """The package's pages: the footer's stamp names the rule-table version too."""

    def __init__(self, *args: Any, rules_version: str | None = None, **kwargs: Any) -> None:
        self.rules_version = rules_version or "-"  # the title block, drawn by __init__, reads it
        super().__init__(*args, **kwargs)

    @property
    def stamp(self) -> str:
        """When, by whom, and which network and rules the check saw."""
        return (
            f"生成 {self.generated_at} · {self.generated_by} · 管网版本 Network {self.change_mark}"
            f" · 规则版本 Rules {self.rules_version}"
        )


def approval_pdf(
    engine: sa.Engine,
    settings: TwinSettings,
    proposal_id: int,
    *,
    user: str | None = None,
    pictures: bool = True,
) -> bytes:
    """The approval package of stored proposal ``proposal_id`` (NotFound when there is none)."""
    report = get_proposal(engine, proposal_id)
    with engine.connect() as conn:
        geojson = conn.execute(
            sa.text("SELECT geojson FROM proposal WHERE id = :p"), {"p": proposal_id}
        ).scalar()
    if geojson is None:
        raise NotFound(f"no proposal {proposal_id}", zh=f"没有提案 {proposal_id}")
    proposal = read_proposal(geojson, settings, engine=engine)
    return _package(engine, settings, report, proposal, user=user, pictures=pictures)


def check_pdf(
    engine: sa.Engine,
    settings: TwinSettings,
    report: ProposalReport,
    proposal: Network | str | Path | Mapping[str, Any],
    *,
    user: str | None = None,
    pictures: bool = True,
) -> bytes:
    """The package of a check that was not stored: its report and the proposal (GeoJSON path or
    dict as checked, or the read proposal)."""
    if not isinstance(proposal, Network):
        proposal = read_proposal(proposal, settings, engine=engine)
    return _package(engine, settings, report.as_dict(), proposal, user=user, pictures=pictures)


def _package(
    engine: sa.Engine,
    settings: TwinSettings,
    d: Mapping,
    proposal: Network,
    *,
    user: str | None,
    pictures: bool,
) -> bytes:
    stamp = d.get("stamp") or {}
    doc = _Package(
        "管线审批报告",
        f"Approval package · {d.get('name')}",
        generated_by=user or settings.user_name,
        change_mark=stamp.get("network_mark"),
        rules_version=stamp.get("rules_version"),
        subject="Proposal check 管线审批",
    )
    findings = list(d.get("findings") or [])
    _summary(doc, d)
    _stamp(doc, engine, settings, stamp)
    _changes(doc, d.get("changes"))
    _plan(doc, engine, proposal, findings)
    _drawings(doc, engine, d, proposal, findings)
    _findings(doc, engine, proposal, findings, pictures)
    _decisions(doc, d)
    return doc.to_bytes()


# -- the parts --------------------------------------------------------------------------------
def _summary(doc: Document, d: Mapping) -> None:
    doc.heading("结论 Result")
    if d.get("passed"):
        doc.paragraph(
            "通过 PASS: 未发现碰撞、净距或覆土问题 no collision, clearance or cover finding"
        )
    else:
        verdicts = ", ".join(
            f"{VERDICT_SHORT.get(k, k)} {v}" for k, v in (d.get("verdicts") or {}).items() if v
        )
        doc.paragraph(
            f"不通过 FAIL: {len(d.get('findings') or [])} 项发现 findings, "
            f"{d.get('open_findings', 0)} 项未接受 not accepted ({verdicts})"
        )
    pid = d.get("proposal_id")
    stored = (
        f"编号 id {pid} · 版本 version {d.get('version', 1)}"
        if pid is not None
        else "未存储 not stored"
    )
    doc.key_values(
        [
            ("方案 Proposal", f"{d.get('name')} · {stored}"),
            (
                "状态 Status",
                STATUS_LABELS.get(d.get("status") or "new", d.get("status"))
                if pid is not None
                else "未存储 not stored",
            ),
            (
                "管线 Pipe",
                f"{d.get('utility')} · {d.get('size')} · {quantity(d.get('length_m'), 'm')}",
            ),
            ("核查时间 Checked", local_time(d["checked_at"]) if d.get("checked_at") else "-"),
            ("提交人 Submitted by", _who(d.get("created_by"), d.get("created_at"))),
            ("决定人 Decided by", _who(d.get("decided_by"), d.get("decided_at"))),
            ("附近现状管线 Existing pipes near", d.get("candidates")),
        ]
    )


def _who(name: str | None, at: str | None) -> str:
    return "-" if not name else f"{name} {local_time(at) if at else ''}".strip()


def _stamp(doc: Document, engine: sa.Engine, settings: TwinSettings, stamp: Mapping) -> None:
    """The network and rules the check was made against, and whether they have moved since."""
    doc.heading("核查印记 Check stamp")
    now = check_stamp(engine, settings)
    rows: list[tuple[str, object]] = [
        ("管网版本 Network version", stamp.get("network_mark") or "未记录 not recorded"),
        ("规则表版本 Rule-table version", stamp.get("rules_version") or "未记录 not recorded"),
    ]
    for name, t in (stamp.get("rules") or {}).items():
        origin = t.get("source", "")
        if t.get("updated_by"):
            origin += (
                f", {t['updated_by']} {local_time(t['updated_at']) if t.get('updated_at') else ''}"
            )
        rows.append((f"  {name}", f"{origin} · sha256 {str(t.get('sha256', ''))[:16]}"))
    moved = [
        what
        for what, key in (("管网 network", "network_mark"), ("规则表 rules", "rules_version"))
        if stamp.get(key) and stamp.get(key) != now[key]
    ]
    rows.append(
        ("现在 Now", f"管网 network {now['network_mark']} · 规则 rules {now['rules_version']}")
    )
    doc.key_values(rows)
    if moved:
        doc.paragraph(
            f"注意 NOTE: 核查后{'、'.join(m.split()[0] for m in moved)}已变更 "
            f"the {' and '.join(m.split()[1] for m in moved)} changed since this check: "
            "请复核 re-check before deciding."
        )


def _changes(doc: Document, changes: Mapping | None) -> None:
    """A re-check's differences from the check before."""
    if not changes:
        return
    doc.heading("自上次核查的变化 Changes since the last check")
    doc.paragraph(changes_summary(changes))
    rows = (
        [
            ["新增 added", f["key"], _kind(f), f.get("summary") or ""]
            for f in changes.get("added") or []
        ]
        + [
            ["消失 gone", f["key"], _kind(f), f.get("summary") or ""]
            for f in changes.get("gone") or []
        ]
        + [
            [
                "变化 changed",
                f["key"],
                _kind(f),
                "; ".join(
                    f"{c}: {_value(v[0])} → {_value(v[1])}"
                    for c, v in (f.get("changed") or {}).items()
                ),
            ]
            for f in changes.get("changed") or []
        ]
    )
    if rows:
        doc.table(
            ["变化 Change", "编号 Key", "类型 Kind", "内容 What"],
            rows,
            widths=(14, 16, 22, 48),
            size=9,
        )
    pipes = changes.get("pipes_changed") or []
    if pipes:
        doc.table(
            ["附近管线 Pipe near", "专业 Utility", "变更 Change", "时间 When"],
            [
                [
                    p["id"],
                    p.get("utility") or "",
                    p["change"],
                    local_time(p["at"]) if p.get("at") else "",
                ]
                for p in pipes
            ],
            widths=(30, 15, 20, 35),
            size=9,
        )


def _kind(f: Mapping) -> str:
    return KIND_LABELS.get(f.get("kind") or "", f.get("kind") or "")


def _value(v: object) -> str:
    return (
        quantity(v, "m", 3) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)
    )


def _proposal_lines(proposal: Network) -> list[shapely.Geometry]:
    return [
        shapely.LineString(proposal.vertices[a:b, :2])
        if b - a > 1
        else shapely.Point(proposal.vertices[a, :2])
        for a, b in zip(proposal.offsets[:-1], proposal.offsets[1:], strict=True)
    ]


def _plan(doc: Document, engine: sa.Engine, proposal: Network, findings: Sequence[Mapping]) -> None:
    """The proposal (dashed) among the pipes around it, the findings' places numbered."""
    points = np.vstack(
        [proposal.vertices[:, :2]] + [np.array([[f["x"], f["y"]]]) for f in findings]
    )
    x, y, r = map_frame(points, margin_m=15.0, min_radius_m=25.0)
    prop_ids = set(proposal.segments["id"].astype(str))
    highlight = sorted({i for f in findings for i in f.get("ids", []) if i not in prop_ids})
    # a collision and a clearance of one crossing are one mark: "1,2"
    places: dict[tuple[float, float], list[str]] = {}
    for n, f in enumerate(findings, 1):
        places.setdefault((round(f["x"], 1), round(f["y"], 1)), []).append(str(n))
    marks = [Mark(x_, y_, ",".join(ns)) for (x_, y_), ns in list(places.items())[:40]]
    png = plan_map(
        engine,
        x,
        y,
        r,
        highlight=highlight,
        extra=_proposal_lines(proposal),
        marks=marks,
        size_px=(1400, 1400),
        dpi=200,
    )
    doc.heading("平面图 Plan map")
    doc.picture(
        png,
        width_mm=150,
        caption=f"方案（虚线）及周边管线，数字为发现项序号 the proposal (dashed) and the "
        f"pipes around it, findings numbered · {2 * r:.0f} m × {2 * r:.0f} m",
    )


def _drawings(
    doc: Document, engine: sa.Engine, d: Mapping, proposal: Network, findings: Sequence[Mapping]
) -> None:
    """The cross-section at the worst place and the profile along the proposal's worst part."""
    svg = section_svg(dict(d))
    prof = _profile(engine, proposal, findings)
    if svg is None and prof is None:
        return
    doc.heading("断面 Sections")
    if svg is not None:
        sec = d.get("section") or {}
        doc.drawing(
            svg,
            caption=f"{SECTION_TITLE}: {len(sec.get('pipes', []))} 根管线被剖切 pipes cut; "
            "方案以虚线表示 the proposal is dashed",
        )
    if prof is not None:
        doc.drawing(
            prof.to_svg(),
            caption=f"纵断面 Profile along {prof.segments[0].id}"
            f"{' …' if len(prof.segments) > 1 else ''}: "
            f"{len(prof.crossings)} 处交叉 crossings, {prof.length_m:.1f} m",
        )
        if prof.crossings:
            doc.table(
                ["里程 Chainage", "管线 Pipe", "规格 Size", "位置 Position", "垂直净距 Clear"],
                [
                    [
                        quantity(c.chainage_m, "m"),
                        f"{c.id} ({c.subtype or c.utility})",
                        c.size_text,
                        {"above": "上方 above", "below": "下方 below"}.get(c.position, c.position),
                        quantity(c.vertical_clear_m, "m", 3),
                    ]
                    for c in prof.crossings
                ],
                widths=(16, 30, 16, 18, 20),
                size=9,
                emphasis=[
                    c.vertical_clear_m is not None and c.vertical_clear_m < 0
                    for c in prof.crossings
                ],
            )


def _profile(engine: sa.Engine, proposal: Network, findings: Sequence[Mapping]) -> Profile | None:
    """The profile along the chain of proposal pipes holding the worst finding (pipes only)."""
    segs = proposal.segments
    pipes = segs[segs["kind"].fillna("pipe").astype(str) == "pipe"] if "kind" in segs else segs
    if not len(pipes):
        return None
    ids = list(pipes["id"].astype(str))
    worst = next((i for f in findings for i in f.get("ids", []) if i in ids), ids[0])
    edges = pipes[["id", "from_node", "to_node", "length_m"]].astype(
        {"id": str, "from_node": str, "to_node": str}
    )
    row = edges[edges["id"] == worst].iloc[0]
    ends = _chain_ends(edges, row["from_node"], row["to_node"])
    path = shortest_path(edges, *ends)
    if path is None:
        return None
    nodes, seg_ids, _ = path
    idx = proposal.segment_index(seg_ids)
    line = shapely.multilinestrings(
        [
            shapely.LineString(proposal.vertices[proposal.offsets[i] : proposal.offsets[i + 1], :2])
            for i in idx
        ]
    )
    near = load_network(engine, near=line, distance_m=0.01)
    return profile_of_network(
        merge_networks(near, proposal), nodes, seg_ids, crs=f"EPSG:{twin_srid(engine)}"
    )


def _chain_ends(edges: Any, a: str, b: str) -> tuple[str, str]:
    """The two far ends of the chain of pipes through ``a``-``b``: follow points of degree 2."""
    degree = {}
    for n in list(edges["from_node"]) + list(edges["to_node"]):
        degree[n] = degree.get(n, 0) + 1
    ends = []
    for start, came in ((a, b), (b, a)):
        seen = {came}
        node = start
        while degree.get(node) == 2 and node not in seen:
            seen.add(node)
            nxt = edges[
                ((edges["from_node"] == node) & ~edges["to_node"].isin(seen))
                | ((edges["to_node"] == node) & ~edges["from_node"].isin(seen))
            ]
            if not len(nxt):
                break
            r = nxt.iloc[0]
            node = r["to_node"] if r["from_node"] == node else r["from_node"]
        ends.append(node)
    return ends[0], ends[1]


def _rule(f: Mapping) -> tuple[str, str]:
    """A finding's rule and clause: ``V007: GB 50289-2016 4.1.14`` is rule V007, clause GB ...."""
    rule = str(f.get("rule") or "")
    head, sep, tail = rule.partition(": ")
    if sep and head and " " not in head:
        return head + (
            "" if f.get("rule_verified") in (None, True) else " (待核实 to verify)"
        ), tail
    if f.get("kind") in ("collision", "duplicate"):
        return "实体不得重叠 solids must not overlap", "-"
    return rule or "-", "-"


def _findings(
    doc: Document, engine: sa.Engine, proposal: Network, findings: Sequence[Mapping], pictures: bool
) -> None:
    doc.heading("发现项 Findings")
    if not findings:
        doc.paragraph(
            "无发现项: 方案通过碰撞、净距和覆土核查 "
            "No finding: the proposal passes the collision, clearance and cover checks."
        )
        return
    doc.table(
        [
            "#",
            "类型 Kind",
            "判定 Verdict",
            "管线 Pipes",
            "实测 Measured",
            "要求 Required",
            "± 精度",
            "决定 Decision",
        ],
        [
            [
                n,
                _kind(f),
                VERDICT_SHORT.get(f.get("verdict") or "", f.get("verdict")),
                " / ".join(_pipes(f, utility=False)),
                quantity(f.get("measured_m"), "m", 3),
                quantity(f.get("required_m"), "m", 3),
                quantity(f.get("uncertainty_m"), "m", 3),
                STATUS_LABELS.get(f.get("status") or "open", ""),
            ]
            for n, f in enumerate(findings, 1)
        ],
        widths=(5, 17, 14, 24, 12, 12, 10, 14),
        size=8.5,
        emphasis=[
            f.get("verdict") == "violation" and f.get("status") != "accepted" for f in findings
        ],
    )
    _unchecked(doc, findings)
    extras = proposal_extras(proposal) if pictures else []
    for n, f in enumerate(findings, 1):
        _finding(doc, engine, n, f, extras, pictures)


def _finding(
    doc: Document, engine: sa.Engine, n: int, f: Mapping, extras: list, pictures: bool
) -> None:
    rule, clause = _rule(f)
    verdict = f.get("verdict") or "violation"
    where = f"E {f['x']:.2f}, N {f['y']:.2f}" + ("" if f.get("z") is None else f", z {f['z']:.2f}")
    doc.heading(f"{n}. {_kind(f)} · {VERDICT_SHORT.get(verdict, verdict)}", level=2)
    doc.key_values(
        [
            ("管线 Pipes", " / ".join(_pipes(f))),
            ("判定 Verdict", VERDICT_LABELS.get(verdict, verdict)),
            *_rule_lines(f),
            ("规则 Rule", rule),
            ("条款 Clause", clause),
            ("实测 Measured", quantity(f.get("measured_m"), "m", 3)),
            ("要求 Required", quantity(f.get("required_m"), "m", 3)),
            ("不确定度 Uncertainty", "± " + quantity(f.get("uncertainty_m"), "m", 3)),
            ("差值 Shortfall", quantity(f.get("shortfall_m"), "m", 3)),
            ("位置 Location", where),
            (
                "决定 Decision",
                STATUS_LABELS.get(f.get("status") or "open", f.get("status"))
                + (
                    f" · {_who(f.get('decided_by'), f.get('decided_at'))}"
                    if f.get("decided_by")
                    else ""
                ),
            ),
            ("备注 Note", f.get("note") or "-"),
            ("编号 Key", f["key"]),
        ],
        key_width_mm=45,
    )
    if pictures:
        pic = finding_picture(engine, f, extra=extras, size=PICTURE_SIZE)
        doc.picture(
            pic.png, width_mm=_PICTURE_MM, caption=f"发现项 {n} 三维视图 3D view of finding {n}"
        )


def _pipes(f: Mapping, *, utility: bool = True) -> list[str]:
    """The pipes of a finding: id (utility size), or id size."""
    sizes = list(f.get("sizes") or []) + [""] * len(f["ids"])
    utils = list(f.get("utilities") or []) + [""] * len(f["ids"])
    return [f"{i} ({u} {z})".replace(" )", ")").replace("( ", "(") if utility else f"{i} {z}".strip()
            for i, u, z in zip(f["ids"], utils, sizes, strict=False)]


def _rule_lines(f: Mapping) -> list[tuple[str, str]]:
    """Every rule a pair breaks, when it breaks more than one."""
    rules = f.get("rules") or []
    if len(rules) < 2:
        return []
    return [(f"违反规则 Rule {k}", f"{_kind(r)} · {VERDICT_SHORT.get(r.get('verdict') or '', '')} · "
             f"{r.get('rule') or '-'} {r.get('clause') or ''} · {quantity(r.get('measured_m'), 'm', 3)}"
             + ("" if r.get("required_m") is None else f" / {quantity(r.get('required_m'), 'm', 3)}"))
            for k, r in enumerate(rules, 1)]


def _unchecked(doc: Document, findings: Sequence[Mapping]) -> None:
    """The pairs no clearance rule covers, as warning rows naming both pipes."""
    rows = unchecked_pairs(findings)
    if not rows:
        return
    doc.heading("未核查管线对 Pairs no rule covers (无规则: cannot judge)", level=2)
    doc.table(
        ["#", "拟建管线 Proposed pipe", "现状管线 Existing pipe", "净距 Clearance", "实测 Measured"],
        [[n, *[f"{p['id']} ({p['utility']} {p['size']})".replace(" )", ")") for p in r["pipes"][:2]],
          r["clearance"], quantity(r.get("measured_m"), "m", 3)] for n, r in enumerate(rows, 1)],
        widths=(6, 32, 32, 15, 15), size=8.5, emphasis=[True] * len(rows))


def _decisions(doc: Document, d: Mapping) -> None:
    """The proposal's decision, the event log (who did what, when) and lines to sign."""
    doc.heading("决定与记录 Decisions and history")
    rows: list[tuple[str, object]] = [
        ("状态 Status", STATUS_LABELS.get(d.get("status") or "new", d.get("status"))),
        ("决定人 Decided by", _who(d.get("decided_by"), d.get("decided_at"))),
        ("备注 Note", d.get("note") or "-"),
    ]
    if d.get("override_note"):
        rows.append(("越过发现项批准 Approved with override", d["override_note"]))
    doc.key_values(rows)
    events = d.get("events") or []
    if events:
        doc.table(
            ["时间 When", "人员 Who", "操作 Action", "发现项 Finding", "状态 Status", "备注 Note"],
            [
                [
                    local_time(e["at"]) if e.get("at") else "",
                    e.get("by") or "",
                    ACTION_LABELS.get(e.get("action") or "", e.get("action")),
                    e.get("finding_key") or "",
                    f"{e.get('from_status') or ''} → {e.get('to_status') or ''}"
                    if e.get("to_status")
                    else "",
                    (e.get("note") or "")
                    + (
                        f" [管网 {e['network_mark']} · 规则 {e['rules_version']}]"
                        if e.get("network_mark")
                        else ""
                    ),
                ]
                for e in events
            ],
            widths=(17, 11, 18, 16, 16, 30),
            size=8.5,
        )
    else:
        doc.paragraph(
            "未存储的核查: 无决定记录 a check that was not stored has no decisions.", muted=True
        )
    doc.heading("签署 Signatures", level=2)
    doc.key_values(
        [
            ("审核 Checked by", "______________________    日期 Date ____________"),
            ("审批 Approved by", "______________________    日期 Date ____________"),
        ],
        key_width_mm=45,
    )
