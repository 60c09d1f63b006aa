"""Whole-network findings that persist: stored with a stable key and a status, as in BIM clash tools.

The whole-network scan (:func:`analysis.scan.scan_network`) reports hard clashes, duplicates,
clearance violations, uncertain pairs (依探测精度无法判定) and pairs no rule covers (无规则).
:func:`store_findings` keeps them in the twin's ``finding`` table, keyed by kind and the two
pipe ids (:func:`analysis.pieces.finding_key`), so a finding keeps its status across re-runs
and edits of the pipes:

======================  =============================================================
on a re-run             status
======================  =============================================================
first found             ``new`` (新发现)
found again             ``new`` becomes ``active`` (活动); ``reviewed`` (已审核) and
                        ``approved`` (已批准) stay
not found any more      ``resolved`` (已解决), by itself
found again, resolved   ``active`` again
======================  =============================================================

A user moves a finding between ``active``, ``reviewed`` and ``approved``
(:func:`set_status`, :data:`TRANSITIONS`; anything else is a :class:`~twin.errors.Conflict`);
approving a violation or a pair no rule covers needs a reason (``note``). Every change, the
scan's included, is kept in ``finding_event`` (who, when, from, to, note).

:func:`scan_and_store` is what ``twin analyze scan``, the server's ``network-scan`` process and
the benchmark run; :func:`list_findings` answers ``twin analyze findings`` and ``GET /findings``.

The store writes a quarter of a million findings at 1M segments in a few seconds: the run comes
in by binary COPY, one join of it with the table finds what changed, rows are written in key
order, ``finding`` has only its key indexed and half-empty pages (migration 0020: a scan's updates
stay on their page, no index entry), and a run of many events (a first scan, the re-scan after
it) checks the history's foreign key once, by a join, instead of once per event (:func:`_bulk`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pgpq
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from analysis.scan import FINDING_NUMBERS, FINDING_TEXT, scan_findings, scan_network
from twin.errors import Conflict, InputError, NotFound
from twin.jsonable import plain

__all__ = [
    "STATUSES", "VERDICTS", "STATUS_LABELS", "VERDICT_LABELS", "TRANSITIONS", "findings_of",
    "store_findings", "scan_and_store", "list_findings", "get_finding", "set_status",
]

#: Life cycle of a finding, as in BIM clash tools.
STATUSES = ("new", "active", "reviewed", "approved", "resolved")
#: What a stored finding says: fails even at the most favourable positions within survey
#: tolerance, cannot be judged from the survey, or no rule covers the pair.
VERDICTS = ("violation", "uncertain", "no_rule")
STATUS_LABELS = {"new": "新发现", "active": "活动", "reviewed": "已审核", "approved": "已批准",
                 "resolved": "已解决"}
VERDICT_LABELS = {"violation": "违规", "uncertain": "无法判定", "no_rule": "无规则", "compliant": "合规"}
#: The statuses a user may move a finding to, from each status; ``new`` and ``resolved`` are
#: the scan's to give.
TRANSITIONS: dict[str, frozenset[str]] = {
    "new": frozenset({"active", "reviewed", "approved"}),
    "active": frozenset({"reviewed", "approved"}),
    "reviewed": frozenset({"active", "approved"}),
    "approved": frozenset({"active", "reviewed"}),
    "resolved": frozenset(),
}
#: Verdicts an approver may only approve with a reason.
_NEEDS_REASON = frozenset({"violation", "no_rule"})

#: Stored columns of a finding (besides its status and dates), with their Arrow types.
_COLUMNS: dict[str, pa.DataType] = {
    "key": pa.string(), "kind": pa.string(), "verdict": pa.string(), "a_id": pa.string(),
    "b_id": pa.string(), "a_utility": pa.string(), "b_utility": pa.string(),
    "utility_pair": pa.string(), "a_owner": pa.string(), "b_owner": pa.string(),
    "owners": pa.string(), "road": pa.string(), "measured_m": pa.float64(),
    "required_m": pa.float64(), "uncertainty_m": pa.float64(), "rule_id": pa.string(),
    "x": pa.float64(), "y": pa.float64(), "z": pa.float64(),
}
#: What a listing shows of a finding.
_LISTED = ("key", "kind", "verdict", "status", "a_id", "b_id", "a_utility", "b_utility", "utility_pair",
           "a_owner", "b_owner", "owners", "road", "measured_m", "required_m", "uncertainty_m", "rule_id",
           "x", "y", "z", "first_seen", "last_seen", "resolved_at", "status_by", "status_at", "note")
_STATUS_ORDER = "array_position(ARRAY['new','active','reviewed','approved','resolved'], f.status)"
_VERDICT_ORDER = "array_position(ARRAY['violation','no_rule','uncertain'], f.verdict)"


# ----------------------------------------------------------------------------- from a scan


def _finding_dicts(result: Mapping[str, Any]) -> Iterator[dict]:
    """Every finding dict in a scan result: list entries with a ``key`` and a ``kind``, in any of
    the result's reports (collision, clearance, and whatever else the scan adds)."""
    for report in result.values():
        if not isinstance(report, Mapping):
            continue
        for value in report.values():
            if isinstance(value, list):
                yield from (f for f in value if isinstance(f, Mapping) and "key" in f and "kind" in f)


