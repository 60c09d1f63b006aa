"""BCF 3.0 (BIM Collaboration Format) of findings: one topic per finding, for designers' BIM tools.

:func:`findings_bcf` writes a BCF 3.0 zip (``.bcf``) of findings of either kind: a proposal
check's (:class:`analysis.proposal.Finding` or its stored dict: ``ids``, ``rule``, decision
``status`` open/accepted/rejected/resolved) or the whole-network scan's stored ones
(:func:`analysis.findings.list_findings` rows: ``a_id``/``b_id``, ``rule_id``, status
new/active/reviewed/approved/resolved). The zip holds, as the standard (buildingSMART BCF-XML,
``release_3_0``) asks:

=====================  ======================================================================
``bcf.version``        ``VersionId="3.0"``
``extensions.xml``     the topic types (verdicts), statuses, priorities, labels (utilities) and
                       users this file uses
``project.bcfp``       the project (the twin) with a stable id
``<guid>/markup.bcf``  the topic: title (Chinese first), description (verdict, rule, clause,
                       measured, required, uncertainty, place), status, labels, dates, author,
                       the decision note as a comment, one viewpoint
``<guid>/viewpoint.bcfv``  a perspective camera at the finding in the twin's CRS (x easting,
                       y northing, z height, metres) and the pipes as selected components
                       (``AuthoringToolId`` = the pipe id; our pipes are not IFC, so no IfcGuid)
``<guid>/snapshot.png``  the 3D picture (:func:`documents.pictures.finding_picture`, whose
                       camera the viewpoint is), for the first :data:`SNAPSHOTS` topics (0.7 to
                       1.4 s each); the others' viewpoint frames the place as a picture would
=====================  ======================================================================

Topic GUIDs are uuid5 of the finding's key (and the proposal's id), so exporting again gives
the same topics: a BIM tool updates them instead of adding copies. At most :data:`MAX_TOPICS`
topics go in one file (an :class:`~twin.errors.InputError` asks to filter beyond).

:func:`network_findings_bcf` (``twin analyze findings --bcf``, ``GET /findings.bcf``) and
:func:`proposal_findings_bcf` (``twin analyze proposal FILE --bcf``,
``GET /proposals/{id}/findings.bcf``) are the calls of the commands and the routes.
"""

from __future__ import annotations

import datetime as dt
import io
import math
import uuid
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from lxml import etree

from analysis.clearance import load_clearance_rules
from analysis.findings import STATUS_LABELS, VERDICT_LABELS, list_findings
from analysis.proposal import ProposalReport
from analysis.proposal_input import read_proposal
from analysis.proposal_workflow import get_proposal
from documents.limits import MAX_SNAPSHOTS, MAX_TOPICS, SNAPSHOTS
from documents.pictures import (
    FINDING_ELEVATION_DEG,
    FINDING_VIEW_HALF_M,
    KIND_LABELS,
    VIEW_ANGLE_DEG,
    Camera,
    ExtraPipe,
    finding_picture,
    proposal_extras,
)
from twin.db import twin_srid
from twin.domain import UTILITIES
from twin.errors import InputError
from twin.settings import TwinSettings

__all__ = [
    "BcfExport",
    "MAX_TOPICS",
    "SNAPSHOTS",
    "MAX_SNAPSHOTS",
    "SNAPSHOT_SIZE",
    "MEDIA_TYPE",
    "topic_guid",
    "findings_bcf",
    "network_findings_bcf",
    "proposal_findings_bcf",
    "report_bcf",
]

#: Snapshot size (px): the standard asks for at most 1500 px on the longer side.
SNAPSHOT_SIZE = (1280, 960)
#: There is no registered media type for BCF; tools download it as a binary zip.
MEDIA_TYPE = "application/octet-stream"
#: Name of the system the components (pipes) come from, in viewpoints.
ORIGINATING_SYSTEM = "PipeTwin"
#: Namespace of the twin's topic GUIDs (uuid5 of a finding's key).
NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:pipetwin:bcf")

