"""The proposal check (管线审批): a proposed pipe or excavation against the twin, in one report.

:func:`check_proposal` reads the proposal (GeoJSON through
:func:`analysis.proposal_input.read_proposal`), gathers the existing pipes around it through
the GiST index, and runs the collision, clearance and cover checks on the proposal against
them (:mod:`analysis.clash`, :mod:`analysis.clearance`, :mod:`analysis.cover`). Every finding
is one row of the report: one per pair (proposed pipe, existing pipe), carrying in ``rules``
every rule the pair breaks (a collision and the vertical clearance of the same crossing are
one finding), with a stable ``key`` per pair, the worst ``kind`` and the worst ``verdict``
(:mod:`analysis.accuracy`: ``violation``, or ``uncertain`` where the existing pipe's survey
tolerance cannot decide; the proposal itself is exact; ``no_rule`` (无规则) where no clearance
rule covers a pair within reach: ``unchecked`` lists those pairs by name); cover is one finding
per proposed pipe. The proposal **passes** when there is none.
A cross-section (:mod:`analysis.section`) is cut square to the proposal at its worst place
(the deepest collision, else the largest clearance or cover shortfall, else its middle), with
the proposal drawn dashed among the existing pipes.

Storing a proposal, its review (new -> reviewed -> approved | rejected, or withdrawn) and the
decisions on its findings are :mod:`analysis.proposal_workflow`; the printable page is
:mod:`analysis.proposal_report`.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely
import sqlalchemy as sa

from analysis.clash import collisions
from analysis.clearance import clearances, prepare_clearances, rule_reach_m
from analysis.cover import cover_depths
from analysis.ground import GroundModel
from analysis.network import Network, NetworkRows, read_network_rows
from analysis.pieces import candidate_pairs, combine, finding_key
from analysis.proposal_input import read_proposal
from analysis.rule_catalogue import (
    CHECK_RULES,
    CheckRules,
    check_rules,
    rules_version,
    stored_fingerprints_sql,
)
from analysis.section import CrossSection, ground_points, idw_ground, section_of_network
from twin.db import CHANGE_MARK_SQL, change_mark, twin_srid
from twin.errors import InputError
from twin.settings import TwinSettings

__all__ = [
    "Finding",
    "ProposalReport",
    "check_proposal",
    "check_stamp",
    "group_pairs",
    "unchecked_pairs",
    "merge_networks",
    "FINDING_KINDS",
    "SECTION_HALF_WIDTH_M",
    "SECTION_TITLE",
]

#: The kinds of finding, worst first (the order of the report).
FINDING_KINDS = ("collision", "duplicate", "clearance_vertical", "clearance_horizontal", "cover", "no_rule")
#: Half the width of the cross-section cut at the worst place (m each side of the proposal).
SECTION_HALF_WIDTH_M = 15.0
#: Title of the cross-section drawing at the worst place.
SECTION_TITLE = "Cross-section at the worst place 最不利处横断面"
_KIND_ORDER = {kind: n for n, kind in enumerate(FINDING_KINDS)}
_VERDICT_ORDER = {"violation": 0, "uncertain": 1, "no_rule": 2}


@dataclass
class Finding:
    """One thing wrong with a proposal, with the officer's decision on it."""

    key: str
    kind: str  # collision | duplicate | clearance_vertical | clearance_horizontal | cover | no_rule
    ids: list[str]
    utilities: list[str]
    measured_m: float | None
    required_m: float | None
    shortfall_m: float  # how far from acceptable: overlap for collisions, missing metres otherwise
    x: float
    y: float
    z: float | None
    rule: str
    rule_verified: bool | None
    summary: str
    status: str = "open"
    decided_by: str | None = None
    decided_at: str | None = None
    note: str | None = None
    verdict: str = "violation"  # violation | uncertain | no_rule
    uncertainty_m: float | None = None
    #: Every rule the pair breaks, worst first: kind, rule, clause, measured_m, required_m,
    #: uncertainty_m, shortfall_m, verdict, summary.
    rules: list[dict] = field(default_factory=list)
    #: The pipes' sizes (as ``ids``), e.g. ``DN300``.
    sizes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        """JSON-ready fields."""
        d = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}
        d["rules"] = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}
                      for r in self.rules]
        return d


