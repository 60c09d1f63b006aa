"""The proposal workflow (管线审批): stored proposals, their review, and the decisions on findings.

Stored proposals live in the tables ``proposal``, ``proposal_finding`` and ``proposal_event``
(migration 0002; 0008 adds the geometry in the twin CRS and the status ``withdrawn``). Each
carries a status, moved only through :data:`TRANSITIONS`, defined here once:

========== ===============================================================
status     may become
========== ===============================================================
new        reviewed, rejected, withdrawn; new (a revised geometry)
reviewed   reviewed, approved, rejected, withdrawn; new (a revised geometry)
rejected   new (a revised geometry starts a new review)
approved   nothing: a revised geometry is a new proposal
withdrawn  nothing: submit a new proposal
========== ===============================================================

A move the status does not allow raises :class:`twin.errors.Conflict` (HTTP 409).

- :func:`submit_proposal` stores and checks a proposal (status ``new``) with its geometry in
  the twin CRS; :func:`recheck_proposal` checks it again (the network may have changed) or
  checks a revised geometry (a new version, status back to ``new``). Decisions on findings
  whose key is unchanged are kept; findings no longer found become ``resolved``; new ones
  are ``open``.
- :func:`decide_finding`: ``accepted`` (tolerable, e.g. with a protective measure),
  ``rejected`` (must be fixed) or back to ``open``, while the proposal is under review. A
  ``no_rule`` finding (无规则: no clearance rule covers the pair, the tool cannot judge) is
  accepted only with a note giving the reason: it is the approver's own judgement.
- :func:`decide_proposal`: ``reviewed``, ``approved`` or ``rejected``. Approving needs the
  proposal reviewed and every current finding accepted; otherwise an explicit override note is
  required and recorded (an officer may sign off against the tool, never silently).
- :func:`withdraw_proposal`: its submitter (or an admin) takes back a new or reviewed proposal.

Every check is stamped (:func:`analysis.proposal.check_stamp`, stored by migration 0016): the
network's change mark and the version of the rule tables in effect, taken before the check
reads the network (a change during the check makes the next re-check say "changed", never
miss it). A re-check compares
itself with the check before (:func:`check_changes`): whether the network or the rules changed
since, the findings added, gone and changed (by key), and the pipes near the proposal edited,
added or retired since; the report carries it as ``changes`` (:func:`changes_summary` says it
in one line).

Four eyes: whoever submitted a proposal, or revised its geometry, may not approve or reject
it (:class:`twin.errors.Forbidden`, HTTP 403); marking it reviewed and deciding its findings
stay open to them, since the final decision still needs somebody else. Admins are no
exception.

Every check and status change is written to ``proposal_event`` (who, when, from/to status,
note); the last status change also sets ``decided_by`` / ``decided_at``. Each write function
takes an optional ``before_commit`` hook, called on the same connection just before the
transaction commits: the API writes its audit entry there, so the change and its entry land
together or not at all.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import shapely
import sqlalchemy as sa

from analysis.clearance import load_clearance_rules, rule_reach_m
from analysis.proposal import ProposalReport, check_proposal, check_stamp
from analysis.proposal_input import proposal_geometry
from twin.db import twin_srid
from twin.errors import Conflict, Forbidden, InputError, NotFound
from twin.settings import TwinSettings

__all__ = [
    "PROPOSAL_STATUSES",
    "EVENT_ACTIONS",
    "note_zh",
    "FINDING_STATUSES",
    "DECISIONS",
    "FINDING_DECISIONS",
    "TRANSITIONS",
    "UNDER_REVIEW",
    "submit_proposal",
    "recheck_proposal",
    "get_proposal",
    "list_proposals",
    "decide_finding",
    "decide_proposal",
    "withdraw_proposal",
    "BeforeCommit",
    "CheckCommit",
    "check_stamp",  # analysis.proposal's, re-exported: the workflow stores it
    "check_changes",
    "changes_summary",
]

PROPOSAL_STATUSES = ("new", "reviewed", "approved", "rejected", "withdrawn")
FINDING_STATUSES = ("open", "accepted", "rejected", "resolved")
#: What an officer decides on a proposal, and on one of its findings.
DECISIONS = ("reviewed", "approved", "rejected")
FINDING_DECISIONS = ("accepted", "rejected", "open")
#: What a proposal in each status may become ("new": a revised geometry starts a new review).
TRANSITIONS: dict[str, frozenset[str]] = {
    "new": frozenset({"new", "reviewed", "rejected", "withdrawn"}),
    "reviewed": frozenset({"new", "reviewed", "approved", "rejected", "withdrawn"}),
    "rejected": frozenset({"new"}),
    "approved": frozenset(),
    "withdrawn": frozenset(),
}
#: Statuses in which the findings are still decided.
UNDER_REVIEW = ("new", "reviewed")
#: Decisions its submitter may not take on their own proposal (four eyes).
FOUR_EYES = ("approved", "rejected")

#: The actions of a proposal's event log, Chinese and English (GET /view/vocabulary names them).
EVENT_ACTIONS: dict[str, tuple[str, str]] = {
    "submitted": ("提交", "submitted"), "revised": ("修订", "revised"), "rechecked": ("重新检查", "rechecked"),
    "decided": ("决定", "decided"), "approved with override": ("超越批准", "approved with override"),
    "withdrawn": ("撤回", "withdrawn"), "finding decided": ("问题已决定", "finding decided"),
    "finding resolved": ("问题已解决", "finding resolved"),
}
#: The notes the workflow writes itself and their Chinese (stored in English; translated when read).
_NOTES_ZH: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"([\d,]+) findings?"), "{0} 项问题"),
    (re.compile(r"version (\d+); ([\d,]+) findings?"), "第 {0} 版；{1} 项问题"),
    (re.compile(r"no longer found by the check"), "复查时已不再发现"),
)

#: Called on the write's connection just before its transaction commits (an audit entry).
BeforeCommit = Callable[[sa.Connection], None]
#: The same, for a check that is stored: also given the report (its proposal id and findings).
CheckCommit = Callable[[sa.Connection, ProposalReport], None]


# -- the state machine ----------------------------------------------------------------------------
def _check_move(proposal_id: int, old: str, new: str) -> None:
    """Conflict unless a proposal in status ``old`` may become ``new``."""
    if new in TRANSITIONS.get(old, frozenset()):
        return
    if new == "new":
        raise Conflict(f"proposal {proposal_id} is {old}; a revised geometry is a new proposal",
                       zh=f"方案 {proposal_id} 状态为 {old}；修改几何须作为新方案提交")
    if new == "withdrawn":
        raise Conflict(f"proposal {proposal_id} is {old}; only a new or reviewed proposal can be withdrawn",
                       zh=f"方案 {proposal_id} 状态为 {old}；只有新建或已审核的方案可以撤回")
    raise Conflict(f"proposal {proposal_id} is {old}; it cannot become {new} "
                   "(new -> reviewed -> approved | rejected)",
                   zh=f"方案 {proposal_id} 状态为 {old}，不能改为 {new}"
                      "（新建 -> 已审核 -> 已批准 | 已驳回）")


def _locked(conn: sa.Connection, proposal_id: int) -> sa.RowMapping:
    """The proposal's status and submitter, its row locked until the transaction ends."""
    row = conn.execute(sa.text("SELECT status, created_by FROM proposal WHERE id = :p FOR UPDATE"),
                       {"p": proposal_id}).mappings().first()
    if row is None:
        raise NotFound(f"no proposal {proposal_id}", zh=f"没有方案 {proposal_id}")
    return row


