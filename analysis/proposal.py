"""The proposal check (管线审批): a proposed pipe or excavation against the twin, in one report.

:func:`check_proposal` reads the proposal (GeoJSON through
:func:`analysis.proposal_input.read_proposal`), gathers the existing pipes around it through
the GiST index, and runs the collision, clearance and cover checks on the proposal against
them (:mod:`analysis.clash`, :mod:`analysis.clearance`, :mod:`analysis.cover`). Every finding
is one row of the report with a stable ``key``; the proposal **passes** when there is none.
A cross-section (:mod:`analysis.section`) is cut square to the proposal at its worst place
(the deepest collision, else the largest clearance or cover shortfall, else its middle), with
the proposal drawn dashed among the existing pipes.

Stored proposals (tables ``proposal``, ``proposal_finding``, ``proposal_event`` of migration
0002) carry a status ``new -> reviewed -> approved | rejected`` with who decided and when:

- :func:`submit_proposal` stores and checks a proposal; :func:`recheck_proposal` checks it
  again (the network may have changed) or checks a revised geometry (a new version, status
  back to ``new``). Decisions on findings whose key is unchanged are kept; findings no longer
  found become ``resolved``; new ones are ``open``.
- :func:`decide_finding`: ``accepted`` (tolerable, e.g. with a protective measure),
  ``rejected`` (must be fixed) or back to ``open``.
- :func:`decide_proposal`: ``reviewed``, ``approved`` or ``rejected``. Approving needs the
  proposal reviewed and every current finding accepted; otherwise an explicit override note is
  required and recorded (an officer may sign off against the tool, never silently).
  Approved and rejected are final: a revised geometry starts a new review.

Every check and decision is written to ``proposal_event`` (who, when, from/to status, note).
:func:`report_html` renders a printable page (print stylesheet, embedded SVG, the findings
with their decisions, the event log, signature lines).
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely
import sqlalchemy as sa

from analysis import svg
from analysis.network import Network, load_network
from analysis.section import CrossSection, ground_points, idw_ground, section_of_network
from twin.db import twin_srid
from twin.errors import InputError, NotFound
from twin.settings import TwinSettings

__all__ = [
    "Finding",
    "ProposalReport",
    "check_proposal",
    "submit_proposal",
    "recheck_proposal",
    "decide_finding",
    "decide_proposal",
    "get_proposal",
    "list_proposals",
    "report_html",
    "merge_networks",
    "PROPOSAL_STATUSES",
    "FINDING_STATUSES",
    "SECTION_HALF_WIDTH_M",
]

PROPOSAL_STATUSES = ("new", "reviewed", "approved", "rejected")
FINDING_STATUSES = ("open", "accepted", "rejected", "resolved")
#: Half the width of the cross-section cut at the worst place (m each side of the proposal).
SECTION_HALF_WIDTH_M = 15.0
_KIND_ORDER = {"collision": 0, "duplicate": 1, "clearance_vertical": 2, "clearance_horizontal": 3, "cover": 4}


@dataclass
class Finding:
    """One thing wrong with a proposal, with the officer's decision on it."""

    key: str
    kind: str  # collision | duplicate | clearance_vertical | clearance_horizontal | cover
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

    def as_dict(self) -> dict:
        """JSON-ready fields."""
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


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
            "open_findings": len(self.open_findings),
            "candidates": self.candidates,
            "unruled_pairs": self.unruled,
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
            "timings_s": self.timings_s,
        }
        if with_svg and self.section is not None:
            d["section_svg"] = self.section.to_svg(title="Cross-section at the worst place 最不利处横断面")
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
    from analysis.clash import candidate_pairs, collisions, combine
    from analysis.clearance import clearances, load_clearance_rules
    from analysis.cover import cover_depths, load_cover_rules
    from analysis.ground import GroundModel
    from analysis.proposal_input import load_existing_near, read_proposal

    t0 = time.perf_counter()
    prop = proposal if proposal is not None else read_proposal(source, settings, engine=conn)
    if not len(prop.segments):
        raise InputError("the proposal has no pipe or excavation")
    t1 = time.perf_counter()
    rules = load_clearance_rules(None, settings, db=conn)
    margin = float(rules["clearance_m"].max()) + 2.0 if len(rules) else 5.0
    existing = load_existing_near(conn, prop, margin_m=margin)
    t2 = time.perf_counter()
    prop_ids = set(prop.segments["id"].astype(str))
    # one set of pieces and one candidate search (wide enough for clearance) for both checks,
    # as in the whole-network scan: collision finds the same clashes among the wider pairs
    pieces = combine(existing, prop)
    pairs = candidate_pairs(pieces, margin_m=float(rules["clearance_m"].max()) if len(rules) else 0.0)
    clash = collisions(existing, prop, pieces=pieces, pairs=pairs)
    clear = clearances(existing, prop, rules=rules, pieces=pieces, pairs=pairs)
    ground = GroundModel.from_network(existing, prop) if len(existing.nodes) else None
    cover = (cover_depths(existing, prop, rules=load_cover_rules(None, settings, db=conn), settings=settings,
                          ground=ground) if ground is not None else None)
    t3 = time.perf_counter()
    findings = _findings(clash, clear, cover, prop_ids)
    findings.sort(key=lambda f: (_KIND_ORDER.get(f.kind, 9), -f.shortfall_m, f.key))
    section = _worst_section(conn, prop, existing, findings)
    t4 = time.perf_counter()
    segs = prop.segments
    report = ProposalReport(
        name=name or _default_name(source, segs),
        utility=", ".join(sorted(set(segs["utility"].astype(str)))),
        size=", ".join(dict.fromkeys(segs["size_text"].fillna("").astype(str))),
        length_m=float(segs["length_m"].sum()),
        findings=findings, section=section, candidates=len(existing.segments),
        unruled=dict(clear.unruled),
        timings_s={"read": round(t1 - t0, 4), "candidates": round(t2 - t1, 4), "checks": round(t3 - t2, 4),
                   "section": round(t4 - t3, 4), "total": round(t4 - t0, 4)},
    )
    return report