@dataclass
class ProposalReport:
    """The result of a proposal check (and, when stored, its status and decisions)."""

    name: str
    utility: str
    size: str
    length_m: float
    findings: list[Finding]
    section: CrossSection | None
    candidates: int
    timings_s: dict[str, float] = field(default_factory=dict)
    unruled: dict[str, int] = field(default_factory=dict)
    checked_at: str = field(default_factory=lambda: dt.datetime.now().astimezone().isoformat(timespec="seconds"))
    proposal_id: int | None = None
    status: str = "new"
    version: int = 1
    created_by: str | None = None
    created_at: str | None = None
    decided_by: str | None = None
    decided_at: str | None = None
    note: str | None = None
    override_note: str | None = None
    resolved: list[dict] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    #: What the check was made against: network change mark and rule-table version (the workflow's).
    stamp: dict | None = None
    #: A re-check's differences from the check before (the workflow's ``check_changes``).
    changes: dict | None = None

    @property
    def passed(self) -> bool:
        """True when the check found nothing."""
        return not self.findings

    @property
    def open_findings(self) -> list[Finding]:
        """Findings not accepted by an officer."""
        return [f for f in self.findings if f.status != "accepted"]

    def counts(self) -> dict[str, int]:
        """Findings per kind."""
        out: dict[str, int] = {}
        for f in self.findings:
            out[f.kind] = out.get(f.kind, 0) + 1
        return out

    def verdicts(self) -> dict[str, int]:
        """Findings per verdict: violation, uncertain (依探测精度无法判定), no_rule (无规则)."""
        out = dict.fromkeys(("violation", "uncertain", "no_rule"), 0)
        for f in self.findings:
            out[f.verdict] = out.get(f.verdict, 0) + 1
        return out

    def unchecked(self) -> list[dict]:
        """The pairs no clearance rule covers (无规则), each naming both pipes (id, utility, size)."""
        return unchecked_pairs(f.as_dict() for f in self.findings)

    def as_dict(self, *, with_svg: bool = False) -> dict:
        """JSON-ready report (the section as data; its SVG too with ``with_svg``)."""
        d = {
            "kind": "proposal_check",
            "proposal_id": self.proposal_id,
            "name": self.name,
            "version": self.version,
            "status": self.status,
            "result": "pass" if self.passed else "fail",
            "passed": self.passed,
            "utility": self.utility,
            "size": self.size,
            "length_m": round(self.length_m, 3),
            "checked_at": self.checked_at,
            "counts": self.counts(),
            "verdicts": self.verdicts(),
            "open_findings": len(self.open_findings),
            "candidates": self.candidates,
            "unruled_pairs": self.unruled,
            "unchecked": self.unchecked(),
            "findings": [f.as_dict() for f in self.findings],
            "resolved": self.resolved,
            "section": self.section.as_dict() if self.section is not None else None,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "decided_by": self.decided_by,
            "decided_at": self.decided_at,
            "note": self.note,
            "override_note": self.override_note,
            "events": self.events,
            "stamp": self.stamp,
            "changes": self.changes,
            "timings_s": self.timings_s,
        }
        if with_svg and self.section is not None:
            d["section_svg"] = self.section.to_svg(title=SECTION_TITLE)
        return d


# -- the check --------------------------------------------------------------------------------
def merge_networks(a: Network, b: Network) -> Network:
    """One network holding the segments and nodes of both (e.g. the existing pipes and a proposal)."""
    segs = pd.concat([a.segments, b.segments], ignore_index=True)
    nodes = pd.concat([a.nodes, b.nodes], ignore_index=True)
    offsets = np.r_[a.offsets[:-1], b.offsets + a.offsets[-1]].astype(np.int64)
    return Network(segs, nodes, np.vstack([a.node_xyz, b.node_xyz]), np.vstack([a.vertices, b.vertices]), offsets)