#: Decisions on a proposal's findings (analysis.proposal_workflow.FINDING_STATUSES).
DECISION_LABELS = {"open": "待定", "accepted": "已接受", "rejected": "已驳回", "resolved": "已解决"}
#: Topic type (BCF: the kind of issue) per verdict.
TOPIC_TYPES = {v: f"{VERDICT_LABELS[v]} {v}" for v in ("violation", "uncertain", "no_rule")}
#: Priority per verdict: a violation is certain; the others need a trench, a new survey or a judgement.
PRIORITIES = {"violation": "高 high", "uncertain": "中 medium", "no_rule": "中 medium"}

_VERSION_XSD = "https://raw.githubusercontent.com/buildingSMART/BCF-XML/release_3_0/Schemas/version.xsd"
_XSI = "http://www.w3.org/2001/XMLSchema-instance"


@dataclass
class BcfExport:
    """A BCF file and what went in: the findings' keys, how many topics have a snapshot."""

    data: bytes
    keys: list[str]
    snapshots: int
    filename: str
    affected: list[str] = field(default_factory=list)


def topic_guid(key: str, scope: str = "finding") -> str:
    """The stable topic GUID of a finding (lower-case UUID, as BCF folder names must be).

    >>> topic_guid("0123456789abcdef") == topic_guid("0123456789abcdef")
    True
    >>> topic_guid("0123456789abcdef") != topic_guid("0123456789abcdef", "proposal/1")
    True
    """
    return str(uuid.uuid5(NAMESPACE, f"{scope}/{key}"))


# ----------------------------------------------------------------------------- the findings


@dataclass
class _Topic:
    """One finding in the terms of a topic, whichever kind of finding it came from."""

    key: str
    kind: str
    verdict: str
    status: str  # the TopicStatus
    ids: list[str]
    utilities: list[str]
    title: str
    description: str
    created: str
    created_by: str
    modified: str | None
    modified_by: str | None
    note: str | None
    finding: dict


def _plain_finding(f: Any) -> dict:
    return f.as_dict() if hasattr(f, "as_dict") else dict(f)


def _num(v: Any) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _metres(v: Any, sign: str = "") -> str:
    n = _num(v)
    return "-" if n is None else f"{sign}{n:.3f} m"


def _utility_label(code: str) -> str:
    u = UTILITIES.get(str(code or "").upper())
    return f"{u.code} {u.name_zh}" if u else str(code or "?")


def _date(value: Any, default: str) -> str:
    """An xs:dateTime to the second, with its zone (no zone: UTC, as BCF reads it)."""
    if value in (None, ""):
        return default
    when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.isoformat(timespec="seconds")


def _rule_and_clause(f: Mapping, clauses: Mapping[str, str]) -> tuple[str, str]:
    """The rule id and its clause: ``rule`` of a proposal finding is ``"id: source"``."""
    if f.get("rule_id"):
        rid = str(f["rule_id"])
        return rid, clauses.get(rid, "")
    rule = str(f.get("rule") or "")
    rid, sep, clause = rule.partition(": ")
    return (rid, clause) if sep else (rule, "")