def _default_name(source: object, segs: pd.DataFrame) -> str:
    if isinstance(source, (str, Path)):
        return Path(source).stem
    if isinstance(source, Mapping):
        props = source.get("properties") or {}
        if props.get("name"):
            return str(props["name"])
    return "proposal " + ", ".join(segs["id"].astype(str))


def _findings(clash: Any, clear: Any, cover: Any, prop_ids: set[str]) -> list[Finding]:
    out: list[Finding] = []
    for c in clash.clashes:
        if c.a_id not in prop_ids and c.b_id not in prop_ids:
            continue
        kind = "collision" if c.kind == "hard" else "duplicate"
        out.append(Finding(
            key=c.key, kind=kind, ids=[c.a_id, c.b_id], utilities=[c.a_utility, c.b_utility], measured_m=None,
            required_m=None, shortfall_m=float(c.overlap_m), x=c.x, y=c.y, z=c.z, rule="solids must not overlap",
            rule_verified=None,
            summary=f"{c.a_id} ({c.a_utility}) and {c.b_id} ({c.b_utility}) overlap by {c.overlap_m:.3f} m"
            if kind == "collision" else f"{c.a_id} duplicates {c.b_id}",
        ))
    for v in clear.violations:
        if v.a_id not in prop_ids and v.b_id not in prop_ids:
            continue
        out.append(Finding(
            key=v.key, kind=f"clearance_{v.kind}", ids=[v.a_id, v.b_id], utilities=[v.a_utility, v.b_utility],
            measured_m=float(v.measured_m), required_m=float(v.required_m), shortfall_m=float(v.shortfall_m),
            x=v.x, y=v.y, z=v.z, rule=f"{v.rule_id}: {v.rule_source}", rule_verified=bool(v.rule_verified),
            summary=f"{v.kind} clearance {v.a_id} ({v.a_utility}) - {v.b_id} ({v.b_utility}) "
                    f"{v.measured_m:.2f} m < {v.required_m:.2f} m",
        ))
    for v in (cover.violations if cover is not None else []):
        if v.id not in prop_ids:
            continue
        out.append(Finding(
            key=v.key, kind="cover", ids=[v.id], utilities=[v.utility], measured_m=float(v.cover_m),
            required_m=float(v.required_m), shortfall_m=float(v.required_m - v.cover_m), x=v.x, y=v.y,
            z=v.top_z, rule=f"{v.rule_id}: {v.rule_source}", rule_verified=bool(v.rule_verified),
            summary=f"cover of {v.id} ({v.utility}, {v.location}) {v.cover_m:.2f} m < {v.required_m:.2f} m",
        ))
    return out