def _four_eyes(conn: sa.Connection, proposal_id: int, decision: str, by: str) -> None:
    """Forbidden when ``by`` submitted the proposal or revised its geometry and would approve or reject it."""
    if decision not in FOUR_EYES:
        return
    authors = conn.execute(sa.text(
        "SELECT created_by FROM proposal WHERE id = :p UNION "
        "SELECT by FROM proposal_event WHERE proposal_id = :p AND action IN ('submitted', 'revised')"),
        {"p": proposal_id}).scalars().all()
    if by in authors:
        verb = "approve" if decision == "approved" else "reject"
        raise Forbidden(f"{by} submitted or revised proposal {proposal_id}: another approver must {verb} it "
                        "(four eyes)",
                        zh=f"{by} 提交或修改了方案 {proposal_id}：须由另一位审批人{'批准' if verb == 'approve' else '驳回'}（双人审核）")


def _move(conn: sa.Connection, proposal_id: int, new: str) -> str:
    """Lock the proposal and check that it may become ``new``; its old status."""
    old = str(_locked(conn, proposal_id)["status"])
    _check_move(proposal_id, old, new)
    return old


# -- submit and check -----------------------------------------------------------------------------
def submit_proposal(
    engine: sa.Engine,
    source: str | Path | Mapping[str, Any],
    settings: TwinSettings,
    *,
    name: str | None = None,
    user: str | None = None,
    before_commit: CheckCommit | None = None,
) -> ProposalReport:
    """Store a proposal (status ``new``) with its geometry in the twin CRS, check it and record its findings."""
    doc = _geojson(source)
    report = check_proposal(engine, doc, settings, name=name or (Path(source).stem if isinstance(
        source, (str, Path)) else None))
    stamp = report.stamp or {}
    geom = proposal_geometry(doc, settings)
    by = _user(settings, user)
    with engine.begin() as conn:
        pid = int(conn.execute(sa.text(
            "INSERT INTO proposal (name, geojson, utility, created_by, geom) "
            "VALUES (:n, CAST(:g AS jsonb), :u, :by, ST_GeomFromWKB(:w, :srid)) RETURNING id"),
            {"n": report.name, "g": json.dumps(doc), "u": report.utility, "by": by, **_wkb(conn, geom)}).scalar())
        _event(conn, pid, by, "submitted", to_status="new", note=f"{len(report.findings)} findings",
               stamp=stamp)
        _record_check(conn, pid, report, by, stamp, settings)
        if before_commit is not None:
            before_commit(conn, report)
    return report