def _topic(f: dict, *, now: str, author: str, clauses: Mapping[str, str], srid: int | None) -> _Topic:
    """A finding (proposal or network) as a topic: title, description, status, dates."""
    proposal = "ids" in f
    ids = [str(i) for i in (f["ids"] if proposal else (f.get("a_id"), f.get("b_id"))) if i]
    utilities = [str(u) for u in (f.get("utilities") or (f.get("a_utility"), f.get("b_utility"))) if u]
    kind, verdict = str(f.get("kind") or "finding"), str(f.get("verdict") or "violation")
    status = str(f.get("status") or ("open" if proposal else "new"))
    status_label = (DECISION_LABELS if proposal else STATUS_LABELS).get(status, status)
    rid, clause = _rule_and_clause(f, clauses)
    kind_label = KIND_LABELS.get(kind, kind)
    measured, required = _metres(f.get("measured_m")), _metres(f.get("required_m"))
    overlap = -(_num(f.get("measured_m")) or 0.0) if kind in ("hard", "collision") else 0.0
    if overlap > 0:  # a clash: the solids overlap by this much
        short = f"重叠 overlap {overlap:.3f} m"
    elif f.get("required_m") is None or kind in ("hard", "collision", "duplicate"):
        short = measured
    else:
        short = f"{measured} < {required}"
    title = f"{VERDICT_LABELS.get(verdict, verdict)} {kind_label}: {' / '.join(ids)} ({short})"
    x, y, z = (_num(f.get(c)) for c in ("x", "y", "z"))
    place = ", ".join(f"{c}={v:.3f}" for c, v in zip("xyz", (x, y, z), strict=True) if v is not None)
    lines = [
        f"结论 verdict: {VERDICT_LABELS.get(verdict, verdict)} {verdict}",
        f"类型 kind: {kind_label}",
        "管线 pipes: " + ", ".join(f"{i} ({_utility_label(u)})" for i, u in zip(ids, utilities, strict=False)),
        f"规则 rule: {rid or '-'}" + (f"; 条款 clause: {clause}" if clause else ""),
        f"实测 measured: {measured}" + (f" (重叠 overlap {overlap:.3f} m)" if overlap > 0 else ""),
        f"要求 required: {required}",
        f"不确定度 uncertainty: {_metres(f.get('uncertainty_m'), '± ')}",
        f"位置 place: {place}" + (f" (EPSG:{srid})" if srid else ""),
        f"状态 status: {status_label} {status}",
    ]
    if f.get("road"):
        lines.insert(7, f"道路 road: {f['road']}")
    if len(f.get("rules") or []) > 1:  # a pair breaking several rules: every one of them
        lines += [f"  - {KIND_LABELS.get(str(r.get('kind')), r.get('kind'))} "
                  f"{VERDICT_LABELS.get(str(r.get('verdict')), r.get('verdict'))}: {r.get('rule') or '-'} "
                  f"{r.get('clause') or ''} {_metres(r.get('measured_m'))}"
                  + ("" if r.get("required_m") is None else f" / {_metres(r.get('required_m'))}")
                  for r in f["rules"]]
    if f.get("summary"):
        lines.append(f"摘要 summary: {f['summary']}")
    lines.append(f"键 key: {f['key']}")
    created = _date(f.get("first_seen") or f.get("created_at") or f.get("checked_at"), now)
    changed = f.get("status_at") or f.get("decided_at")
    return _Topic(
        key=str(f["key"]), kind=kind, verdict=verdict, status=f"{status_label} {status}", ids=ids,
        utilities=utilities, title=title, description="\n".join(lines), created=created,
        created_by=str(f.get("created_by") or author),
        modified=_date(changed, now) if changed else None,
        modified_by=str(f.get("status_by") or f.get("decided_by") or author) if changed else None,
        note=(str(f.get("note")).strip() or None) if f.get("note") else None, finding=f)


# ----------------------------------------------------------------------------- XML


def _el(parent: etree._Element, tag: str, text: Any = None, **attrs: str) -> etree._Element:
    e = etree.SubElement(parent, tag, {k: v for k, v in attrs.items() if v is not None})
    if text is not None:
        e.text = str(text)
    return e