def _worst_section(conn: sa.Connection, prop: Network, existing: Network,
                   findings: list[Finding]) -> CrossSection | None:
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
        prop_ids = set(prop.segments["id"].astype(str))
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
    if other is not None and other in set(existing.segments["id"].astype(str)):
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
    near = load_network(conn, near=line, distance_m=0.01)
    net = merge_networks(near, prop)
    gpts = ground_points(conn, line, 60.0)
    ground = idw_ground(gpts if len(gpts) else prop.node_xyz)
    srid = twin_srid(conn)
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


# -- storage ----------------------------------------------------------------------------------
def _user(settings: TwinSettings, user: str | None) -> str:
    return user or settings.user or getpass.getuser()


def _geojson(source: str | Path | Mapping[str, Any]) -> dict:
    if isinstance(source, Mapping):
        return json.loads(json.dumps(source))
    try:
        return json.loads(Path(source).read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the proposal {source}: {exc}") from None


def _event(conn: sa.Connection, pid: int, by: str, action: str, *, key: str | None = None,
           from_status: str | None = None, to_status: str | None = None, note: str | None = None) -> None:
    conn.execute(sa.text(
        "INSERT INTO proposal_event (proposal_id, by, action, finding_key, from_status, to_status, note) "
        "VALUES (:p, :by, :a, :k, :f, :t, :n)"),
        {"p": pid, "by": by, "a": action, "k": key, "f": from_status, "t": to_status, "n": note})


def _store_findings(conn: sa.Connection, pid: int, report: ProposalReport, by: str) -> None:
    """Upsert this run's findings (keeping decisions), resolve the vanished ones, fill in decisions."""
    keys = [f.key for f in report.findings]
    if report.findings:
        conn.execute(sa.text(
            "INSERT INTO proposal_finding (proposal_id, key, kind, summary, detail) "
            "VALUES (:p, :k, :kind, :s, CAST(:d AS jsonb)) "
            "ON CONFLICT (proposal_id, key) DO UPDATE SET summary = EXCLUDED.summary, detail = EXCLUDED.detail, "
            "last_seen_at = now(), status = CASE WHEN proposal_finding.status = 'resolved' THEN 'open' "
            "ELSE proposal_finding.status END"),
            [{"p": pid, "k": f.key, "kind": f.kind, "s": f.summary, "d": json.dumps(f.as_dict(), default=str)}
             for f in report.findings])
    gone = conn.execute(sa.text(
        "UPDATE proposal_finding SET status = 'resolved', decided_by = :by, decided_at = now(), "
        "note = 'no longer found by the check' "
        "WHERE proposal_id = :p AND status <> 'resolved' AND NOT (key = ANY(:keys)) RETURNING key"),
        {"p": pid, "keys": keys, "by": by}).scalars().all()
    for k in gone:
        _event(conn, pid, by, "finding resolved", key=k, to_status="resolved")
    _fill_decisions(conn, pid, report)


def _fill_decisions(conn: sa.Connection, pid: int, report: ProposalReport) -> None:
    rows = conn.execute(sa.text(
        "SELECT key, kind, status, decided_by, decided_at, note, summary FROM proposal_finding "
        "WHERE proposal_id = :p"), {"p": pid}).mappings().all()
    by_key = {r["key"]: r for r in rows}
    for f in report.findings:
        r = by_key.get(f.key)
        if r is not None:
            f.status, f.decided_by, f.note = r["status"], r["decided_by"], r["note"]
            f.decided_at = r["decided_at"].isoformat(timespec="seconds") if r["decided_at"] else None
    current = {f.key for f in report.findings}
    report.resolved = [{"key": r["key"], "kind": r["kind"], "summary": r["summary"], "status": r["status"]}
                       for r in rows if r["key"] not in current]


def _load_meta(conn: sa.Connection, pid: int, report: ProposalReport) -> None:
    row = conn.execute(sa.text("SELECT * FROM proposal WHERE id = :p"), {"p": pid}).mappings().one()
    report.proposal_id = pid
    report.name, report.status, report.version = row["name"], row["status"], row["version"]
    report.created_by = row["created_by"]
    report.created_at = row["created_at"].isoformat(timespec="seconds")
    report.decided_by = row["decided_by"]
    report.decided_at = row["decided_at"].isoformat(timespec="seconds") if row["decided_at"] else None
    report.note, report.override_note = row["note"], row["override_note"]
    report.events = [
        {**dict(e), "at": e["at"].isoformat(timespec="seconds")}
        for e in conn.execute(sa.text(
            "SELECT at, by, action, finding_key, from_status, to_status, note FROM proposal_event "
            "WHERE proposal_id = :p ORDER BY at, id"), {"p": pid}).mappings().all()
    ]


def _save_report(conn: sa.Connection, pid: int, report: ProposalReport) -> None:
    conn.execute(sa.text(
        "UPDATE proposal SET report = CAST(:r AS jsonb), passed = :ok, checked_at = now() WHERE id = :p"),
        {"r": json.dumps(report.as_dict(), default=str), "ok": report.passed, "p": pid})


def submit_proposal(
    engine: sa.Engine,
    source: str | Path | Mapping[str, Any],
    settings: TwinSettings,
    *,
    name: str | None = None,
    user: str | None = None,
) -> ProposalReport:
    """Store a proposal (status ``new``), check it and record its findings."""
    doc = _geojson(source)
    report = check_proposal(engine, doc, settings, name=name or (Path(source).stem if isinstance(
        source, (str, Path)) else None))
    by = _user(settings, user)
    with engine.begin() as conn:
        pid = int(conn.execute(sa.text(
            "INSERT INTO proposal (name, geojson, utility, created_by) VALUES (:n, CAST(:g AS jsonb), :u, :by) "
            "RETURNING id"), {"n": report.name, "g": json.dumps(doc), "u": report.utility, "by": by}).scalar())
        _event(conn, pid, by, "submitted", to_status="new", note=f"{len(report.findings)} findings")
        _store_findings(conn, pid, report, by)
        _load_meta(conn, pid, report)
        _save_report(conn, pid, report)
    return report


def recheck_proposal(
    engine: sa.Engine,
    proposal_id: int,
    settings: TwinSettings,
    *,
    source: str | Path | Mapping[str, Any] | None = None,
    user: str | None = None,
) -> ProposalReport:
    """Check a stored proposal again, or a revised geometry of it; decisions on unchanged findings stay."""
    by = _user(settings, user)
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT name, geojson, status, version FROM proposal WHERE id = :p"),
                           {"p": proposal_id}).mappings().first()
    if row is None:
        raise NotFound(f"no proposal {proposal_id}")
    if source is not None and row["status"] == "approved":
        raise InputError(f"proposal {proposal_id} is approved; a revised geometry is a new proposal")
    doc = _geojson(source) if source is not None else row["geojson"]
    report = check_proposal(engine, doc, settings, name=row["name"])
    with engine.begin() as conn:
        if source is not None:
            conn.execute(sa.text(
                "UPDATE proposal SET geojson = CAST(:g AS jsonb), version = version + 1, status = 'new', "
                "decided_by = NULL, decided_at = NULL, override_note = NULL WHERE id = :p"),
                {"g": json.dumps(doc), "p": proposal_id})
            _event(conn, proposal_id, by, "revised", from_status=row["status"], to_status="new",
                   note=f"version {row['version'] + 1}; {len(report.findings)} findings")
        else:
            _event(conn, proposal_id, by, "rechecked", note=f"{len(report.findings)} findings")
        _store_findings(conn, proposal_id, report, by)
        _load_meta(conn, proposal_id, report)
        _save_report(conn, proposal_id, report)
    return report