def _table_of_dicts(result: Mapping[str, Any]) -> pa.Table:
    """The finding dicts of a scan result as the table :func:`analysis.scan.finding_table` gives."""
    found = list(_finding_dicts(result))
    arrays = [pa.array([f.get(c) for f in found], type=pa.string(), from_pandas=True) for c in FINDING_TEXT]
    arrays += [pa.array(pd.to_numeric(pd.Series([f.get(c) for f in found], dtype=object), errors="coerce"),
                        type=pa.float64(), from_pandas=True) for c in FINDING_NUMBERS]
    return pa.Table.from_arrays(arrays, names=[*FINDING_TEXT, *FINDING_NUMBERS])


def _rows(found: pa.Table) -> pa.Table:
    """A scan's findings (:func:`analysis.scan.finding_table`) as rows of the ``finding`` table, in
    their order: a key listed twice is kept once (its first entry); clashes and violations without
    a verdict are violations (``no_rule`` kinds: no_rule); a clash's measured clearance is minus
    its overlap; compliant pairs are not findings; ``utility_pair`` is the two utilities sorted
    (``JS-RQ``). Column by column: a million-segment scan lists a few hundred thousand."""
    found = _first_of_each_key(found)
    verdict, kind = found.column("verdict"), found.column("kind")
    verdict = pc.if_else(pc.fill_null(pc.not_equal(verdict, ""), False), verdict,
                         pc.if_else(pc.equal(kind, "no_rule"), "no_rule", "violation"))
    measured = pc.coalesce(found.column("measured_m"), pc.negate(found.column("overlap_m")))
    a, b = pc.fill_null(found.column("a_utility"), ""), pc.fill_null(found.column("b_utility"), "")
    first_a = pc.less_equal(a, b)
    lo, hi = pc.if_else(first_a, a, b), pc.if_else(first_a, b, a)
    pair = pc.if_else(pc.equal(lo, ""), hi, pc.binary_join_element_wise(lo, hi, "-"))
    pair = pc.if_else(pc.equal(pair, ""), pa.scalar(None, pa.string()), pair)
    columns = {**{c: found.column(c) for c in _COLUMNS if c in found.column_names},
               "verdict": verdict, "measured_m": measured, "utility_pair": pair}
    rows = pa.table({c: pa.chunked_array(columns[c]).cast(t) for c, t in _COLUMNS.items()})
    return rows.filter(pc.not_equal(rows.column("verdict"), "compliant"))


def _first_of_each_key(found: pa.Table) -> pa.Table:
    """The table with each key's first row only, in order (hashed by Arrow: no sort of the keys)."""
    keys = found.column("key")
    if pc.count_distinct(keys, mode="all").as_py() == len(keys):
        return found
    first = pa.table({"key": keys, "i": np.arange(len(keys))}).group_by("key", use_threads=False).aggregate(
        [("i", "min")])
    return found.take(np.sort(first.column("i_min").to_numpy()))