def check_proposal(
    engine: sa.Engine,
    source: str | Path | Mapping[str, Any],
    settings: TwinSettings,
    *,
    name: str | None = None,
    proposal: Network | None = None,
) -> ProposalReport:
    """Check a proposal (GeoJSON path or dict, or an already read ``proposal``) against the twin."""
    with engine.connect() as conn:  # one connection for every query of the check
        return _check_proposal(conn, source, settings, name=name, proposal=proposal)


def _check_proposal(conn: sa.Connection, source: str | Path | Mapping[str, Any], settings: TwinSettings, *,
                    name: str | None, proposal: Network | None) -> ProposalReport:
    t0 = time.perf_counter()
    # one query before the reads (a change during the check is seen): the stamp, the SRID for
    # every query of the check, and the rule tables (parsed once per process and content)
    stamp, srid, rules = _check_context(conn, settings)
    prop = proposal if proposal is not None else read_proposal(source, settings, engine=conn, srid=srid)
    if not len(prop.segments):
        raise InputError("the proposal has no pipe or excavation", zh="方案中没有管线或开挖")
    t1 = time.perf_counter()
    arrays = rules.clearance_arrays  # the table's columns, read once per process
    margin = rule_reach_m(arrays) + 2.0 if len(rules.clearance) else 5.0
    around, lines, check_m = _read_around(conn, prop, margin, srid)
    existing = around.near(lines, check_m)
    t2 = time.perf_counter()
    prop_ids = set(_ids(prop.segments))
    # one set of pieces and one candidate search (wide enough for clearance) for both checks,
    # as in the whole-network scan: collision finds the same clashes among the wider pairs
    pieces = combine(existing, prop)
    prepared = prepare_clearances(pieces, arrays)
    pairs = candidate_pairs(pieces, margin_m=prepared.margins)
    clash = collisions(existing, prop, pieces=pieces, pairs=pairs)
    clear = clearances(existing, prop, pieces=pieces, pairs=pairs, prepared=prepared)
    ground = GroundModel.from_network(existing, prop) if len(existing.nodes) else None
    cover = (cover_depths(existing, prop, rules=rules.cover_rules, settings=settings, ground=ground)
             if ground is not None else None)
    t3 = time.perf_counter()
    findings = group_pairs(_findings(clash, clear, cover, prop_ids), prop_ids,
                           _sizes(existing.segments, prop.segments))
    findings.sort(key=lambda f: (_KIND_ORDER.get(f.kind, 9), _VERDICT_ORDER.get(f.verdict, 9), -f.shortfall_m, f.key))
    section = _worst_section(conn, prop, existing, findings, around, srid)
    t4 = time.perf_counter()
    segs = prop.segments
    report = ProposalReport(
        name=name or _default_name(source, segs),
        utility=", ".join(sorted(set(_ids(segs, "utility")))),
        size=", ".join(dict.fromkeys(_texts(segs["size_text"]))),
        length_m=float(segs["length_m"].sum()),
        findings=findings, section=section, candidates=len(existing.segments),
        unruled=dict(clear.unruled), stamp=stamp,
        timings_s={"read": round(t1 - t0, 4), "candidates": round(t2 - t1, 4), "checks": round(t3 - t2, 4),
                   "section": round(t4 - t3, 4), "total": round(t4 - t0, 4)},
    )
    return report


def check_stamp(db: sa.Engine | sa.Connection, settings: TwinSettings) -> dict:
    """What a check is made against: the network's change mark (:func:`twin.db.change_mark`) and
    the version of the rule tables in effect (:func:`analysis.rule_catalogue.rules_version`)."""
    if isinstance(db, sa.Engine):
        with db.connect() as conn:
            return check_stamp(conn, settings)
    rules = rules_version(db, settings)
    return {"network_mark": change_mark(db), "rules_version": rules["version"],
            "rules": rules["tables"], "at": dt.datetime.now().astimezone().isoformat(timespec="seconds")}