def get_proposal(engine: sa.Engine, proposal_id: int) -> dict:
    """The stored proposal: its last report with the current decisions and the event log."""
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT * FROM proposal WHERE id = :p"), {"p": proposal_id}).mappings().first()
        if row is None:
            raise NotFound(f"no proposal {proposal_id}")
        report = dict(row["report"])
        decisions = {r["key"]: r for r in conn.execute(sa.text(
            "SELECT key, status, decided_by, decided_at, note FROM proposal_finding WHERE proposal_id = :p"),
            {"p": proposal_id}).mappings().all()}
        for f in report.get("findings", []):
            r = decisions.get(f["key"])
            if r is not None:
                f.update(status=r["status"], decided_by=r["decided_by"], note=r["note"],
                         decided_at=r["decided_at"].isoformat(timespec="seconds") if r["decided_at"] else None)
        report["open_findings"] = sum(1 for f in report.get("findings", []) if f["status"] != "accepted")
        meta = ProposalReport("", "", "", 0.0, [], None, 0)
        _load_meta(conn, proposal_id, meta)
    report.update(proposal_id=proposal_id, name=meta.name, status=meta.status, version=meta.version,
                  created_by=meta.created_by, created_at=meta.created_at, decided_by=meta.decided_by,
                  decided_at=meta.decided_at, note=meta.note, override_note=meta.override_note, events=meta.events)
    return report