def findings_of(result: Mapping[str, Any]) -> pd.DataFrame:
    """The findings of a scan result (``limit=None``) as rows of the ``finding`` table (text as
    object columns, None where missing): see :func:`_rows`."""
    rows = _rows(_table_of_dicts(result))
    return pd.DataFrame({c: pd.Series(rows.column(c).to_numpy(zero_copy_only=False),
                                      dtype=float if t == pa.float64() else object) for c, t in _COLUMNS.items()})


def _copy_in(conn: sa.Connection, table: str, rows: pa.Table) -> None:
    """COPY rows into a (temporary) table in PostgreSQL's binary format, encoded from Arrow by
    pgpq: no text for the server to parse (a scan's quarter of a million rows at 1M segments)."""
    rows = rows.select(list(_COLUMNS)).combine_chunks()
    encoder = pgpq.ArrowToPostgresBinaryEncoder(rows.schema)
    with conn.connection.driver_connection.cursor() as cur:
        with cur.copy(f"COPY {table} ({', '.join(_COLUMNS)}) FROM STDIN (FORMAT binary)") as copy:
            copy.write(encoder.write_header())
            for batch in rows.to_batches(max_chunksize=65_536):
                copy.write(encoder.write_batch(batch))
            copy.write(encoder.finish())


#: When the findings were last stored by a scan (``twin_meta``): every open finding was seen then.
_SCANNED = "findings_scanned_at"
_SCANNED_AT = f"(SELECT value::timestamptz FROM twin_meta WHERE key = '{_SCANNED}')"
#: What a listing reads for ``last_seen``: a found-again finding whose content did not change is
#: not written (the scan's time is kept once, :data:`_SCANNED`), so an open finding was last seen
#: by the latest stored scan.
_LAST_SEEN = (f"CASE WHEN f.status = 'resolved' THEN f.last_seen ELSE greatest(f.last_seen, {_SCANNED_AT}) "
              "END AS last_seen")
#: The select list of a listing.
_SELECTED = ", ".join(_LAST_SEEN if c == "last_seen" else "f." + c for c in _LISTED)
_CONTENT = [c for c in _COLUMNS if c != "key"]

#: The scan's rows that change the table, and the open findings it no longer reports: new keys,
#: found-again ones whose status the scan moves (new or resolved) or whose content differs
#: (``from_status`` null for a new key), and open ones not found (``found`` false). One join of
#: the run with the table: an unchanged re-scan leaves it empty.
_DIFF = f"""
CREATE TEMPORARY TABLE finding_diff ON COMMIT DROP AS
SELECT coalesce(r.key, f.key) AS key, {', '.join(f'r.{c}' for c in _CONTENT)}, f.status AS from_status,
       r.key IS NOT NULL AS found
FROM finding_run r FULL JOIN finding f ON f.key = r.key
WHERE CASE WHEN r.key IS NULL THEN f.status <> 'resolved'
           ELSE f.key IS NULL OR f.status IN ('new', 'resolved')
                OR ({', '.join(f'f.{c}' for c in _CONTENT)}) IS DISTINCT FROM ({', '.join(f'r.{c}' for c in _CONTENT)})
      END
"""

#: The status changes of a run: new keys, new or resolved ones found again, open ones not found.
_CHANGES = """
CREATE TEMPORARY TABLE finding_change ON COMMIT DROP AS
SELECT key, from_status,
       CASE WHEN NOT found THEN 'resolved' WHEN from_status IS NULL THEN 'new' ELSE 'active' END AS to_status
FROM finding_diff WHERE NOT found OR from_status IS NULL OR from_status IN ('new', 'resolved')
"""