#: The network's change mark, the SRID and the stored check tables' fingerprints in one round
#: trip (one row without a stored table; one per stored table otherwise).
_CONTEXT_SQL = (f"SELECT {CHANGE_MARK_SQL} AS mark, (SELECT value FROM twin_meta WHERE key = 'srid') AS srid, "
                f"{stored_fingerprints_sql('r')} FROM (SELECT 1) AS one "
                "LEFT JOIN rule_table r ON r.name = ANY(:names)")
_CONTEXT_QUERY = sa.text(_CONTEXT_SQL)


def _check_context(conn: sa.Connection, settings: TwinSettings) -> tuple[dict, int, CheckRules]:
    """What a check is made against (as :func:`check_stamp` gives it), the twin's SRID and the
    rule tables, in one query (:func:`analysis.rule_catalogue.check_rules` reads a stored table's
    text only when its content is new to this process)."""
    rows = conn.execute(_CONTEXT_QUERY, {"names": list(CHECK_RULES)}).all()
    stored = {r[2]: tuple(r[3:]) for r in rows if r[2] is not None}
    rules = check_rules(conn, settings, stored)
    stamp = {"network_mark": str(rows[0][0]), "rules_version": rules.version["version"],
             "rules": rules.version["tables"], "at": dt.datetime.now().astimezone().isoformat(timespec="seconds")}
    return stamp, int(rows[0][1]), rules


def _texts(values: pd.Series) -> list[str]:
    """``values.fillna("").astype(str)`` as a list (a proposal's few rows: no pandas pass)."""
    return ["" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in values.tolist()]


def _ids(segments: pd.DataFrame, column: str = "id") -> list[str]:
    """A column of a proposal's few rows as text (``astype(str)``: missing as ``nan``)."""
    return [str(v) for v in segments[column].tolist()]


def _default_name(source: object, segs: pd.DataFrame) -> str:
    if isinstance(source, (str, Path)):
        return Path(source).stem
    if isinstance(source, Mapping):
        props = source.get("properties") or {}
        if props.get("name"):
            return str(props["name"])
    return "proposal " + ", ".join(_ids(segs))


def _findings(clash: Any, clear: Any, cover: Any, prop_ids: set[str]) -> list[Finding]:
    def mine(*ids: str) -> bool:
        return any(i in prop_ids for i in ids)

    # a near miss (apart, but maybe not within tolerance) of a pair clearance judges is that finding
    judged = {frozenset((v.a_id, v.b_id)) for v in clear.findings}
    out = [_clash_finding(c) for c in clash.findings if mine(c.a_id, c.b_id)
           and (c.overlap_m > 0 or frozenset((c.a_id, c.b_id)) not in judged)]
    for v in clear.violations + clear.uncertain:
        if not mine(v.a_id, v.b_id):
            continue
        out.append(Finding(
            key=v.key, kind=f"clearance_{v.kind}", ids=[v.a_id, v.b_id], utilities=[v.a_utility, v.b_utility],
            measured_m=float(v.measured_m), required_m=float(v.required_m), shortfall_m=float(v.shortfall_m),
            x=v.x, y=v.y, z=v.z, rule=f"{v.rule_id}: {v.rule_source}", rule_verified=bool(v.rule_verified),
            summary=f"{v.kind} clearance {v.a_id} ({v.a_utility}) - {v.b_id} ({v.b_utility}) "
                    f"{v.measured_m:.2f} m < {v.required_m:.2f} m" + _unsure(v.verdict, v.uncertainty_m),
            verdict=v.verdict, uncertainty_m=float(v.uncertainty_m),
        ))
    for n in clear.no_rule:
        if not mine(n.a_id, n.b_id):
            continue
        out.append(Finding(
            key=n.key, kind="no_rule", ids=[n.a_id, n.b_id], utilities=[n.a_utility, n.b_utility],
            measured_m=float(n.measured_m), required_m=None, shortfall_m=0.0, x=n.x, y=n.y, z=n.z,
            rule="无规则 no rule covers this pair", rule_verified=None,
            summary=f"no {n.clearance} clearance rule for {n.a_id} ({n.a_class}) - {n.b_id} ({n.b_class}) "
                    f"at {n.measured_m:.2f} m: cannot judge 无规则",
            verdict="no_rule", uncertainty_m=float(n.uncertainty_m),
        ))
    for v in (cover.violations + cover.uncertain if cover is not None else []):
        if v.id not in prop_ids:
            continue
        out.append(Finding(
            key=v.key, kind="cover", ids=[v.id], utilities=[v.utility], measured_m=float(v.cover_m),
            required_m=float(v.required_m), shortfall_m=float(v.required_m - v.cover_m), x=v.x, y=v.y,
            z=v.top_z, rule=f"{v.rule_id}: {v.rule_source}", rule_verified=bool(v.rule_verified),
            summary=f"cover of {v.id} ({v.utility}, {v.location}) {v.cover_m:.2f} m < {v.required_m:.2f} m",
            verdict=v.verdict, uncertainty_m=float(v.uncertainty_m),
        ))
    return out