def list_proposals(engine: sa.Engine) -> list[dict]:
    """Every stored proposal: id, name, status, pass/fail, open findings, who created and decided."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT p.id, p.name, p.utility, p.status, p.passed, p.version, p.created_by, p.created_at, "
            "p.decided_by, p.decided_at, count(f.key) FILTER (WHERE f.status IN ('open', 'rejected')) AS open "
            "FROM proposal p LEFT JOIN proposal_finding f ON f.proposal_id = p.id "
            "GROUP BY p.id ORDER BY p.id")).mappings().all()
    return [{k: (v.isoformat(timespec="seconds") if isinstance(v, dt.datetime) else v) for k, v in r.items()}
            for r in rows]


def decide_finding(engine: sa.Engine, proposal_id: int, key: str, status: str, settings: TwinSettings, *,
                   note: str | None = None, user: str | None = None) -> dict:
    """Record an officer's decision on one finding: ``accepted``, ``rejected`` or ``open``."""
    if status not in ("accepted", "rejected", "open"):
        raise InputError(f"a finding is accepted, rejected or open, not {status!r}")
    by = _user(settings, user)
    with engine.begin() as conn:
        prop = conn.execute(sa.text("SELECT status FROM proposal WHERE id = :p FOR UPDATE"),
                            {"p": proposal_id}).scalar()
        if prop is None:
            raise NotFound(f"no proposal {proposal_id}")
        if prop in ("approved", "rejected"):
            raise InputError(f"proposal {proposal_id} is {prop}: its findings can no longer be decided")
        old = conn.execute(sa.text("SELECT status FROM proposal_finding WHERE proposal_id = :p AND key = :k"),
                           {"p": proposal_id, "k": key}).scalar()
        if old is None:
            raise NotFound(f"proposal {proposal_id} has no finding {key!r}")
        if old == "resolved":
            raise InputError(f"finding {key} is resolved (no longer found); nothing to decide")
        conn.execute(sa.text(
            "UPDATE proposal_finding SET status = :s, decided_by = :by, decided_at = now(), note = :n "
            "WHERE proposal_id = :p AND key = :k"), {"s": status, "by": by, "n": note, "p": proposal_id, "k": key})
        _event(conn, proposal_id, by, "finding decided", key=key, from_status=old, to_status=status, note=note)
    return get_proposal(engine, proposal_id)


_TRANSITIONS = {"new": {"reviewed", "rejected"}, "reviewed": {"approved", "rejected", "reviewed"},
                "approved": set(), "rejected": set()}


def decide_proposal(engine: sa.Engine, proposal_id: int, status: str, settings: TwinSettings, *,
                    note: str | None = None, override: str | None = None, user: str | None = None) -> dict:
    """Move a proposal to ``reviewed``, ``approved`` or ``rejected``, recording who and when.

    Approval needs status ``reviewed`` and every current finding accepted, or an ``override``
    note saying why the officer approves regardless.
    """
    if status not in PROPOSAL_STATUSES or status == "new":
        raise InputError(f"a proposal is decided reviewed, approved or rejected, not {status!r}")
    by = _user(settings, user)
    with engine.begin() as conn:
        old = conn.execute(sa.text("SELECT status FROM proposal WHERE id = :p FOR UPDATE"),
                           {"p": proposal_id}).scalar()
        if old is None:
            raise NotFound(f"no proposal {proposal_id}")
        if status not in _TRANSITIONS[old]:
            raise InputError(f"proposal {proposal_id} is {old}; it cannot become {status} "
                             "(new -> reviewed -> approved | rejected)")
        override = (override or "").strip() or None
        if status == "approved":
            pending = conn.execute(sa.text(
                "SELECT key, status FROM proposal_finding WHERE proposal_id = :p AND status IN ('open', 'rejected') "
                "ORDER BY key"), {"p": proposal_id}).all()
            if pending and override is None:
                raise InputError(
                    f"proposal {proposal_id} has {len(pending)} findings not accepted "
                    f"({', '.join(f'{k} {s}' for k, s in pending[:5])}); accept them or approve with an override note")
        conn.execute(sa.text(
            "UPDATE proposal SET status = :s, decided_by = :by, decided_at = now(), note = coalesce(:n, note), "
            "override_note = CASE WHEN :s = 'approved' THEN :o ELSE override_note END WHERE id = :p"),
            {"s": status, "by": by, "n": note, "o": override, "p": proposal_id})
        _event(conn, proposal_id, by, "approved with override" if status == "approved" and override else "decided",
               from_status=old, to_status=status, note=override or note)
    return get_proposal(engine, proposal_id)