def recheck_proposal(
    engine: sa.Engine,
    proposal_id: int,
    settings: TwinSettings,
    *,
    source: str | Path | Mapping[str, Any] | None = None,
    user: str | None = None,
    before_commit: CheckCommit | None = None,
) -> ProposalReport:
    """Check a stored proposal again, or a revised geometry of it; decisions on unchanged findings stay."""
    by = _user(settings, user)
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT name, geojson, status, version FROM proposal WHERE id = :p"),
                           {"p": proposal_id}).mappings().first()
    if row is None:
        raise NotFound(f"no proposal {proposal_id}", zh=f"没有方案 {proposal_id}")
    if source is not None:
        _check_move(proposal_id, row["status"], "new")  # before the check's work
    doc = _geojson(source) if source is not None else row["geojson"]
    report = check_proposal(engine, doc, settings, name=row["name"])
    stamp = report.stamp or {}
    geom = proposal_geometry(doc, settings)
    with engine.begin() as conn:
        if source is not None:
            old = _move(conn, proposal_id, "new")
            conn.execute(sa.text(
                "UPDATE proposal SET geojson = CAST(:g AS jsonb), version = version + 1, status = 'new', "
                "decided_by = NULL, decided_at = NULL, override_note = NULL WHERE id = :p"),
                {"g": json.dumps(doc), "p": proposal_id})
            _event(conn, proposal_id, by, "revised", from_status=old, to_status="new",
                   note=f"version {row['version'] + 1}; {len(report.findings)} findings",
                   stamp=stamp)
        else:
            _event(conn, proposal_id, by, "rechecked", note=f"{len(report.findings)} findings",
                   stamp=stamp)
        conn.execute(sa.text("UPDATE proposal SET geom = ST_GeomFromWKB(:w, :srid) WHERE id = :p"),
                     {"p": proposal_id, **_wkb(conn, geom)})
        _record_check(conn, proposal_id, report, by, stamp, settings)
        if before_commit is not None:
            before_commit(conn, report)
    return report


# -- read -----------------------------------------------------------------------------------------
def get_proposal(engine: sa.Engine, proposal_id: int) -> dict:
    """The stored proposal: its last report with the current decisions and the event log."""
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT report FROM proposal WHERE id = :p"), {"p": proposal_id}).first()
        if row is None:
            raise NotFound(f"no proposal {proposal_id}", zh=f"没有方案 {proposal_id}")
        report = dict(row.report)
        decisions = {r["key"]: r for r in conn.execute(sa.text(
            "SELECT key, status, decided_by, decided_at, note FROM proposal_finding WHERE proposal_id = :p"),
            {"p": proposal_id}).mappings().all()}
        for f in report.get("findings", []):
            r = decisions.get(f["key"])
            if r is not None:
                f.update(status=r["status"], decided_by=r["decided_by"], note=r["note"],
                         decided_at=_iso(r["decided_at"]))
        report["open_findings"] = sum(1 for f in report.get("findings", []) if f["status"] != "accepted")
        report.update(_meta(conn, proposal_id))
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


