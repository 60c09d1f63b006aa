"""Edits of single features as new versions; feature history; the network as of a time.

The triggers of migration 0001 do the versioning: every UPDATE or DELETE of a feature row
copies the old row into ``<table>_history`` (with ``valid_to`` and ``op``) and bumps
``version``. This module adds what an edit needs around them:

- every edit is a :class:`Edit`: one ``batch`` row of kind ``edit`` (who, when, what
  changed), whose id goes on every row the edit writes, so edits are attributable in the
  twin itself;
- optimistic concurrency: an edit names the ``version`` its user saw, and a row that has
  moved on since is a :class:`~twin.errors.Conflict`; rows are locked ``FOR UPDATE`` while
  the edit runs, and edits wait while a survey import holds the ingest lock;
- retire (``retired_at``/``retired_reason``: gone from the ``current_*`` views, kept in
  history) and hard delete (the trigger keeps the last version with ``op = 'delete'``);
- :func:`history` (every version, oldest first, with the columns each one changed),
  :func:`feature` (one feature now or as of a time) and :func:`as_of` (the network's
  summary as it stood at a time, from the ``<table>_as_of(t)`` functions).

Edits that derive geometry from survey values (add, move, split, merge, node and segment
attributes) live in :mod:`ingest.derive`, which checks them with the ingest's own checks and
writes them through :func:`insert_features` and :func:`update_features` here.

Every function takes a connection in the caller's transaction; nothing here commits.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from twin.db import FEATURE_TABLES
from twin.errors import Conflict, InputError, NotFound
from twin.jsonable import plain
from twin.schema import edit_types

__all__ = [
    "KINDS",
    "ATTRIBUTES",
    "Change",
    "Edit",
    "begin_edit",
    "finish_edit",
    "lock",
    "insert_features",
    "update_features",
    "attach_valves",
    "follow_nodes",
    "set_attributes",
    "retire",
    "delete",
    "history",
    "feature",
    "as_of",
    "timeline",
    "changes_between",
    "check_text",
]

#: Feature kinds: the versioned tables.
KINDS: tuple[str, ...] = FEATURE_TABLES
#: The feature kinds in Chinese, for messages.
_KIND_ZH = {"node": "管点", "segment": "管段", "valve": "阀门", "source": "水源", "customer": "用户"}

#: Attributes an edit may set directly on valves, sources and customers: column -> type.
#: (Node and segment attributes feed derived columns: see :mod:`ingest.derive`.)
ATTRIBUTES: dict[str, dict[str, type]] = {k: edit_types(k) for k in ("valve", "source", "customer")}

#: Columns that are bookkeeping, not a feature's content (left out of "changed").
_BOOKKEEPING = frozenset({"version", "valid_from", "valid_to", "op", "batch_id", "geom_ewkb"})
MAX_TEXT = 500
_LIVE = "retired_at IS NULL"


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise InputError(f"unknown feature kind {kind!r}; one of {', '.join(KINDS)}",
                         zh=f"未知要素类型 {kind!r}；可选 {', '.join(KINDS)}")
    return kind


def check_text(value: object, what: str, *, max_length: int = MAX_TEXT, empty: bool = False) -> str:
    """A text value fit for the twin: a string, not too long, no NUL or control characters."""
    if not isinstance(value, str):
        raise InputError(f"{what} must be text, not {type(value).__name__}",
                         zh=f"{what} 须为文本，而不是 {type(value).__name__}")
    if not empty and not value.strip():
        raise InputError(f"{what} must not be empty", zh=f"{what} 不能为空")
    if len(value) > max_length:
        raise InputError(f"{what} is longer than {max_length} characters",
                         zh=f"{what} 超过 {max_length} 个字符")
    if any(ord(c) < 32 and c not in "\t\n" for c in value):
        raise InputError(f"{what} contains control characters", zh=f"{what} 含有控制字符")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(f"{what} is not valid Unicode text",
                         zh=f"{what} 不是有效的 Unicode 文本") from exc
    return value


# -- the edit and its batch ------------------------------------------------------------------
@dataclass
class Change:
    """One feature an edit touched: ``added``, ``revived``, ``changed``, ``retired`` or ``deleted``."""

    kind: str
    id: str
    change: str
    version: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "change": self.change, "version": self.version}


@dataclass
class Edit:
    """One edit: its batch, the features it touched (with their new versions) and warnings."""

    op: str
    user: str
    batch_id: int
    changes: list[Change] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def add(self, kind: str, id: str, change: str, version: int | None = None) -> None:
        self.changes.append(Change(kind, str(id), change, version))

    @property
    def affected(self) -> list[str]:
        """Ids of every feature touched, in order, once each."""
        return list(dict.fromkeys(c.id for c in self.changes))

    def counts(self) -> dict[str, dict[str, int]]:
        """Touched features per table and change, as ingest batches count them."""
        out: dict[str, dict[str, int]] = {}
        for (kind, change), n in Counter((c.kind, c.change) for c in self.changes).items():
            out.setdefault(kind, {})[change] = n
        return out

    def as_dict(self) -> dict[str, Any]:
        return plain({
            "op": self.op, "batch_id": self.batch_id, "user": self.user,
            "features": [c.as_dict() for c in self.changes], "counts": self.counts(),
            "warnings": self.warnings, **self.notes,
        })  # type: ignore[return-value]


#: The advisory lock of a twin's writes: imports take it exclusively, edits shared. Keyed by the
#: twin's schema: advisory locks are database-wide, and one twin's import must not stall another's.
INGEST_LOCK = "hashtext('twin.ingest.' || current_schema())"


def begin_edit(conn: sa.Connection, user: str, op: str) -> Edit:
    """Open an edit: wait out any running import, then record its batch (kind ``edit``)."""
    check_text(user, "the user name", max_length=200)
    # Imports hold this lock exclusively; edits share it, so they wait only for imports.
    conn.execute(sa.text(f"SELECT pg_advisory_xact_lock_shared({INGEST_LOCK})"))
    batch_id = conn.execute(
        sa.text("INSERT INTO batch (kind, scope, created_by, status, report) "
                "VALUES ('edit', 'edit', :u, 'applied', CAST(:r AS jsonb)) RETURNING id"),
        {"u": user, "r": json.dumps({"op": op})},
    ).scalar_one()
    return Edit(op=op, user=user, batch_id=int(batch_id))


def finish_edit(conn: sa.Connection, edit: Edit) -> Edit:
    """Record what the edit did on its batch (counts and the touched features)."""
    if not edit.changes:
        edit.notes.setdefault("unchanged", True)
    report = {"op": edit.op, "features": [c.as_dict() for c in edit.changes], "warnings": edit.warnings,
              **edit.notes}
    conn.execute(
        sa.text("UPDATE batch SET counts = CAST(:c AS jsonb), report = CAST(:r AS jsonb) WHERE id = :id"),
        {"c": json.dumps({"changes": edit.counts()}),
         "r": json.dumps(plain(report), ensure_ascii=False), "id": edit.batch_id},
    )
    return edit


# -- reading and locking rows ----------------------------------------------------------------
def lock(
    conn: sa.Connection,
    kind: str,
    ids: Sequence[str],
    versions: Mapping[str, int | None] | None = None,
    *,
    live: bool = True,
    share: bool = False,
) -> dict[str, dict[str, Any]]:
    """The rows of ``ids``, locked for the edit; missing ids, retired ones (when ``live``) and
    versions other than the ones named are errors.

    Rows come with ``easting``/``northing`` (plan position of points) and ``ewkb`` (hex).
    """
    _kind(kind)
    ids = [check_text(i, f"a {kind} id", max_length=200) for i in ids]
    rows = conn.execute(
        sa.text(f"SELECT *, encode(ST_AsEWKB(geom), 'hex') AS ewkb, "
                f"CASE WHEN ST_GeometryType(geom) = 'ST_Point' THEN ST_X(geom) END AS easting, "
                f"CASE WHEN ST_GeometryType(geom) = 'ST_Point' THEN ST_Y(geom) END AS northing "
                f"FROM {kind} WHERE id = ANY(:ids) ORDER BY id "
                f"FOR {'SHARE' if share else 'UPDATE'}"),
        {"ids": list(ids)},
    ).mappings().all()
    found = {r["id"]: dict(r) for r in rows}
    for i in ids:
        row = found.get(i)
        if row is None:
            raise NotFound(f"no {kind} {i!r} in the twin",
                           zh=f"孪生库中没有{_KIND_ZH.get(kind, kind)} {i!r}")
        if live and row["retired_at"] is not None:
            raise Conflict(f"{kind} {i!r} was retired on {row['retired_at']:%Y-%m-%d %H:%M} "
                           f"({row['retired_reason'] or 'no reason given'}); it cannot be edited",
                           zh=f"{_KIND_ZH.get(kind, kind)} {i!r} 已于 {row['retired_at']:%Y-%m-%d %H:%M} 废弃"
                           f"（{row['retired_reason'] or '未注明原因'}）；不能再编辑")
        wanted = (versions or {}).get(i)
        if wanted is not None and wanted != row["version"]:
            raise Conflict(f"{kind} {i!r} is at version {row['version']}, not {wanted}: it changed "
                           "since you read it; reload it and edit again",
                           zh=f"{_KIND_ZH.get(kind, kind)} {i!r} 的版本为 {row['version']}，不是 {wanted}：读取后已被修改（版本冲突）；"
                           "请重新加载后再编辑")
    return found


def live_ids(conn: sa.Connection, sql: str, params: Mapping[str, Any]) -> list[str]:
    return [r[0] for r in conn.execute(sa.text(sql), dict(params))]


# -- writing rows ----------------------------------------------------------------------------
def _records_json(records: Iterable[Mapping[str, Any]]) -> str:
    return json.dumps([plain(dict(r)) for r in records], ensure_ascii=False, allow_nan=False)


def insert_features(conn: sa.Connection, edit: Edit, kind: str, records: Sequence[Mapping[str, Any]]) -> None:
    """Add features (records of column -> value, ``geom`` as hex EWKB).

    An id in use by a live feature is a conflict. An id of a retired feature revives it as
    its next version; an id only left in history (deleted) continues its version count.
    """
    _kind(kind)
    if not records:
        return
    for r in records:
        check_text(r["id"], f"a {kind} id", max_length=200)
    ids = [r["id"] for r in records]
    if len(set(ids)) != len(ids):
        raise InputError(f"{kind} ids repeat within one edit: {', '.join(sorted(ids))}",
                         zh=f"同一次编辑中{_KIND_ZH.get(kind, kind)}编号重复：{', '.join(sorted(ids))}")
    have = {r.id: r for r in conn.execute(
        sa.text(f"SELECT id, retired_at FROM {kind} WHERE id = ANY(:ids) FOR UPDATE"), {"ids": ids})}
    live = sorted(i for i, r in have.items() if r.retired_at is None)
    if live:
        raise Conflict(f"{kind} id(s) {', '.join(live)} are in use; choose other ids",
                       zh=f"{_KIND_ZH.get(kind, kind)}编号 {', '.join(live)} 已被使用；请换用其他编号")
    revived = [r for r in records if r["id"] in have]
    fresh = [r for r in records if r["id"] not in have]
    if revived:
        update_features(conn, edit, kind, revived, revive=True)
    if fresh:
        cols = sorted({c for r in fresh for c in r} | {"batch_id"})
        names = ", ".join(cols)
        picked = ", ".join(":batch" if c == "batch_id" else f"r.{c}" for c in cols)
        rows = conn.execute(
            sa.text(
                f"INSERT INTO {kind} ({names}, version) "
                f"SELECT {picked}, coalesce((SELECT max(h.version) + 1 FROM {kind}_history h "
                f"WHERE h.id = r.id), 1) "
                f"FROM jsonb_populate_recordset(NULL::{kind}, CAST(:rows AS jsonb)) AS r "
                f"RETURNING id, version"),
            {"rows": _records_json(fresh), "batch": edit.batch_id},
        ).all()
        for row in sorted(rows, key=lambda r: ids.index(r.id)):
            edit.add(kind, row.id, "added", row.version)


def update_features(conn: sa.Connection, edit: Edit, kind: str, records: Sequence[Mapping[str, Any]],
                    *, revive: bool = False) -> list[str]:
    """Write new values into existing features: one new version each, only where a value differs.

    Returns the ids that changed. With ``revive``, retired features come back to life.
    """
    _kind(kind)
    if not records:
        return []
    cols = sorted({c for r in records for c in r} - {"id", "batch_id"})
    if revive:
        cols = sorted(set(cols) | {"retired_at", "retired_reason"})
    targets = ", ".join([*cols, "batch_id"])
    values = ", ".join([*(f"r.{c}" for c in cols), ":batch"])
    compared = [c for c in cols if c != "geom"]
    old = ", ".join([*(f"t.{c}" for c in compared), *(["ST_AsEWKB(t.geom)"] if "geom" in cols else [])])
    new = ", ".join([*(f"r.{c}" for c in compared), *(["ST_AsEWKB(r.geom)"] if "geom" in cols else [])])
    rows = conn.execute(
        sa.text(
            f"UPDATE {kind} AS t SET ({targets}) = ({values}) "
            f"FROM jsonb_populate_recordset(NULL::{kind}, CAST(:rows AS jsonb)) AS r "
            f"WHERE t.id = r.id AND ({old}) IS DISTINCT FROM ({new}) "
            f"RETURNING t.id, t.version"),
        {"rows": _records_json({**r, **({"retired_at": None, "retired_reason": None} if revive else {})}
                               for r in records),
         "batch": edit.batch_id},
    ).all()
    order = [r["id"] for r in records]
    for row in sorted(rows, key=lambda r: order.index(r.id)):
        edit.add(kind, row.id, "revived" if revive else "changed", row.version)
    return [r.id for r in rows]


def attach_valves(conn: sa.Connection, edit: Edit, assignments: Mapping[str, str]) -> None:
    """Put valves on segments (valve id -> segment id): each sits at its node's end of its new
    segment, at the node's plan position and the pipe's centreline height there."""
    if not assignments:
        return
    _place_valves(conn, edit, "v.id = ANY(:ids)",
                  {"ids": list(assignments), "segs": json.dumps(dict(assignments))},
                  segment="coalesce(CAST(:segs AS jsonb) ->> v.id, v.segment_id)")


def follow_nodes(conn: sa.Connection, edit: Edit, node_ids: Sequence[str]) -> None:
    """Bring the live valves, sources and customers at these nodes to the nodes' positions
    (valves at their pipe's end height, sources and customers at the ground)."""
    if not node_ids:
        return
    _place_valves(conn, edit, "v.node_id = ANY(:ids)", {"ids": list(node_ids)}, segment="v.segment_id")
    for kind in ("source", "customer"):
        rows = conn.execute(
            sa.text(f"UPDATE {kind} AS f SET geom = n.geom, batch_id = :batch FROM node n "
                    f"WHERE n.id = f.node_id AND f.node_id = ANY(:ids) AND f.retired_at IS NULL "
                    f"AND ST_AsEWKB(f.geom) <> ST_AsEWKB(n.geom) RETURNING f.id, f.version"),
            {"ids": list(node_ids), "batch": edit.batch_id},
        ).all()
        for row in rows:
            edit.add(kind, row.id, "changed", row.version)


def _place_valves(conn: sa.Connection, edit: Edit, where: str, params: dict[str, Any], *, segment: str) -> None:
    rows = conn.execute(
        sa.text(
            f"WITH placed AS ("
            f"  SELECT v.id, s.id AS segment_id, "
            f"         ST_SetSRID(ST_MakePoint(ST_X(n.geom), ST_Y(n.geom), "
            f"             CASE WHEN s.from_node = v.node_id THEN s.from_z ELSE s.to_z END), "
            f"             ST_SRID(n.geom)) AS geom "
            f"  FROM valve v JOIN segment s ON s.id = {segment} JOIN node n ON n.id = v.node_id "
            f"  WHERE {where} AND v.retired_at IS NULL) "
            f"UPDATE valve AS v SET segment_id = p.segment_id, geom = p.geom, batch_id = :batch "
            f"FROM placed p WHERE v.id = p.id AND (v.segment_id <> p.segment_id "
            f"      OR ST_AsEWKB(v.geom) <> ST_AsEWKB(p.geom)) "
            f"RETURNING v.id, v.version"),
        {**params, "batch": edit.batch_id},
    ).all()
    for row in rows:
        edit.add("valve", row.id, "changed", row.version)


def _typed(kind: str, column: str, value: object, kinds: Mapping[str, type]) -> object:
    if column not in kinds:
        raise InputError(f"{column!r} is not an attribute an edit may set on a {kind}; "
                         f"editable: {', '.join(sorted(kinds))}",
                         zh=f"{column!r} 不是编辑可设置的{_KIND_ZH.get(kind, kind)}属性；可编辑：{', '.join(sorted(kinds))}")
    want = kinds[column]
    if value is None:
        if want is bool:
            raise InputError(f"{kind} {column} is true or false, not empty",
                             zh=f"{_KIND_ZH.get(kind, kind)} {column} 须为 true 或 false，不能为空")
        return None
    if want is bool:
        if not isinstance(value, bool):
            raise InputError(f"{kind} {column} is true or false, not {value!r}",
                             zh=f"{_KIND_ZH.get(kind, kind)} {column} 须为 true 或 false，而不是 {value!r}")
        return value
    if want is float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InputError(f"{kind} {column} is a finite number, not {value!r}",
                             zh=f"{_KIND_ZH.get(kind, kind)} {column} 须为有限数值，而不是 {value!r}")
        if abs(value) > 1e12:
            raise InputError(f"{kind} {column} {value!r} is out of range",
                             zh=f"{_KIND_ZH.get(kind, kind)} {column} 的值 {value!r} 超出范围")
        return float(value)
    if want is int:
        if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
            raise InputError(f"{kind} {column} is a whole number, not {value!r}",
                             zh=f"{_KIND_ZH.get(kind, kind)} {column} 须为整数，而不是 {value!r}")
        if abs(value) > 2**31 - 1:
            raise InputError(f"{kind} {column} {value!r} is out of range",
                             zh=f"{_KIND_ZH.get(kind, kind)} {column} 的值 {value!r} 超出范围")
        return int(value)
    return check_text(value, f"{kind} {column}")


def typed_values(kind: str, values: Mapping[str, object], kinds: Mapping[str, type]) -> dict[str, object]:
    """Check each value against the whitelist of editable columns and their types."""
    if not values:
        raise InputError("name at least one attribute to change", zh="请至少指定一个要修改的属性")
    return {c: _typed(kind, c, v, kinds) for c, v in values.items()}


def set_attributes(conn: sa.Connection, user: str, kind: str, id: str, values: Mapping[str, object],
                   *, version: int | None = None) -> Edit:
    """Change attributes of a valve, source or customer (a new version if anything differs)."""
    if kind not in ATTRIBUTES:
        raise InputError(f"attributes of a {kind} are changed through ingest.derive (they feed derived columns)",
                         zh=f"{_KIND_ZH.get(kind, kind)}的属性须通过 ingest.derive 修改（它们用于推导其他字段）")
    typed = typed_values(kind, values, ATTRIBUTES[kind])
    edit = begin_edit(conn, user, "attributes")
    lock(conn, kind, [id], {id: version})
    update_features(conn, edit, kind, [{"id": id, **typed}])
    return finish_edit(conn, edit)


# -- retire and delete -----------------------------------------------------------------------
def _dependants(conn: sa.Connection, kind: str, id: str) -> list[tuple[str, str]]:
    """Live features that go with this one (valves on a segment; what stands at a node)."""
    if kind == "segment":
        return [("valve", i) for i in live_ids(conn, f"SELECT id FROM valve WHERE segment_id = :i AND {_LIVE} "
                                                      "ORDER BY id FOR UPDATE", {"i": id})]
    if kind == "node":
        users = live_ids(conn, f"SELECT id FROM segment WHERE (from_node = :i OR to_node = :i) AND {_LIVE} "
                               "ORDER BY id", {"i": id})
        if users:
            shown = ", ".join(users[:10]) + (" ..." if len(users) > 10 else "")
            raise Conflict(f"node {id!r} is used by {len(users)} current segment(s): {shown}; "
                           "retire, delete or merge those first",
                           zh=f"管点 {id!r} 被 {len(users)} 段现存管线使用：{shown}；请先废弃、删除或合并这些管线")
        return [(k, i) for k in ("valve", "source", "customer")
                for i in live_ids(conn, f"SELECT id FROM {k} WHERE node_id = :i AND {_LIVE} ORDER BY id "
                                        "FOR UPDATE", {"i": id})]
    return []


def retire(conn: sa.Connection, user: str, kind: str, id: str, reason: str, *,
           version: int | None = None) -> Edit:
    """Retire a feature: it leaves the current network and stays in history.

    A segment takes its valves along; a node must not be used by a current segment and takes
    the valves, sources and customers at it along.
    """
    _kind(kind)
    reason = check_text(reason, "the reason").strip()
    edit = begin_edit(conn, user, "retire")
    lock(conn, kind, [id], {id: version})
    targets = [(kind, id), *_dependants(conn, kind, id)]
    for k, i in targets:
        why = reason if (k, i) == (kind, id) else f"{kind} {id} retired: {reason}"
        row = conn.execute(
            sa.text(f"UPDATE {k} SET retired_at = now(), retired_reason = :r, batch_id = :b "
                    f"WHERE id = :i AND {_LIVE} RETURNING version"),
            {"r": why, "b": edit.batch_id, "i": i},
        ).first()
        if row is not None:
            edit.add(k, i, "retired", row.version)
    return finish_edit(conn, edit)


def delete(conn: sa.Connection, user: str, kind: str, id: str, *, version: int | None = None) -> Edit:
    """Delete a feature for good (its versions stay in history, the last with ``op = 'delete'``).

    A segment takes its live valves along; a node must not be used by a current segment and
    takes the live valves, sources and customers at it along.
    """
    _kind(kind)
    edit = begin_edit(conn, user, "delete")
    row = lock(conn, kind, [id], {id: version}, live=False)[id]
    targets = [(kind, id), *_dependants(conn, kind, id)]
    for k, i in targets:
        gone = conn.execute(sa.text(f"DELETE FROM {k} WHERE id = :i RETURNING version"), {"i": i}).first()
        if gone is not None:
            edit.add(k, i, "deleted", gone.version)
    edit.notes["deleted_was_retired"] = row["retired_at"] is not None
    return finish_edit(conn, edit)


# -- history and the network as of a time -----------------------------------------------------
def _geometry_sql(srid: int | None) -> str:
    target = f"ST_Transform(geom, {int(srid)})" if srid else "geom"
    return f"CAST(ST_AsGeoJSON({target}, 9, 0) AS json) AS geometry, encode(ST_AsEWKB(geom), 'hex') AS geom_ewkb"


def _version_rows(conn: sa.Connection, kind: str, id: str, srid: int | None) -> list[dict[str, Any]]:
    cols = _columns(conn, kind)
    listed = ", ".join(c for c in cols if c != "geom")
    sql = (f"SELECT {listed}, valid_to, op, {_geometry_sql(srid)} FROM ("
           f"  SELECT {', '.join(cols)}, valid_to, op FROM {kind}_history WHERE id = :i "
           f"  UNION ALL "
           f"  SELECT {', '.join(cols)}, NULL::timestamptz, NULL::text FROM {kind} WHERE id = :i) AS v "
           f"ORDER BY valid_from, version")
    return [dict(r) for r in conn.execute(sa.text(sql), {"i": id}).mappings()]


def _columns(conn: sa.Connection, kind: str) -> list[str]:
    rows = conn.execute(
        sa.text("SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(:t) AND attnum > 0 "
                "AND NOT attisdropped ORDER BY attnum"), {"t": kind}).all()
    return [r[0] for r in rows]


def _batches(conn: sa.Connection, ids: Iterable[int | None]) -> dict[int, dict[str, Any]]:
    wanted = sorted({int(i) for i in ids if i is not None})
    if not wanted:
        return {}
    rows = conn.execute(sa.text("SELECT id, kind, created_by, created_at, report ->> 'op' AS op "
                                "FROM batch WHERE id = ANY(:ids)"), {"ids": wanted}).mappings()
    return {r["id"]: {"batch_id": r["id"], "kind": r["kind"], "by": r["created_by"],
                      "at": r["created_at"], "op": r["op"]} for r in rows}


def history(conn: sa.Connection, kind: str, id: str, *, srid: int | None = None) -> dict[str, Any]:
    """Every version of a feature, oldest first, with what each version changed.

    Each version has ``version``, ``valid_from``, ``valid_to`` (None for the live row),
    ``op`` (what ended it: ``update`` or ``delete``; None while current), ``change`` (what
    began it: created (also: added again after a delete), changed, retired, revived),
    ``changed`` (columns that differ from the
    version before, ``geom`` for the geometry), ``batch`` (kind, who, when), ``properties``
    and ``geometry`` (GeoJSON; the twin CRS unless ``srid`` names another).
    """
    _kind(kind)
    check_text(id, f"a {kind} id", max_length=200)
    rows = _version_rows(conn, kind, id, srid)
    if not rows:
        raise NotFound(f"no {kind} {id!r} now or in the twin's history",
                       zh=f"{_KIND_ZH.get(kind, kind)} {id!r} 目前和历史中都不存在")
    batches = _batches(conn, (r["batch_id"] for r in rows))
    versions, before = [], None
    for row in rows:
        content = {k: v for k, v in row.items() if k not in _BOOKKEEPING and k != "geometry"}
        if before is None or before["_op"] == "delete":  # first, or added again after a delete
            change, changed = "created", []
        else:
            changed = [k for k in content if k not in ("retired_at", "retired_reason") and content[k] != before[k]]
            if row["geom_ewkb"] != before["_ewkb"]:
                changed = sorted([*changed, "geom"])
            if row["retired_at"] is not None and before["retired_at"] is None:
                change = "retired"
            elif row["retired_at"] is None and before["retired_at"] is not None:
                change = "revived"
            else:
                change = "changed"
        versions.append({
            "version": row["version"], "valid_from": row["valid_from"], "valid_to": row["valid_to"],
            "op": row["op"], "change": change, "changed": changed,
            "retired_at": row["retired_at"], "retired_reason": row["retired_reason"],
            "batch": batches.get(row["batch_id"]),
            "properties": {k: v for k, v in content.items() if k not in ("retired_at", "retired_reason")},
            "geometry": row["geometry"],
        })
        before = {**content, "_ewkb": row["geom_ewkb"], "_op": row["op"]}
    last = rows[-1]
    state = ("deleted" if last["op"] == "delete" else "retired" if last["retired_at"] is not None else "current")
    return plain({"kind": kind, "id": id, "state": state,
                        "deleted_at": last["valid_to"] if state == "deleted" else None,
                        "versions": versions})  # type: ignore[return-value]


def _instant(value: datetime | str) -> datetime:
    """A point in time; ISO 8601 text is parsed, and a time without a zone is UTC."""
    if not isinstance(value, datetime):
        try:
            value = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError as exc:
            raise InputError(f"{value!r} is not an ISO 8601 time (e.g. 2025-03-01T08:00:00Z)",
                             zh=f"{value!r} 不是 ISO 8601 时间（例如 2025-03-01T08:00:00Z）") from exc
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def feature(conn: sa.Connection, kind: str, id: str, *, at: datetime | str | None = None,
            srid: int | None = None) -> dict[str, Any]:
    """One feature as a GeoJSON Feature: its current row (live or retired), or the version
    valid at ``at`` (a time without a zone is UTC)."""
    _kind(kind)
    check_text(id, f"a {kind} id", max_length=200)
    cols = [c for c in _columns(conn, kind) if c != "geom"]
    if at is None:
        source, params = f"{kind}", {"i": id}
    else:
        source, params = f"{kind}_as_of(:t)", {"i": id, "t": _instant(at)}
    row = conn.execute(
        sa.text(f"SELECT {', '.join(cols)}, {_geometry_sql(srid)} FROM {source} WHERE id = :i"), params
    ).mappings().first()
    if row is None:
        if at is None:
            raise NotFound(f"no {kind} {id!r} in the twin (see its history if it was deleted)",
                           zh=f"孪生库中没有{_KIND_ZH.get(kind, kind)} {id!r}（如已删除，请查看其历史）")
        raise NotFound(f"{kind} {id!r} was not part of the network at {params['t']}",
                       zh=f"{params['t']} 时{_KIND_ZH.get(kind, kind)} {id!r} 不在管网中")
    props = {k: v for k, v in row.items() if k not in ("geometry", "geom_ewkb", "id")}
    return plain({"type": "Feature", "id": id, "geometry": row["geometry"],
                        "properties": {"kind": kind, **props}})  # type: ignore[return-value]


def as_of(conn: sa.Connection, t: datetime | str) -> dict[str, Any]:
    """The network as it stood at ``t``: features per kind, and pipes and length by utility."""
    when = _instant(t)
    counts = {kind: conn.execute(sa.text(f"SELECT count(*) FROM {kind}_as_of(:t)"), {"t": when}).scalar_one()
              for kind in KINDS}
    rows = conn.execute(
        sa.text("SELECT utility, count(*) AS segments, sum(length_m) AS length_m "
                "FROM segment_as_of(:t) GROUP BY utility ORDER BY utility"), {"t": when}).mappings()
    by_utility = [{"utility": r["utility"], "segments": r["segments"], "length_m": round(float(r["length_m"]), 3)}
                  for r in rows]
    return plain({"at": when, "counts": counts, "segments_by_utility": by_utility,
                        "length_m": round(sum(u["length_m"] for u in by_utility), 3)})  # type: ignore[return-value]


# -- the network's changes over time (the viewer's history slider) -------------------------------
#: Changes listed by :func:`timeline` at most (the latest; the first is always given).
TIMELINE_LIMIT = 500
#: Features :func:`changes_between` returns at most (counts cover them all).
CHANGES_LIMIT = 5000


def timeline(conn: sa.Connection, *, limit: int = TIMELINE_LIMIT) -> dict[str, Any]:
    """When the network changed: every applied batch (import or edit), oldest first.

    ``changes`` holds the latest ``limit`` batches (``at``, ``batch_id``, ``kind``, ``by``,
    ``op``); ``first`` and ``latest`` are the first and the latest change times (None for an
    empty twin) and ``total`` counts them all. The network as of a change's ``at`` includes it.
    """
    rows = conn.execute(sa.text(
        "SELECT * FROM (SELECT id, kind, created_by, created_at, report ->> 'op' AS op FROM batch "
        "               WHERE status = 'applied' ORDER BY created_at DESC, id DESC LIMIT :n) b "
        "ORDER BY created_at, id"), {"n": max(1, int(limit))}).mappings().all()
    span = conn.execute(sa.text("SELECT min(created_at), max(created_at), count(*), now() FROM batch "
                                "WHERE status = 'applied'")).one()
    return plain({
        "first": span[0], "latest": span[1], "total": int(span[2]), "now": span[3],
        "truncated": int(span[2]) > len(rows),
        "changes": [{"at": r["created_at"], "batch_id": r["id"], "kind": r["kind"], "by": r["created_by"],
                     "op": r["op"]} for r in rows],
    })  # type: ignore[return-value]


def _rows_at(kind: str, t: str) -> str:
    """Each candidate's row in effect at time ``:<t>`` (live or retired), from the table or its history."""
    return (f"SELECT id, version, retired_at, geom, to_jsonb(x) AS doc FROM {kind} x "
            f"WHERE id = ANY(:ids) AND valid_from <= :{t} "
            f"UNION ALL SELECT id, version, retired_at, geom, to_jsonb(h) - 'valid_to' - 'op' FROM {kind}_history h "
            f"WHERE id = ANY(:ids) AND valid_from <= :{t} AND valid_to > :{t}")


def _candidates(conn: sa.Connection, kind: str, t0: datetime, t1: datetime) -> list[str]:
    """Ids with a version that began or ended in (t0, t1]: only these can differ between them."""
    return live_ids(conn, f"SELECT id FROM {kind} WHERE valid_from > :t0 AND valid_from <= :t1 "
                          f"UNION SELECT id FROM {kind}_history WHERE (valid_from > :t0 AND valid_from <= :t1) "
                          f"OR (valid_to > :t0 AND valid_to <= :t1)", {"t0": t0, "t1": t1})


def _kind_changes(conn: sa.Connection, kind: str, t0: datetime, t1: datetime,
                  bbox: Sequence[float] | None, srid: int | None, limit: int) -> tuple[list[dict], dict]:
    ids = _candidates(conn, kind, t0, t1)
    if not ids:
        return [], {}
    target = (lambda g: f"ST_Transform({g}, {int(srid)})") if srid else (lambda g: g)
    skip = ", ".join(f"'{c}'" for c in sorted(_BOOKKEEPING | {"geom", "retired_at", "retired_reason"}))
    where = ""
    params: dict[str, Any] = {"ids": ids, "t0": t0, "t1": t1, "n": int(limit)}
    if bbox is not None:
        where = ("AND (a.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, ST_SRID(coalesce(a.geom, b.geom))) "
                 "OR b.geom && ST_MakeEnvelope(:x0, :y0, :x1, :y1, ST_SRID(coalesce(a.geom, b.geom))))")
        params.update(zip(("x0", "y0", "x1", "y1"), (float(v) for v in bbox), strict=True))
    alive = "({s}.id IS NOT NULL AND ({s}.retired_at IS NULL OR {s}.retired_at > :{t}))"
    was, now = alive.format(s="a", t="t0"), alive.format(s="b", t="t1")
    sql = (
        f"WITH a AS ({_rows_at(kind, 't0')}), b AS ({_rows_at(kind, 't1')}), "
        f"d AS (SELECT coalesce(a.id, b.id) AS id, a.version AS v0, b.version AS v1, a.geom AS g0, b.geom AS g1, "
        f"  CASE WHEN NOT {was} THEN 'added' WHEN NOT {now} AND b.id IS NULL THEN 'deleted' "
        f"       WHEN NOT {now} THEN 'retired' ELSE 'changed' END AS change, "
        f"  ARRAY(SELECT k FROM jsonb_object_keys(coalesce(a.doc, b.doc)) k WHERE k NOT IN ({skip}) "
        f"        AND a.doc -> k IS DISTINCT FROM b.doc -> k ORDER BY k) AS changed, "
        f"  ST_AsEWKB(a.geom) IS DISTINCT FROM ST_AsEWKB(b.geom) AS moved "
        f"  FROM a FULL JOIN b ON a.id = b.id "
        f"  WHERE ({was} OR {now}) AND ({was} IS DISTINCT FROM {now} OR a.version <> b.version) {where}) "
        f"SELECT id, v0, v1, change, changed, moved, "
        f"  (SELECT jsonb_object_agg(change, n) FROM (SELECT change, count(*) AS n FROM d GROUP BY change) c) "
        f"  AS counts, "
        f"  CAST(ST_AsGeoJSON({target('g0')}, 9) AS json) AS before, "
        f"  CAST(ST_AsGeoJSON({target('g1')}, 9) AS json) AS after "
        f"FROM d ORDER BY id LIMIT :n")
    rows = conn.execute(sa.text(sql), params).mappings().all()
    out = []
    for r in rows:
        changed = [*r["changed"], *(["geom"] if r["moved"] and r["change"] == "changed" else [])]
        out.append({"kind": kind, "id": r["id"], "change": r["change"], "version_before": r["v0"],
                    "version_after": r["v1"], "changed": sorted(changed) if r["change"] == "changed" else [],
                    "before": r["before"] if r["change"] != "added" else None,
                    "after": r["after"] if r["change"] in ("added", "changed") else None})
    return out, dict(rows[0]["counts"]) if rows else {}


def changes_between(conn: sa.Connection, t0: datetime | str, t1: datetime | str, *,
                    bbox: Sequence[float] | None = None, kinds: Sequence[str] = ("segment",),
                    srid: int | None = None, limit: int = CHANGES_LIMIT) -> dict[str, Any]:
    """What changed in the network between two times: each feature that was ``added``,
    ``retired``, ``deleted`` or ``changed`` (with the columns that differ, ``geom`` for the
    geometry) from the network as of ``t0`` to the network as of ``t1``.

    A feature added and retired again between the two is no change. ``bbox`` (x0, y0, x1, y1
    in the twin CRS) keeps features whose geometry then or now meets it. Each change carries
    its ``before`` and ``after`` geometry (GeoJSON, the twin CRS unless ``srid`` names another;
    None where it did not exist). Only rows with a version that began or ended between the two
    times are compared (found by one pass over the table and its history), never the two
    whole networks.
    """
    start, end = _instant(t0), _instant(t1)
    if start > end:
        raise InputError(f"the first time ({start.isoformat()}) is after the second ({end.isoformat()})",
                         zh=f"第一个时间（{start.isoformat()}）晚于第二个时间（{end.isoformat()}）")
    if bbox is not None:
        if len(bbox) != 4 or not all(math.isfinite(float(v)) for v in bbox) or bbox[0] > bbox[2] or bbox[1] > bbox[3]:
            raise InputError("bbox: four finite numbers x0, y0, x1, y1 with x0 <= x1 and y0 <= y1",
                             zh="bbox：四个有限数 x0, y0, x1, y1，且 x0 <= x1、y0 <= y1")
    features: list[dict] = []
    counts: dict[str, dict[str, int]] = {}
    for kind in kinds:
        room = max(0, limit - len(features))
        rows, counts[kind] = _kind_changes(conn, _kind(kind), start, end, bbox, srid, room or 1)
        features += rows[:room]
    total = sum(n for c in counts.values() for n in c.values())
    return plain({"from": start, "to": end, "features": features, "counts": counts, "total": total,
                  "truncated": total > len(features)})  # type: ignore[return-value]