#: Found again with a change: the content, and the status where the scan moves it.
_FOUND_AGAIN = f"""
UPDATE finding f SET
    {', '.join(f'{c} = d.{c}' for c in _CONTENT)},
    last_seen = now(), resolved_at = NULL,
    status = CASE WHEN f.status IN ('new', 'resolved') THEN 'active' ELSE f.status END,
    status_by = CASE WHEN f.status IN ('new', 'resolved') THEN :u ELSE f.status_by END,
    status_at = CASE WHEN f.status IN ('new', 'resolved') THEN now() ELSE f.status_at END
FROM finding_diff d
WHERE d.key = f.key AND d.found AND d.from_status IS NOT NULL
"""

_FIRST_FOUND = f"""
INSERT INTO finding ({', '.join(_COLUMNS)}, status, status_by)
SELECT {', '.join(f'd.{c}' for c in _COLUMNS)}, 'new', :u FROM finding_diff d WHERE d.from_status IS NULL
ORDER BY d.key
"""

#: Not found any more: resolved, last seen by the scan before this one.
_RESOLVED = f"""
UPDATE finding f SET status = 'resolved', resolved_at = now(), status_by = :u, status_at = now(),
    last_seen = greatest(f.last_seen, {_SCANNED_AT})
FROM finding_change c WHERE c.key = f.key AND c.to_status = 'resolved'
"""

#: The scan's status changes in the history, in key order (the key index is written in order).
_EVENTS = """
INSERT INTO finding_event (key, user_name, from_status, to_status, note)
SELECT key, :u, from_status, to_status, 'scan' FROM finding_change ORDER BY key
"""

#: The store's guess, before it locks, of how many events a run writes (``new`` findings found
#: again, and as many new or resolved keys as the run has more or fewer findings than are open;
#: ``found`` is the run's count), and the history's size (PostgreSQL's estimate).
_GUESS = """
SELECT abs(:found - count(*) FILTER (WHERE status <> 'resolved')) + count(*) FILTER (WHERE status = 'new'),
       (SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = 'finding_event'::regclass)
FROM finding
"""
#: A run writing at least this many events, and at least a sixteenth (:data:`BULK_SHARE`) of the
#: history, writes them in bulk: the history's foreign key is dropped and added again (one check of
#: the whole history by a join) instead of one key lookup per event (the foreign key's checks were
#: half of the events' write).
BULK_EVENTS = 20_000
BULK_SHARE = 1 / 16


def store_findings(engine: sa.Engine | sa.Connection, result: Mapping[str, Any], *, user: str) -> dict:
    """Store a scan's findings (the result of ``scan_network(..., limit=None)``) in one transaction.

    New keys come in ``new``; ``new`` and ``resolved`` ones found again become ``active``;
    reviewed and approved ones keep their status; open findings the scan no longer reports
    become ``resolved``. Every status change is written to ``finding_event`` under ``user``.
    Returns the counts: ``found``, ``new``, ``active_again`` (new or resolved ones seen
    again), ``resolved`` and ``open`` (not resolved, after the run).
    """
    return _stored(engine, _rows(_table_of_dicts(result)), user)


def _stored(engine: sa.Engine | sa.Connection, rows: pa.Table, user: str) -> dict:
    """:func:`store_findings` of rows of the ``finding`` table (:func:`_rows`)."""
    if isinstance(engine, sa.Connection):
        return _store(engine, rows, user)
    with engine.begin() as conn:
        return _store(conn, rows, user)