def group_pairs(findings: list[Finding], prop_ids: set[str], sizes: Mapping[str, str]) -> list[Finding]:
    """One finding per pair (proposed pipe, existing pipe), carrying every rule the pair breaks.

    The finding takes the worst kind's measures (collision before vertical and horizontal
    clearance before no rule), the worst verdict of its rules and a key of its own
    (``finding_key("pair", ids)``: the same pair keeps its key however its rules change); the
    proposed pipe comes first in ``ids``. Cover findings (one pipe) stay one per pipe.

    >>> a = Finding("k1", "collision", ["J1", "P1"], ["JS", "RQ"], 0.1, 0.0, 0.2, 0, 0, 0, "solids", None,
    ...             "overlap", verdict="uncertain")
    >>> b = Finding("k2", "clearance_vertical", ["P1", "J1"], ["RQ", "JS"], 0.0, 0.15, 0.15, 0, 0, 0,
    ...             "V1: GB 50289 4.1.14", True, "gap")
    >>> (f,) = group_pairs([a, b], {"P1"}, {"P1": "DN200"})
    >>> f.kind, f.verdict, f.ids, [r["kind"] for r in f.rules], f.sizes
    ('collision', 'violation', ['P1', 'J1'], ['collision', 'clearance_vertical'], ['DN200', ''])
    """
    groups: dict[tuple[str, ...], list[Finding]] = {}
    for f in findings:
        ids = tuple(sorted(f.ids, key=lambda i: (i not in prop_ids, i)))  # proposed pipe first
        groups.setdefault(ids, []).append(f)
    out = []
    for ids, members in groups.items():
        members.sort(key=lambda f: (_KIND_ORDER.get(f.kind, 9), _VERDICT_ORDER.get(f.verdict, 9), -f.shortfall_m))
        head = members[0]
        order = [head.ids.index(i) for i in ids]
        out.append(Finding(
            key=head.key if len(ids) < 2 else finding_key("pair", ids), kind=head.kind, ids=list(ids),
            utilities=[head.utilities[k] for k in order], measured_m=head.measured_m,
            required_m=head.required_m, shortfall_m=head.shortfall_m, x=head.x, y=head.y, z=head.z,
            rule=head.rule, rule_verified=head.rule_verified, summary="; ".join(f.summary for f in members),
            verdict=min((f.verdict for f in members), key=lambda v: _VERDICT_ORDER.get(v, 9)),
            uncertainty_m=head.uncertainty_m, rules=[_rule_entry(f) for f in members],
            sizes=[str(sizes.get(i) or "") for i in ids],
        ))
    return out


def _rule_entry(f: Finding) -> dict:
    """One rule a finding breaks: ``V007: GB 50289-2016 4.1.14`` is rule V007, clause GB ...."""
    head, sep, tail = f.rule.partition(": ")
    rule, clause = (head, tail) if sep and head and " " not in head else (f.rule, "")
    return {"kind": f.kind, "rule": rule, "clause": clause, "rule_verified": f.rule_verified,
            "measured_m": f.measured_m, "required_m": f.required_m, "uncertainty_m": f.uncertainty_m,
            "shortfall_m": f.shortfall_m, "verdict": f.verdict, "summary": f.summary}