# -- the printable report ---------------------------------------------------------------------
_CSS = """
body{font-family:'DejaVu Sans','Noto Sans CJK SC',Arial,sans-serif;margin:24px;color:#222;font-size:13px}
h1{font-size:20px;margin:0 0 4px}h2{font-size:15px;margin:22px 0 6px;border-bottom:1px solid #999}
table{border-collapse:collapse;width:100%}th,td{border:1px solid #bbb;padding:3px 6px;text-align:left;
vertical-align:top}th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:2px 8px;border-radius:3px;font-weight:bold;color:#fff}
.pass{background:#2e7d32}.fail{background:#c62828}.st-new{background:#757575}.st-reviewed{background:#1565c0}
.st-approved{background:#2e7d32}.st-rejected{background:#c62828}.f-open{color:#c62828;font-weight:bold}
.f-accepted{color:#2e7d32}.f-rejected{color:#c62828}.f-resolved{color:#777}
.meta td{border:none;padding:1px 12px 1px 0}.drawing svg{max-width:100%;height:auto;border:1px solid #ccc}
.sign{margin-top:36px;display:flex;gap:60px}.sign div{border-top:1px solid #000;width:220px;padding-top:4px}
@media print{@page{size:A4 landscape;margin:12mm}body{margin:0;font-size:10pt}
.badge{border:1px solid #000;color:#000!important;background:none!important}
tr,.drawing{page-break-inside:avoid}h2{page-break-after:avoid}.noprint{display:none}}
"""