def _xml(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def _version_xml() -> bytes:
    root = etree.Element("Version", {"VersionId": "3.0", f"{{{_XSI}}}noNamespaceSchemaLocation": _VERSION_XSD},
                         nsmap={"xsi": _XSI})
    return _xml(root)


def _project_xml(project_id: str, name: str) -> bytes:
    root = etree.Element("ProjectInfo")
    _el(_el(root, "Project", ProjectId=project_id), "Name", name)
    return _xml(root)


def _extensions_xml(topics: Sequence[_Topic], users: Sequence[str]) -> bytes:
    """The values this file uses, as the standard asks of every type, status, label and user."""
    root = etree.Element("Extensions")
    values = (
        ("TopicTypes", "TopicType", [*TOPIC_TYPES.values(), *(TOPIC_TYPES.get(t.verdict, t.verdict) for t in topics)]),
        ("TopicStatuses", "TopicStatus", [t.status for t in topics]),
        ("Priorities", "Priority", list(dict.fromkeys(PRIORITIES.values()))),
        ("TopicLabels", "TopicLabel", [_utility_label(u) for t in topics for u in t.utilities]),
        ("Users", "User", list(users)),
    )
    for group, item, names in values:
        g = _el(root, group)
        for name in dict.fromkeys(n for n in names if n and n.strip()):
            _el(g, item, name)
    return _xml(root)


def _markup_xml(t: _Topic, guid: str, viewpoint: str, *, snapshot: bool, link: str | None) -> bytes:
    root = etree.Element("Markup")
    topic = _el(root, "Topic", Guid=guid, TopicType=TOPIC_TYPES.get(t.verdict, t.verdict), TopicStatus=t.status)
    if link:
        _el(_el(topic, "ReferenceLinks"), "ReferenceLink", link)
    _el(topic, "Title", t.title)
    _el(topic, "Priority", PRIORITIES.get(t.verdict, PRIORITIES["uncertain"]))
    labels = _el(topic, "Labels")
    for u in dict.fromkeys(t.utilities):
        _el(labels, "Label", _utility_label(u))
    _el(topic, "CreationDate", t.created)
    _el(topic, "CreationAuthor", t.created_by)
    if t.modified:
        _el(topic, "ModifiedDate", t.modified)
        _el(topic, "ModifiedAuthor", t.modified_by)
    _el(topic, "Description", t.description)
    if t.note:
        comment = _el(_el(topic, "Comments"), "Comment", Guid=str(uuid.uuid5(NAMESPACE, f"{guid}/note")))
        _el(comment, "Date", t.modified or t.created)
        _el(comment, "Author", t.modified_by or t.created_by)
        _el(comment, "Comment", t.note)
        _el(comment, "Viewpoint", Guid=viewpoint)
    vp = _el(_el(topic, "Viewpoints"), "ViewPoint", Guid=viewpoint)
    _el(vp, "Viewpoint", "viewpoint.bcfv")
    if snapshot:
        _el(vp, "Snapshot", "snapshot.png")
    _el(vp, "Index", 0)
    return _xml(root)


def _xyz(parent: etree._Element, tag: str, v: Sequence[float]) -> None:
    e = _el(parent, tag)
    for c, value in zip("XYZ", v, strict=True):
        _el(e, c, repr(float(value)))


def _viewpoint_xml(guid: str, camera: Camera, aspect: float, ids: Sequence[str]) -> bytes:
    """A perspective camera (direction and up as unit vectors, up square to the direction)."""
    root = etree.Element("VisualizationInfo", Guid=guid)
    comps = _el(root, "Components")
    sel = _el(comps, "Selection")
    for i in dict.fromkeys(ids):
        c = _el(sel, "Component")
        _el(c, "OriginatingSystem", ORIGINATING_SYSTEM)
        _el(c, "AuthoringToolId", i)
    _el(comps, "Visibility", DefaultVisibility="true")
    pos = np.asarray(camera.position, float)
    d = np.asarray(camera.focal_point, float) - pos
    d /= np.linalg.norm(d)
    up = np.asarray(camera.up, float)
    up = up - (up @ d) * d
    up /= np.linalg.norm(up)
    cam = _el(root, "PerspectiveCamera")
    _xyz(cam, "CameraViewPoint", pos)
    _xyz(cam, "CameraDirection", d)
    _xyz(cam, "CameraUpVector", up)
    _el(cam, "FieldOfView", repr(float(camera.view_angle_deg)))
    _el(cam, "AspectRatio", repr(float(aspect)))
    return _xml(root)


def _camera_at(f: Mapping) -> Camera:
    """The camera of a topic without a snapshot: as a finding's picture looks (from the south,
    :data:`~documents.pictures.FINDING_ELEVATION_DEG` down, framing the place), without reading
    the pipes it would turn to look across."""
    at = np.array([_num(f.get("x")) or 0.0, _num(f.get("y")) or 0.0, _num(f.get("z")) or 0.0])
    el = math.radians(FINDING_ELEVATION_DEG)
    view = np.array([0.0, math.cos(el), -math.sin(el)])
    dist = FINDING_VIEW_HALF_M / math.sin(math.radians(VIEW_ANGLE_DEG) / 2)
    return Camera(tuple(map(float, at - view * dist)), tuple(map(float, at)), (0.0, 0.0, 1.0), VIEW_ANGLE_DEG)


# ----------------------------------------------------------------------------- the file


def _check_count(n: int) -> None:
    if n > MAX_TOPICS:
        raise InputError(f"a BCF file holds at most {MAX_TOPICS} topics; "
                         f"{n:,} findings match: filter them (status, verdict, road, utility pair, owner "
                         "pair) or page with limit and offset", code="TOO_MANY_TOPICS",
                         zh=f"一个 BCF 文件最多 {MAX_TOPICS} 个问题；有 {n:,} 条检查结果符合条件：请筛选（状态、结论、道路、"
                         "管线类别组合、权属单位组合）或用 limit 和 offset 分页")


def _export(data: bytes, keys: list[str], filename: str, affected: list[str]) -> BcfExport:
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        pictured = sum(1 for n in z.namelist() if n.endswith("/snapshot.png"))
    return BcfExport(data, keys, pictured, filename, affected)


def findings_bcf(
    engine: sa.Engine,
    findings: Sequence[Any],
    *,
    extra: Sequence[ExtraPipe] = (),
    project: str = "PipeTwin 管线数字孪生",
    project_id: str | None = None,
    scope: str = "finding",
    author: str = ORIGINATING_SYSTEM,
    clauses: Mapping[str, str] | None = None,
    snapshots: int = SNAPSHOTS,
    links: str | None = None,
) -> bytes:
    """A BCF 3.0 zip of ``findings`` (proposal findings or stored network findings), one topic each.

    ``extra`` are pipes not in the twin (the proposal) for the pictures; ``scope`` keeps topic
    GUIDs of different proposals apart (``proposal/<id>``); ``clauses`` gives a network
    finding's rule clause by rule id; the first ``snapshots`` topics get a rendered picture;
    ``links`` is a reference link template with ``{key}`` (the finding in the twin's API).
    More than :data:`MAX_TOPICS` findings is an :class:`InputError`.
    """
    rows = [_plain_finding(f) for f in findings]
    _check_count(len(rows))
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    srid = twin_srid(engine)
    topics = [_topic(f, now=now, author=author, clauses=clauses or {}, srid=srid) for f in rows]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("bcf.version", _version_xml())
        z.writestr("project.bcfp", _project_xml(project_id or str(uuid.uuid5(NAMESPACE, f"project/{scope}")),
                                                project))
        users = [author, *(t.created_by for t in topics), *(t.modified_by or "" for t in topics)]
        z.writestr("extensions.xml", _extensions_xml(topics, users))
        for n, t in enumerate(topics):
            _write_topic(z, engine, t, scope=scope, extra=extra, render=n < snapshots,
                         link=links.format(key=t.key) if links else None)
    return buf.getvalue()


def _write_topic(z: zipfile.ZipFile, engine: sa.Engine, t: _Topic, *, scope: str, extra: Sequence[ExtraPipe],
                 render: bool, link: str | None) -> None:
    """One topic folder (with its directory entry, as the standard's zip guide asks), with a
    snapshot when ``render``."""
    guid = topic_guid(t.key, scope)
    viewpoint = str(uuid.uuid5(NAMESPACE, f"{guid}/viewpoint"))
    picture = finding_picture(engine, t.finding, extra=extra, size=SNAPSHOT_SIZE) if render else None
    camera = picture.camera if picture is not None else _camera_at(t.finding)
    aspect = picture.width / picture.height if picture is not None else SNAPSHOT_SIZE[0] / SNAPSHOT_SIZE[1]
    z.writestr(zipfile.ZipInfo(f"{guid}/"), b"")
    z.writestr(f"{guid}/markup.bcf", _markup_xml(t, guid, viewpoint, snapshot=picture is not None, link=link))
    z.writestr(f"{guid}/viewpoint.bcfv", _viewpoint_xml(viewpoint, camera, aspect, t.ids))
    if picture is not None:
        z.writestr(f"{guid}/snapshot.png", picture.png, compress_type=zipfile.ZIP_STORED)


# ----------------------------------------------------------------------------- the calls


def _clauses(engine: sa.Engine, settings: TwinSettings) -> dict[str, str]:
    """Rule id -> clause (``source``) of the clearance rules in effect (network findings keep the id)."""
    rules = load_clearance_rules(None, settings, db=engine)
    return dict(zip(rules["id"].astype(str), rules["source"].astype(str), strict=True))


def network_findings_bcf(
    engine: sa.Engine,
    settings: TwinSettings,
    *,
    status: Sequence[str] | None = None,
    verdict: Sequence[str] | None = None,
    road: str | None = None,
    utility_pair: str | None = None,
    owner_pair: str | None = None,
    limit: int | None = None,
    offset: int = 0,
    author: str | None = None,
    links: str | None = None,
    snapshots: int = SNAPSHOTS,
) -> BcfExport:
    """The stored network findings matching the filters of :func:`list_findings` as BCF.

    Without ``limit``, more than :data:`MAX_TOPICS` matches (from ``offset``) is an input
    error asking to filter; ``limit`` over :data:`MAX_TOPICS` is one too.
    """
    if limit is not None and not 0 < limit <= MAX_TOPICS:
        raise InputError(f"limit: 1 to {MAX_TOPICS} topics in one BCF file",
                         zh=f"limit：一个 BCF 文件含 1 到 {MAX_TOPICS} 个问题")
    doc = list_findings(engine, status=status, verdict=verdict, road=road, utility_pair=utility_pair,
                        owner_pair=owner_pair, limit=limit or MAX_TOPICS, offset=offset)
    if limit is None:
        _check_count(doc["numberMatched"] - offset)
    keys = [f["key"] for f in doc["findings"]]
    with engine.connect() as conn:  # who ran the scan that first found each: the topic's author
        first = dict(conn.execute(sa.text(
            "SELECT DISTINCT ON (key) key, user_name FROM finding_event WHERE key = ANY(:k) ORDER BY key, at, id"),
            {"k": keys}).all())
    rows = [{**f, "created_by": first.get(f["key"])} for f in doc["findings"]]
    data = findings_bcf(engine, rows, author=author or settings.user_name, clauses=_clauses(engine, settings),
                        snapshots=snapshots, links=links)
    return _export(data, keys, "findings.bcf", [f"finding:{k}" for k in keys])


def report_bcf(
    engine: sa.Engine,
    settings: TwinSettings,
    report: ProposalReport | Mapping[str, Any],
    source: str | Path | Mapping[str, Any],
    *,
    author: str | None = None,
    links: str | None = None,
    snapshots: int = SNAPSHOTS,
) -> BcfExport:
    """A proposal check's findings (``report``, stored or not) as BCF; ``source`` is the
    proposal's GeoJSON (path or dict), drawn in the pictures as it is not in the twin."""
    d = report.as_dict() if isinstance(report, ProposalReport) else dict(report)
    pid = d.get("proposal_id")
    findings = [{**f, "created_at": d.get("checked_at") or d.get("created_at"), "created_by": d.get("created_by")}
                for f in d.get("findings") or []]
    extra = proposal_extras(read_proposal(source, settings, engine=engine))
    scope = f"proposal/{pid}" if pid else f"check/{d.get('name')}"
    data = findings_bcf(engine, findings, extra=extra, project=f"{d.get('name')} 管线审批 proposal check",
                        scope=scope, author=author or settings.user_name,
                        snapshots=snapshots, links=links)
    keys = [f["key"] for f in findings]
    name = f"proposal-{pid}-findings.bcf" if pid else "proposal-findings.bcf"
    return _export(data, keys, name, [f"proposal:{pid}"] if pid else [])


def proposal_findings_bcf(engine: sa.Engine, settings: TwinSettings, proposal_id: int, *,
                          author: str | None = None, links: str | None = None,
                          snapshots: int = SNAPSHOTS) -> BcfExport:
    """A stored proposal's last check, with the decisions on its findings, as BCF."""
    report = get_proposal(engine, proposal_id)
    with engine.connect() as conn:
        source = conn.execute(sa.text("SELECT geojson FROM proposal WHERE id = :p"), {"p": proposal_id}).scalar()
    return report_bcf(engine, settings, report, source, author=author, links=links, snapshots=snapshots)