def unchecked_pairs(findings: Iterable[Mapping]) -> list[dict]:
    """The pairs of findings (JSON) that no clearance rule covers (无规则), both pipes named:
    ``{"key", "clearance", "measured_m", "pipes": [{"id", "utility", "size"}, ...]}``."""
    out = []
    for f in findings:
        for r in f.get("rules") or [f]:
            if r.get("verdict") != "no_rule" or len(f.get("ids") or []) < 2:
                continue
            sizes = list(f.get("sizes") or []) + [""] * len(f["ids"])
            out.append({"key": f["key"], "kind": r.get("kind"), "measured_m": r.get("measured_m"),
                        "clearance": "vertical" if str(r.get("summary", "")).startswith("no vertical")
                        else "horizontal",
                        "pipes": [{"id": i, "utility": u, "size": z}
                                  for i, u, z in zip(f["ids"], f.get("utilities") or [], sizes, strict=False)]})
    return out


def _sizes(*segments: pd.DataFrame) -> dict[str, str]:
    """Size text of every pipe of the frames, by id."""
    out: dict[str, str] = {}
    for s in segments:
        if len(s) and "size_text" in s:
            out.update(zip(_ids(s), _texts(s["size_text"]), strict=True))
    return out


def _unsure(verdict: str, uncertainty_m: float) -> str:
    """What a summary adds for a finding the survey's accuracy cannot decide."""
    return f" (± {uncertainty_m:.2f} m: uncertain 依探测精度无法判定)" if verdict == "uncertain" else ""


def _clash_finding(c: Any) -> Finding:
    """A collision, near miss or duplicate of the proposal as a finding."""
    kind = "collision" if c.kind == "hard" else "duplicate"
    if kind == "duplicate":
        summary = f"{c.a_id} duplicates {c.b_id}"
    elif c.overlap_m > 0:
        summary = f"{c.a_id} ({c.a_utility}) and {c.b_id} ({c.b_utility}) overlap by {c.overlap_m:.3f} m"
    else:
        summary = f"{c.a_id} ({c.a_utility}) and {c.b_id} ({c.b_utility}) {-c.overlap_m:.3f} m apart"
    return Finding(
        key=c.key, kind=kind, ids=[c.a_id, c.b_id], utilities=[c.a_utility, c.b_utility],
        measured_m=float(c.measured_m), required_m=0.0, shortfall_m=float(c.overlap_m), x=c.x, y=c.y, z=c.z,
        rule="solids must not overlap", rule_verified=None,
        summary=summary + _unsure(c.verdict, c.uncertainty_m), verdict=c.verdict,
        uncertainty_m=float(c.uncertainty_m),
    )


def _read_around(conn: sa.Connection, prop: Network, margin_m: float,
                 srid: int | None = None) -> tuple[NetworkRows, shapely.Geometry, float]:
    """One read of the live network around a proposal, for its checks and its cross-section.

    The checks judge what :func:`analysis.proposal_input.load_existing_near` gathers: all within
    the proposal's largest half size plus ``margin_m`` of its centrelines (returned: the lines
    and that distance). The read reaches as far as the cross-section at the worst place too
    (:data:`SECTION_HALF_WIDTH_M` beyond the proposal's side), so the section needs no read of
    its own.
    """
    lines = shapely.MultiLineString([prop.vertices[a:b, :2] for a, b in zip(prop.offsets[:-1], prop.offsets[1:],
                                                                             strict=True)])
    reach = np.nanmax(np.hypot(np.nan_to_num(prop.half_width_m), np.nan_to_num(prop.half_height_m)), initial=0.0)
    check_m = float(reach + margin_m)
    section_m = SECTION_HALF_WIDTH_M + float(np.nanmax(prop.half_width_m, initial=0.0)) + 0.05
    return read_network_rows(conn, near=lines, distance_m=max(check_m, section_m), srid=srid), lines, check_m