def report_html(report: ProposalReport | dict) -> str:
    """A printable HTML page of a proposal report (a :class:`ProposalReport` or a stored report dict)."""
    if isinstance(report, ProposalReport):
        d = report.as_dict(with_svg=True)
    else:
        d = dict(report)
        if "section_svg" not in d and d.get("section"):
            d["section_svg"] = _section_from_dict(d["section"]).to_svg(
                title="Cross-section at the worst place 最不利处横断面")
    e = svg.esc
    result = "pass" if d.get("passed") else "fail"
    status = d.get("status") or "new"
    rows = [
        ("proposal", f"{d.get('proposal_id') if d.get('proposal_id') is not None else '(not stored)'} · "
                     f"version {d.get('version', 1)}"),
        ("utility / size", f"{d.get('utility')} · {d.get('size')} · {d.get('length_m', 0):.2f} m"),
        ("checked", d.get("checked_at") or ""),
        ("submitted by", f"{d.get('created_by') or '—'} {d.get('created_at') or ''}"),
        ("decided by", f"{d.get('decided_by') or '—'} {d.get('decided_at') or ''}"),
        ("note", d.get("note") or "—"),
    ]
    if d.get("override_note"):
        rows.append(("approved with override", d["override_note"]))
    meta = "".join(f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in rows)
    counts = ", ".join(f"{k}: {v}" for k, v in (d.get("counts") or {}).items()) or "none"
    head = ("<tr><th>#</th><th>kind</th><th>pipes</th><th>measured (m)</th><th>required (m)</th>"
            "<th>shortfall / overlap (m)</th><th>location (E, N, z)</th><th>rule</th><th>decision</th>"
            "<th>by / when</th><th>note</th><th>key</th></tr>")
    body = []
    for n, f in enumerate(d.get("findings") or [], 1):
        num = lambda v: "" if v is None else f"{v:.3f}"  # noqa: E731
        where = f"{f['x']:.2f}, {f['y']:.2f}" + ("" if f.get("z") is None else f", {f['z']:.2f}")
        verified = "" if f.get("rule_verified") in (None, True) else " (unverified)"
        body.append(
            f"<tr class='finding' data-key='{e(f['key'])}'><td class='num'>{n}</td><td>{e(f['kind'])}</td>"
            f"<td>{e(' / '.join(f'{i} ({u})' for i, u in zip(f['ids'], f['utilities'], strict=False)))}</td>"
            f"<td class='num'>{num(f.get('measured_m'))}</td><td class='num'>{num(f.get('required_m'))}</td>"
            f"<td class='num'>{num(f.get('shortfall_m'))}</td><td>{e(where)}</td>"
            f"<td>{e(f.get('rule') or '')}{e(verified)}</td>"
            f"<td class='f-{e(f.get('status', 'open'))}'>{e(f.get('status', 'open'))}</td>"
            f"<td>{e(f.get('decided_by') or '')} {e(f.get('decided_at') or '')}</td><td>{e(f.get('note') or '')}</td>"
            f"<td><code>{e(f['key'])}</code></td></tr>")
    findings = (f"<table class='findings'>{head}{''.join(body)}</table>" if body
                else "<p>No collision, clearance or cover finding: the proposal passes the checks.</p>")
    resolved = ""
    if d.get("resolved"):
        resolved = ("<h2>Findings of earlier checks no longer found</h2><table><tr><th>key</th><th>kind</th>"
                    "<th>summary</th><th>status</th></tr>" + "".join(
                        f"<tr><td><code>{e(r['key'])}</code></td><td>{e(r['kind'])}</td><td>{e(r['summary'] or '')}"
                        f"</td><td class='f-{e(r['status'])}'>{e(r['status'])}</td></tr>" for r in d["resolved"])
                    + "</table>")
    drawing = ""
    if d.get("section_svg"):
        sec = d.get("section") or {}
        drawing = (f"<h2>Cross-section at the worst place</h2><p>{len(sec.get('pipes', []))} pipes cut; "
                   "the proposal is drawn dashed.</p>"
                   f"<div class='drawing'>{d['section_svg']}</div>")
    events = ""
    if d.get("events"):
        events = ("<h2>History</h2><table><tr><th>when</th><th>who</th><th>action</th><th>finding</th>"
                  "<th>from → to</th><th>note</th></tr>" + "".join(
                      f"<tr><td>{e(v['at'])}</td><td>{e(v['by'])}</td><td>{e(v['action'])}</td>"
                      f"<td>{e(v.get('finding_key') or '')}</td>"
                      f"<td>{e(v.get('from_status') or '')} → {e(v.get('to_status') or '')}</td>"
                      f"<td>{e(v.get('note') or '')}</td></tr>" for v in d["events"]) + "</table>")
    unruled = ""
    if d.get("unruled_pairs"):
        unruled = ("<p class='small'>Pairs no clearance rule covers (not checked): "
                   + e(", ".join(f"{k}: {v}" for k, v in d["unruled_pairs"].items())) + "</p>")
    title = f"Proposal check 管线审批 — {d.get('name')}"
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{e(title)}</title><style>{_CSS}</style></head><body>"
        f"<h1>{e(title)}</h1>"
        f"<p><span class='badge {result}' id='result'>{result.upper()}</span> "
        f"<span class='badge st-{e(status)}' id='status'>{e(status)}</span> "
        f"{len(d.get('findings') or [])} findings ({e(counts)}), {d.get('open_findings', 0)} not accepted</p>"
        f"<table class='meta'>{meta}</table>"
        f"<h2>Findings</h2>{findings}{unruled}{resolved}{drawing}{events}"
        "<div class='sign'><div>Checked by 审核</div><div>Approved by 审批</div><div>Date 日期</div></div>"
        "</body></html>\n"
    )


def _section_from_dict(s: dict) -> CrossSection:
    """Rebuild a cross-section from its JSON form (to draw a stored report)."""
    from analysis.section import SectionPipe, Spacing

    pipes = []
    for p in s.get("pipes", []):
        q = {k: v for k, v in p.items() if k != "depth_m"}
        q["cut_semi_axes_m"] = tuple(q.get("cut_semi_axes_m") or (q["cut_half_width_m"], q["cut_half_height_m"]))
        pipes.append(SectionPipe(**q))
    ground = np.asarray(s.get("ground") or np.empty((0, 2)), dtype=float).reshape(-1, 2)
    return CrossSection(line=np.asarray(s["line"], dtype=float), pipes=pipes,
                        spacings=[Spacing(**sp) for sp in s.get("spacings", [])], ground_offset_m=ground[:, 0],
                        ground_z=ground[:, 1], along=list(s.get("along", [])), crs=s.get("crs", ""),
                        created_at=s.get("created_at", ""))