def _store(conn: sa.Connection, rows: pa.Table, user: str) -> dict:
    """The set-based merge: only rows whose content or status changes are written, events only for
    status changes; one stored scan at a time (the table lock lets readers on, but for a run of
    many events: see :func:`_bulk`)."""
    bulk = _bulk(conn, rows.num_rows)
    conn.execute(sa.text("LOCK TABLE finding, finding_event IN ACCESS EXCLUSIVE MODE" if bulk
                         else "LOCK TABLE finding IN SHARE ROW EXCLUSIVE MODE"))
    # the join of the run with the table hashes the whole table: 58 MB at 1M segments, three times
    # that at 3M, past the default's 128 MB (work_mem 64 MB x 2), where it would go to disk in batches
    conn.execute(sa.text("SET LOCAL work_mem = '256MB'"))
    conn.execute(sa.text(
        "CREATE TEMPORARY TABLE finding_run ON COMMIT DROP AS SELECT " + ", ".join(_COLUMNS)
        + " FROM finding WITH NO DATA"))
    _copy_in(conn, "finding_run", rows)
    conn.execute(sa.text("ANALYZE finding_run (key)"))  # its size and keys: the plans' joins
    conn.execute(sa.text(_DIFF))
    conn.execute(sa.text("ANALYZE finding_diff (key, from_status)"))
    conn.execute(sa.text(_CHANGES))
    conn.execute(sa.text(_FOUND_AGAIN), {"u": user})
    conn.execute(sa.text(_FIRST_FOUND), {"u": user})
    conn.execute(sa.text(_RESOLVED), {"u": user})
    if bulk:
        _events_in_bulk(conn, user)
    else:
        conn.execute(sa.text(_EVENTS), {"u": user})
    conn.execute(sa.text(f"INSERT INTO twin_meta VALUES ('{_SCANNED}', now()::text) "
                         "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"))
    changed = dict(conn.execute(sa.text(
        "SELECT to_status, count(*) FROM finding_change GROUP BY to_status")).all())
    open_ = conn.execute(sa.text("SELECT count(*) FROM finding WHERE status <> 'resolved'")).scalar()
    conn.execute(sa.text("DROP TABLE finding_change, finding_diff, finding_run"))
    return {"found": int(rows.num_rows), "new": int(changed.get("new", 0)),
            "active_again": int(changed.get("active", 0)), "resolved": int(changed.get("resolved", 0)),
            "open": int(open_)}


def _bulk(conn: sa.Connection, found: int) -> bool:
    """Whether a run of ``found`` findings writes its events in bulk (:data:`BULK_EVENTS`): guessed
    on a connection of its own before the store locks anything, so the store takes its locks
    first thing. In bulk, the store holds both tables exclusively (dropping a foreign key locks
    them so), and readers wait for it: a first scan, or the re-scan after it."""
    try:
        with conn.engine.begin() as other:
            # the caller's own transaction may hold the table (TRUNCATE): then no guess, no bulk
            other.execute(sa.text("SET LOCAL lock_timeout = '200ms'"))
            events, history = other.execute(sa.text(_GUESS), {"found": found}).one()
    except sa.exc.OperationalError:
        return False
    return events >= BULK_EVENTS and events >= BULK_SHARE * history


def _events_in_bulk(conn: sa.Connection, user: str) -> None:
    """The run's events (:data:`_EVENTS`) with the history's foreign key to ``finding`` dropped
    meanwhile and added again as it was: PostgreSQL checks the whole history in one join (it
    fails, and the store with it, should an event name no finding)."""
    name, definition = conn.execute(sa.text(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE contype = 'f' "
        "AND conrelid = 'finding_event'::regclass AND confrelid = 'finding'::regclass")).one()
    conn.execute(sa.text(f'ALTER TABLE finding_event DROP CONSTRAINT "{name}"'))
    conn.execute(sa.text(_EVENTS), {"u": user})
    conn.execute(sa.text(f'ALTER TABLE finding_event ADD CONSTRAINT "{name}" {definition}'))


def scan_and_store(
    engine: sa.Engine,
    *,
    user: str,
    store: bool = True,
    limit: int | None = None,
    **scan: Any,
) -> dict:
    """The whole-network scan (:func:`analysis.scan.scan_network`, ``scan`` its keyword
    arguments) with every finding stored (``store=True``); the result lists the first ``limit``
    findings of each kind and carries ``findings`` (what :func:`store_findings` counted, or
    ``None`` with ``store=False``). The findings go to the store as one table
    (:func:`analysis.scan.scan_findings`), not as the result's dicts.
    """
    if not store:
        return {**scan_network(engine, limit=limit, **scan), "findings": None}
    result, found = scan_findings(engine, limit=limit, **scan)
    return {**result, "findings": _stored(engine, _rows(found), user)}