# -- decide ---------------------------------------------------------------------------------------
def decide_finding(engine: sa.Engine, proposal_id: int, key: str, status: str, settings: TwinSettings, *,
                   note: str | None = None, user: str | None = None,
                   before_commit: BeforeCommit | None = None) -> dict:
    """Record an officer's decision on one finding: ``accepted``, ``rejected`` or ``open``."""
    if status not in FINDING_DECISIONS:
        raise InputError(f"a finding is accepted, rejected or open, not {status!r}",
                         zh=f"问题的处理为 accepted（接受）、rejected（驳回）或 open（待定），不是 {status!r}")
    by = _user(settings, user)
    with engine.begin() as conn:
        prop = _locked(conn, proposal_id)["status"]
        if prop not in UNDER_REVIEW:
            raise Conflict(f"proposal {proposal_id} is {prop}: its findings can no longer be decided",
                           zh=f"方案 {proposal_id} 状态为 {prop}：其问题已不能再处理")
        old = conn.execute(sa.text("SELECT status FROM proposal_finding WHERE proposal_id = :p AND key = :k"),
                           {"p": proposal_id, "k": key}).scalar()
        if old is None:
            raise NotFound(f"proposal {proposal_id} has no finding {key!r}",
                           zh=f"方案 {proposal_id} 没有问题 {key!r}")
        if old == "resolved":
            raise InputError(f"finding {key} is resolved (no longer found); nothing to decide",
                             zh=f"问题 {key} 已解决（不再出现）；无需处理")
        if status == "accepted" and not (note or "").strip() and conn.execute(sa.text(
                f"SELECT {_NO_RULE_SQL} FROM proposal_finding WHERE proposal_id = :p AND key = :k"),
                {"p": proposal_id, "k": key}).scalar():
            raise InputError(f"finding {key} is 无规则 no rule: no clearance rule covers the pair; accepting it "
                             "needs a note with the reason",
                             zh=f"问题 {key} 为无规则：没有净距规则覆盖这对管线；接受它须在备注中说明理由")
        conn.execute(sa.text(
            "UPDATE proposal_finding SET status = :s, decided_by = :by, decided_at = now(), note = :n "
            "WHERE proposal_id = :p AND key = :k"), {"s": status, "by": by, "n": note, "p": proposal_id, "k": key})
        _event(conn, proposal_id, by, "finding decided", key=key, from_status=old, to_status=status, note=note)
        if before_commit is not None:
            before_commit(conn)
    return get_proposal(engine, proposal_id)


def decide_proposal(engine: sa.Engine, proposal_id: int, status: str, settings: TwinSettings, *,
                    note: str | None = None, override: str | None = None, user: str | None = None,
                    before_commit: BeforeCommit | None = None) -> dict:
    """Move a proposal to ``reviewed``, ``approved`` or ``rejected``, recording who and when.

    Approval needs status ``reviewed`` and every current finding accepted, or an ``override``
    note saying why the officer approves regardless. Whoever submitted or revised the proposal
    may not approve or reject it (Forbidden).
    """
    if status not in DECISIONS:
        raise InputError(f"a proposal is decided reviewed, approved or rejected, not {status!r}",
                         zh=f"方案的决定为 reviewed（已审核）、approved（批准）或 rejected（驳回），不是 {status!r}")
    by = _user(settings, user)
    override = (override or "").strip() or None
    with engine.begin() as conn:
        old = _move(conn, proposal_id, status)
        _four_eyes(conn, proposal_id, status, by)
        if status == "approved":
            pending = conn.execute(sa.text(
                f"SELECT key, status, {_NO_RULE_SQL} AS no_rule FROM proposal_finding WHERE proposal_id = :p "
                "AND status IN ('open', 'rejected') ORDER BY key"), {"p": proposal_id}).all()
            if pending and override is None:
                no_rule = sum(1 for r in pending if r.no_rule)
                raise InputError(
                    f"proposal {proposal_id} has {len(pending)} findings not accepted"
                    + (f", {no_rule} of them 无规则 no rule (cannot judge)" if no_rule else "")
                    + f" ({', '.join(f'{r.key} {r.status}' for r in pending[:5])}); accept them or approve with "
                    "an override note",
                    zh=f"方案 {proposal_id} 有 {len(pending)} 个问题未接受"
                       + (f"，其中 {no_rule} 个为无规则（无法判定）" if no_rule else "")
                       + f"（{'、'.join(f'{r.key} {r.status}' for r in pending[:5])}）；请先接受，或在批准时填写覆盖说明")
        _set_status(conn, proposal_id, status, by, note, override=override if status == "approved" else None)
        _event(conn, proposal_id, by, "approved with override" if status == "approved" and override else "decided",
               from_status=old, to_status=status, note=override or note)
        if before_commit is not None:
            before_commit(conn)
    return get_proposal(engine, proposal_id)