def _worst_section(conn: sa.Connection, prop: Network, existing: Network, findings: list[Finding],
                   around: NetworkRows, srid: int | None = None) -> CrossSection | None:
    """A section through the proposal's worst place, cutting both the proposal and the pipe involved.

    The place: the first (worst) finding, else the proposal's closest approach to an existing
    pipe, else its middle. The direction: square to the proposal when no other pipe is
    involved or the two run parallel; at a crossing, along the bisector's normal, so both pipes
    are cut at the same angle (45 degrees for a square crossing: both drawn as ellipses 1.41
    times wider than high) instead of one of them running along the section.
    """
    seg, p, q = prop.pieces()
    d = np.hypot(*(q - p)[:, :2].T)
    ok = d > 1e-6
    seg, p, q, d = seg[ok], p[ok], q[ok], d[ok]
    if not len(seg):
        return None
    prop_lines = shapely.linestrings(np.stack([p[:, :2], q[:, :2]], axis=1))
    other: str | None = None
    if findings:
        target = np.array([findings[0].x, findings[0].y])
        prop_ids = set(_ids(prop.segments))
        other = next((i for i in findings[0].ids if i not in prop_ids), None)
    elif len(existing.segments):
        es, ep, eq = existing.pieces()
        ex_lines = shapely.linestrings(np.stack([ep[:, :2], eq[:, :2]], axis=1))
        tree = shapely.STRtree(ex_lines)
        pi, ei = tree.query_nearest(prop_lines, all_matches=False)
        dist = shapely.distance(prop_lines[pi], ex_lines[ei])
        k = int(np.argmin(dist))
        near_pts = shapely.shortest_line(prop_lines[pi[k]], ex_lines[ei[k]])
        target = np.asarray(near_pts.coords[0])
        other = str(existing.segments["id"].iat[int(es[ei[k]])])
    else:
        line = shapely.LineString(prop.vertices[prop.offsets[0]:prop.offsets[1], :2])
        target = np.asarray(line.interpolate(0.5, normalized=True).coords[0])
    dirs = (q - p)[:, :2] / d[:, None]
    t = np.clip(((target - p[:, :2]) * dirs).sum(axis=1) / d, 0, 1)
    foot = p[:, :2] + (t * d)[:, None] * dirs
    k = int(np.argmin(np.hypot(*(foot - target).T)))
    d1 = dirs[k]
    direction = np.array([-d1[1], d1[0]])  # square to the proposal
    if other is not None and other in set(_ids(existing.segments)):
        d2 = _direction_near(existing, other, target)
        if d2 is not None:
            d2 = d2 if d1 @ d2 >= 0 else -d2
            bis = d1 - d2
            if np.hypot(*bis) > math.sin(math.radians(10)):  # not parallel: cut both at the same angle
                direction = bis / np.hypot(*bis)
    half = SECTION_HALF_WIDTH_M + float(np.nanmax(prop.half_width_m))
    a, b = foot[k] - half * direction, foot[k] + half * direction
    # draw west to east (south to north for a north-south cut)
    if (b[0] - a[0]) < -1e-9 or (abs(b[0] - a[0]) <= 1e-9 and b[1] < a[1]):
        a, b = b, a
    line = shapely.LineString([a, b])
    near = around.near(line, 0.01)  # the pipes the line meets, of the check's read
    net = merge_networks(near, prop)
    srid = twin_srid(conn) if srid is None else srid
    gpts = ground_points(conn, line, 60.0, srid=srid)
    ground = idw_ground(gpts if len(gpts) else prop.node_xyz)
    return section_of_network(net, np.array([a, b]), ground=ground, crs=f"EPSG:{srid}")


def _direction_near(net: Network, seg_id: str, target: np.ndarray) -> np.ndarray | None:
    """Plan direction (unit) of a segment's piece nearest to a point."""
    i = int(net.segment_index([seg_id])[0])
    v = net.vertices[net.offsets[i]:net.offsets[i + 1], :2]
    if len(v) < 2:
        return None
    seg = np.diff(v, axis=0)
    length = np.hypot(*seg.T)
    good = length > 1e-6
    if not good.any():
        return None
    mid = (v[:-1] + v[1:]) / 2
    k = int(np.argmin(np.where(good, np.hypot(*(mid - target).T), np.inf)))
    return seg[k] / length[k]