# ----------------------------------------------------------------------------- reading


def _pair(text: str, what: str) -> list[str]:
    """``JS-RQ`` or ``JS/RQ`` (utilities), ``owner A/owner B`` (owners) -> both; one name -> [it]."""
    parts = [p.strip() for p in re.split(r"[-/]" if what == "utility" else "/", text) if p.strip()]
    if not 1 <= len(parts) <= 2:
        raise InputError(f"{what} pair {text!r}: give one {what} or two, as "
                         + ("JS-RQ" if what == "utility" else "owner A/owner B"),
                         zh=f"{'管线类别' if what == 'utility' else '权属单位'}对 {text!r}：请给一个或两个，如 "
                            + ("JS-RQ" if what == "utility" else "权属单位A/权属单位B"))
    return parts


def _filters(status: Iterable[str] | None, verdict: Iterable[str] | None, road: str | None,
             utility_pair: str | None, owner_pair: str | None) -> tuple[str, dict]:
    """The WHERE clause of a listing and its parameters; unknown statuses or verdicts are input errors."""
    where, params = ["TRUE"], {}
    for name, values, allowed in (("status", status, STATUSES), ("verdict", verdict, VERDICTS)):
        wanted = [v for v in (values or []) if v]
        bad = [v for v in wanted if v not in allowed]
        if bad:
            raise InputError(f"{name} {bad[0]!r} is not one of {', '.join(allowed)}",
                             zh=f"{name} {bad[0]!r} 不是 {'、'.join(allowed)} 之一")
        if wanted:
            where.append(f"f.{name} = ANY(:{name})")
            params[name] = wanted
    if road:
        where.append("(f.road = :road OR :road = ANY(string_to_array(f.road, ' / ')))")
        params["road"] = road
    if utility_pair:
        u = [p.upper() for p in _pair(utility_pair, "utility")]
        params.update(u1=u[0], u2=u[-1])
        where.append("((f.a_utility = :u1 AND f.b_utility = :u2) OR (f.a_utility = :u2 AND f.b_utility = :u1))"
                     if len(u) == 2 else "(f.a_utility = :u1 OR f.b_utility = :u1)")
    if owner_pair:
        o = _pair(owner_pair, "owner")
        params.update(o1=o[0], o2=o[-1])
        where.append("((f.a_owner = :o1 AND f.b_owner = :o2) OR (f.a_owner = :o2 AND f.b_owner = :o1))"
                     if len(o) == 2 else "(f.a_owner = :o1 OR f.b_owner = :o1)")
    return " AND ".join(where), params


def _row(r: Mapping[str, Any]) -> dict:
    d = plain({c: r[c] for c in _LISTED})
    d["status_label"] = STATUS_LABELS.get(d["status"], d["status"])
    d["verdict_label"] = VERDICT_LABELS.get(d["verdict"], d["verdict"])
    return d


def list_findings(
    engine: sa.Engine,
    *,
    status: Iterable[str] | None = None,
    verdict: Iterable[str] | None = None,
    road: str | None = None,
    utility_pair: str | None = None,
    owner_pair: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> dict:
    """Stored findings matching the filters, open ones first, violations before the rest.

    ``road`` matches a finding on that road or across it; ``utility_pair`` is ``JS-RQ`` (either
    order) or one utility; ``owner_pair`` is ``owner A/owner B`` or one owner. Returns
    ``findings`` (``limit`` from ``offset``), ``numberMatched``, ``numberReturned`` and the
    matched findings' ``counts`` by status and by verdict.
    """
    if limit < 0 or offset < 0:
        raise InputError("limit and offset must not be negative", zh="limit 与 offset 不能为负数")
    where, params = _filters(status, verdict, road, utility_pair, owner_pair)
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            f"SELECT {_SELECTED} FROM finding f WHERE {where} "
            f"ORDER BY {_STATUS_ORDER}, {_VERDICT_ORDER}, f.measured_m - f.required_m, f.key "
            "LIMIT :limit OFFSET :offset"), {**params, "limit": limit, "offset": offset}).mappings().all()
        counts = conn.execute(sa.text(
            f"SELECT f.status, f.verdict, count(*) AS n FROM finding f WHERE {where} GROUP BY 1, 2"),
            params).all()
    by_status = {s: 0 for s in STATUSES}
    by_verdict = {v: 0 for v in VERDICTS}
    for s, v, n in counts:
        by_status[s] = by_status.get(s, 0) + n
        by_verdict[v] = by_verdict.get(v, 0) + n
    return {"findings": [_row(r) for r in rows], "numberMatched": sum(by_status.values()),
            "numberReturned": len(rows), "counts": {"status": by_status, "verdict": by_verdict}}