def withdraw_proposal(engine: sa.Engine, proposal_id: int, settings: TwinSettings, *, note: str | None = None,
                      user: str | None = None, admin: bool = False,
                      before_commit: BeforeCommit | None = None) -> dict:
    """Withdraw a new or reviewed proposal: by its submitter, or by an ``admin``."""
    by = _user(settings, user)
    with engine.begin() as conn:
        row = _locked(conn, proposal_id)
        if not admin and row["created_by"] != by:
            raise Forbidden(f"proposal {proposal_id} was submitted by {row['created_by']}: only they or an admin "
                            "may withdraw it",
                            zh=f"方案 {proposal_id} 由 {row['created_by']} 提交：只有提交人或管理员可以撤回")
        _check_move(proposal_id, row["status"], "withdrawn")
        _set_status(conn, proposal_id, "withdrawn", by, note)
        _event(conn, proposal_id, by, "withdrawn", from_status=row["status"], to_status="withdrawn", note=note)
        if before_commit is not None:
            before_commit(conn)
    return get_proposal(engine, proposal_id)


# -- storage --------------------------------------------------------------------------------------
def _user(settings: TwinSettings, user: str | None) -> str:
    return user or settings.user_name


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


def _geojson(source: str | Path | Mapping[str, Any]) -> dict:
    if isinstance(source, Mapping):
        return json.loads(json.dumps(source))
    try:
        return json.loads(Path(source).read_text(encoding="utf-8-sig"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the proposal {source}: {exc}",
                         zh=f"无法读取方案 {source}：{exc}") from None


def _wkb(conn: sa.Connection, geom: shapely.Geometry) -> dict:
    """Bind parameters ``w`` and ``srid`` of a geometry in the twin CRS (heights kept when it has them)."""
    return {"w": shapely.to_wkb(geom, output_dimension=3), "srid": twin_srid(conn)}


def _set_status(conn: sa.Connection, pid: int, status: str, by: str, note: str | None, *,
                override: str | None = None) -> None:
    """The new status and who set it when; an override note only with an approval."""
    conn.execute(sa.text(
        "UPDATE proposal SET status = :s, decided_by = :by, decided_at = now(), note = coalesce(:n, note), "
        "override_note = CASE WHEN :s = 'approved' THEN :o ELSE override_note END WHERE id = :p"),
        {"s": status, "by": by, "n": note, "o": override, "p": pid})


def _event(conn: sa.Connection, pid: int, by: str, action: str, *, key: str | None = None,
           from_status: str | None = None, to_status: str | None = None, note: str | None = None,
           stamp: Mapping | None = None) -> None:
    conn.execute(sa.text(
        "INSERT INTO proposal_event (proposal_id, by, action, finding_key, from_status, to_status, "
        "note, network_mark, rules_version) VALUES (:p, :by, :a, :k, :f, :t, :n, :m, :r)"),
        {"p": pid, "by": by, "a": action, "k": key, "f": from_status, "t": to_status, "n": note,
         "m": (stamp or {}).get("network_mark"), "r": (stamp or {}).get("rules_version")})


def _record_check(conn: sa.Connection, pid: int, report: ProposalReport, by: str, stamp: Mapping,
                  settings: TwinSettings) -> None:
    """Store a check's findings, stamp and report; fill the report's decisions, stored fields and
    (a re-check) what changed since the check before."""
    before = conn.execute(sa.text(
        "SELECT report, checked_at, network_mark, rules_version FROM proposal WHERE id = :p"),
        {"p": pid}).mappings().one()
    _store_findings(conn, pid, report, by)
    for k, v in _meta(conn, pid).items():
        setattr(report, k, v)
    if before["checked_at"] is not None:
        report.changes = check_changes(before, report)
        report.changes["pipes_changed"] = _near_changes(conn, pid, before["checked_at"], settings)
    conn.execute(sa.text(
        "UPDATE proposal SET report = CAST(:r AS jsonb), passed = :ok, checked_at = now(), "
        "network_mark = :m, rules_version = :rv WHERE id = :p"),
        {"r": json.dumps(report.as_dict(), default=str), "ok": report.passed, "p": pid,
         "m": stamp.get("network_mark"), "rv": stamp.get("rules_version")})


def _store_findings(conn: sa.Connection, pid: int, report: ProposalReport, by: str) -> None:
    """Upsert this run's findings (keeping decisions), resolve the vanished ones, fill in decisions."""
    keys = [f.key for f in report.findings]
    if report.findings:
        conn.execute(sa.text(
            "INSERT INTO proposal_finding (proposal_id, key, kind, summary, detail) "
            "VALUES (:p, :k, :kind, :s, CAST(:d AS jsonb)) "
            "ON CONFLICT (proposal_id, key) DO UPDATE SET kind = EXCLUDED.kind, summary = EXCLUDED.summary, "
            "detail = EXCLUDED.detail, "
            "last_seen_at = now(), status = CASE WHEN proposal_finding.status = 'resolved' THEN 'open' "
            # a pair whose worst kind or verdict changed is decided again: a decision holds for
            # what the officer saw (one key per pair: a clearance accepted may become a collision)
            "WHEN proposal_finding.kind <> EXCLUDED.kind OR proposal_finding.detail->>'verdict' "
            "IS DISTINCT FROM EXCLUDED.detail->>'verdict' THEN 'open' "
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
            f.decided_at = _iso(r["decided_at"])
    current = {f.key for f in report.findings}
    report.resolved = [{"key": r["key"], "kind": r["kind"], "summary": r["summary"], "status": r["status"]}
                       for r in rows if r["key"] not in current]


def _meta(conn: sa.Connection, pid: int) -> dict:
    """The stored fields of a proposal a report carries: name, status, who and when, the event log."""
    row = conn.execute(sa.text(
        "SELECT name, status, version, created_by, created_at, decided_by, decided_at, note, override_note "
        "FROM proposal WHERE id = :p"), {"p": pid}).mappings().one()
    events = conn.execute(sa.text(
        "SELECT at, by, action, finding_key, from_status, to_status, note, network_mark, "
        "rules_version FROM proposal_event "
        "WHERE proposal_id = :p ORDER BY at, id"), {"p": pid}).mappings().all()
    return {
        "proposal_id": pid, "name": row["name"], "status": row["status"], "version": row["version"],
        "created_by": row["created_by"], "created_at": _iso(row["created_at"]),
        "decided_by": row["decided_by"], "decided_at": _iso(row["decided_at"]),
        "note": row["note"], "override_note": row["override_note"],
        "events": [{**dict(e), "at": _iso(e["at"]), "note_zh": note_zh(e["note"])} for e in events],
    }


def note_zh(note: str | None) -> str | None:
    """The Chinese of a note the workflow wrote itself (``3 findings`` -> ``3 项问题``); None for
    a note people wrote (shown as written).

    >>> note_zh("version 2; 5 findings"), note_zh("approved after the site visit")
    ('第 2 版；5 项问题', None)
    """
    for pattern, zh in _NOTES_ZH:
        m = pattern.fullmatch(note or "")
        if m:
            return zh.format(*m.groups())
    return None


# -- the stamp and what changed -------------------------------------------------------------------
#: A stored finding no clearance rule (partly) covers: accepting it needs a note (无规则).
_NO_RULE_SQL = "(kind = 'no_rule' OR detail @> '{\"rules\": [{\"verdict\": \"no_rule\"}]}')"
#: A finding's fields a re-check compares (same key): a change in any is reported.
COMPARED = ("kind", "verdict", "measured_m", "required_m", "uncertainty_m", "rule")
#: Lengths closer than this are the same (the report rounds to 0.1 mm).
_SAME_M = 5e-4



def _brief(f: Mapping) -> dict:
    return {k: f.get(k) for k in ("key", "kind", "verdict", "summary", "measured_m", "required_m")}


def _differs(a: object, b: object) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(float(a) - float(b)) > _SAME_M
    return a != b


def check_changes(before: Mapping, report: ProposalReport) -> dict:
    """What a re-check finds changed since the check before (``before``: the proposal's stored
    ``report``, ``checked_at``, ``network_mark`` and ``rules_version``): the network and rules
    (None: the check before was not stamped), the findings added, gone and changed."""
    old_report = dict(before.get("report") or {})
    old = {f["key"]: f for f in old_report.get("findings", [])}
    new = {f.key: f.as_dict() for f in report.findings}
    changed = []
    for key, f in new.items():
        if key in old:
            diff = {c: [old[key].get(c), f.get(c)] for c in COMPARED
                    if _differs(old[key].get(c), f.get(c))}
            if diff:
                changed.append({**_brief(f), "changed": diff})
    stamp = report.stamp or {}
    mark0, rules0 = before.get("network_mark"), before.get("rules_version")
    old_tables = (old_report.get("stamp") or {}).get("rules") or {}
    digits = mark0 is not None and str(mark0).isdigit() and str(stamp.get("network_mark")).isdigit()
    writes = int(stamp["network_mark"]) - int(mark0) if digits else None
    return {
        "since": _iso(before["checked_at"]) if isinstance(before.get("checked_at"), dt.datetime)
        else before.get("checked_at"),
        "version_before": old_report.get("version"), "version": report.version,
        "network_changed": None if mark0 is None else mark0 != stamp.get("network_mark"),
        "network_mark_before": mark0, "network_mark": stamp.get("network_mark"),
        "network_writes": writes,
        "rules_changed": None if rules0 is None else rules0 != stamp.get("rules_version"),
        "rules_version_before": rules0, "rules_version": stamp.get("rules_version"),
        "rules_tables_changed": sorted(
            n for n, t in (stamp.get("rules") or {}).items()
            if rules0 is not None and (old_tables.get(n) or {}).get("sha256") != t.get("sha256")),
        "added": [_brief(f) for k, f in new.items() if k not in old],
        "gone": [_brief(f) for k, f in old.items() if k not in new],
        "changed": changed,
        "unchanged": sum(1 for k in new if k in old) - len(changed),
    }


def _near_changes(conn: sa.Connection, pid: int, since: dt.datetime,
                  settings: TwinSettings) -> list[dict]:
    """Pipes within the check's reach of the proposal added, edited or retired since ``since``."""
    rules = load_clearance_rules(None, settings, db=conn)
    reach = rule_reach_m(rules) + 2.0 if len(rules) else 5.0
    rows = conn.execute(sa.text(
        "SELECT s.id, s.utility, s.version, s.valid_from, s.retired_at FROM segment s "
        "WHERE ST_DWithin(s.geom, (SELECT geom FROM proposal WHERE id = :p), :d) "
        "AND (s.valid_from > :t OR s.retired_at > :t) ORDER BY s.id LIMIT 200"),
        {"p": pid, "d": reach, "t": since}).mappings().all()
    return [{"id": r["id"], "utility": r["utility"],
             "change": "retired" if r["retired_at"] is not None and r["retired_at"] > since
             else "added" if r["version"] == 1 else "edited",
             "at": _iso(r["retired_at"] if r["retired_at"] is not None else r["valid_from"])}
            for r in rows]


def changes_summary(changes: Mapping | None) -> str:
    """One line, Chinese first: what a re-check found changed since the check before."""
    if not changes:
        return "首次核查 first check"

    def said(flag: object, yes: str, no: str) -> str:
        return "未记录 not recorded" if flag is None else yes if flag else no

    writes = changes.get("network_writes")
    net = said(changes.get("network_changed"), "管网已变更 network changed"
               + (f" ({writes} writes)" if writes else ""), "管网未变 network unchanged")
    tables = ", ".join(changes.get("rules_tables_changed") or [])
    rules = said(changes.get("rules_changed"),
                 "规则表已变更 rules changed" + (f" ({tables})" if tables else ""),
                 "规则表未变 rules unchanged")
    pipes = len(changes.get("pipes_changed") or [])
    return (f"自上次核查 since {changes.get('since')}: {net}; {rules}; "
            + (f"附近管线变更 pipes near changed: {pipes}; " if pipes else "")
            + f"新增 added {len(changes.get('added') or [])}, "
            f"消失 gone {len(changes.get('gone') or [])}, "
            f"变化 changed {len(changes.get('changed') or [])}, "
            f"未变 unchanged {changes.get('unchanged', 0)}")