def get_finding(engine: sa.Engine | sa.Connection, key: str) -> dict:
    """One stored finding and its ``history`` (who moved it, when, from, to, note)."""
    if isinstance(engine, sa.Engine):
        with engine.connect() as conn:
            return get_finding(conn, key)
    row = engine.execute(sa.text(f"SELECT {_SELECTED} FROM finding f "
                                 "WHERE f.key = :k"), {"k": key}).mappings().first()
    if row is None:
        raise NotFound(f"no finding {key!r}", zh=f"没有问题 {key!r}")
    history = engine.execute(sa.text(
        "SELECT at, user_name, from_status, to_status, note FROM finding_event WHERE key = :k ORDER BY at, id"),
        {"k": key}).mappings().all()
    return {**_row(row), "history": [plain(dict(h)) for h in history]}


# ----------------------------------------------------------------------------- deciding


def set_status(
    engine: sa.Engine,
    key: str,
    status: str,
    *,
    user: str,
    note: str | None = None,
    before_commit: Callable[[sa.Connection, dict], None] | None = None,
) -> dict:
    """Move a finding to ``status`` (see :data:`TRANSITIONS`), kept in its history with ``note``.

    A status the finding cannot move to is a :class:`Conflict`; approving a violation or a pair
    no rule covers needs a ``note`` (the reason). ``before_commit(conn, finding)`` runs on the
    same connection before the commit (the API writes its audit entry there). Returns the
    finding as :func:`get_finding` gives it.
    """
    if status not in STATUSES:
        raise InputError(f"status {status!r} is not one of {', '.join(STATUSES)}",
                         zh=f"状态 {status!r} 不是 {'、'.join(STATUSES)} 之一")
    note = (note or "").strip() or None
    with engine.begin() as conn:
        row = conn.execute(sa.text("SELECT status, verdict FROM finding WHERE key = :k FOR UPDATE"),
                           {"k": key}).first()
        if row is None:
            raise NotFound(f"no finding {key!r}", zh=f"没有问题 {key!r}")
        current, verdict = row
        if status not in TRANSITIONS[current]:
            allowed = ", ".join(sorted(TRANSITIONS[current])) or "none (the scan resolves and reopens it)"
            raise Conflict(f"finding {key} is {current} ({STATUS_LABELS[current]}); it may move to: {allowed}",
                           zh=f"问题 {key} 状态为{STATUS_LABELS[current]}（{current}），只能改为：{allowed}")
        if status == "approved" and verdict in _NEEDS_REASON and not note:
            raise InputError(f"approving a finding judged {verdict} ({VERDICT_LABELS[verdict]}) needs a reason "
                             "(note)",
                             zh=f"批准判定为{VERDICT_LABELS[verdict]}（{verdict}）的问题须在备注（note）中说明理由")
        conn.execute(sa.text("UPDATE finding SET status = :s, status_by = :u, status_at = now(), note = :n "
                             "WHERE key = :k"), {"s": status, "u": user, "n": note, "k": key})
        conn.execute(sa.text("INSERT INTO finding_event (key, user_name, from_status, to_status, note) "
                             "VALUES (:k, :u, :f, :s, :n)"),
                     {"k": key, "u": user, "f": current, "s": status, "n": note})
        finding = get_finding(conn, key)
        if before_commit is not None:
            before_commit(conn, finding)
    return finding
