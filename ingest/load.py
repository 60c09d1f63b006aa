"""Loading prepared features into the twin in one transaction.

New features are COPYed straight into their tables with geometry as EWKB built in numpy;
features the twin already has go through a staging table and one set-based update of
the rows that differ; features the batch's scope no longer has are retired. Either the
whole batch lands (added, changed and retired counted per table) or nothing does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import struct
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pgpq
import pyarrow as pa
import sqlalchemy as sa
from psycopg.copy import QueuedLibpqWriter
from sqlalchemy.engine import Engine

from ingest.prepare import Prepared
from ingest.report import Report
from twin.errors import InputError
from twin.schema import KINDS, sql_columns
from twin.store import INGEST_LOCK

__all__ = ["apply_batch", "begin_batch", "end_batch", "Loader", "feature_frame", "TABLES", "ewkb_points",
           "ewkb_lines", "BUILD_SETTINGS"]

log = logging.getLogger("pipetwin.ingest")


@dataclass(frozen=True)
class TableSpec:
    """One feature table's data columns (name, SQL type) as the loader writes them."""

    name: str
    columns: tuple[tuple[str, str], ...]


#: What the loader writes of each versioned table: the catalogue's content columns (twin.schema).
TABLES: dict[str, TableSpec] = {kind: TableSpec(kind, sql_columns(kind)) for kind in KINDS}


# EWKB: byte order 1 (little endian), type with the Z (0x80000000) and SRID (0x20000000) flags.
_POINTZ = 0x80000000 | 0x20000000 | 1
_LINESTRINGZ = 0x80000000 | 0x20000000 | 2


def _wkb_records(records: np.ndarray) -> pd.arrays.ArrowExtensionArray:
    """Each record of a packed structured array as one binary value: one Arrow array over the
    whole buffer (no Python object per row, none made again for the COPY)."""
    size = records.dtype.itemsize
    offsets = pa.py_buffer(np.arange(0, size * (len(records) + 1), size, dtype=np.int64))
    return pd.arrays.ArrowExtensionArray(
        pa.Array.from_buffers(pa.large_binary(), len(records), [None, offsets, pa.py_buffer(records.tobytes())]))


def ewkb_points(x: np.ndarray, y: np.ndarray, z: np.ndarray, srid: int
                ) -> pd.arrays.ArrowExtensionArray:
    """EWKB of POINT Z geometries, as PostGIS reads them from a binary COPY (geometry_recv)."""
    rec = np.zeros(len(x), dtype=[("bo", "u1"), ("type", "<u4"), ("srid", "<u4"),
                                  ("x", "<f8"), ("y", "<f8"), ("z", "<f8")])
    rec["bo"], rec["type"], rec["srid"] = 1, _POINTZ, srid
    rec["x"], rec["y"], rec["z"] = x, y, z
    return _wkb_records(rec)


def ewkb_lines(x1: np.ndarray, y1: np.ndarray, z1: np.ndarray, x2: np.ndarray, y2: np.ndarray,
               z2: np.ndarray, srid: int) -> pd.arrays.ArrowExtensionArray:
    """EWKB of two-vertex LINESTRING Z geometries (survey segments are straight)."""
    rec = np.zeros(len(x1), dtype=[("bo", "u1"), ("type", "<u4"), ("srid", "<u4"), ("n", "<u4"),
                                   ("x1", "<f8"), ("y1", "<f8"), ("z1", "<f8"),
                                   ("x2", "<f8"), ("y2", "<f8"), ("z2", "<f8")])
    rec["bo"], rec["type"], rec["srid"], rec["n"] = 1, _LINESTRINGZ, srid, 2
    rec["x1"], rec["y1"], rec["z1"], rec["x2"], rec["y2"], rec["z2"] = x1, y1, z1, x2, y2, z2
    return _wkb_records(rec)


def _ewkb_polyline(xyz: np.ndarray, srid: int) -> bytes:
    head = struct.pack("<BIII", 1, _LINESTRINGZ, srid, len(xyz))
    return head + np.ascontiguousarray(xyz, dtype="<f8").tobytes()


def _segment_geometry(s: pd.DataFrame, srid: int) -> pd.arrays.ArrowExtensionArray | np.ndarray:
    geom = ewkb_lines(s["x1"].to_numpy(float), s["y1"].to_numpy(float), s["from_z"].to_numpy(float),
                      s["x2"].to_numpy(float), s["y2"].to_numpy(float), s["to_z"].to_numpy(float), srid)
    if "vertices" in s.columns and s["vertices"].notna().any():
        geom = geom.to_numpy(dtype=object)
        # EPANET polylines: rare and short; heights interpolated by chainage.
        for i in np.flatnonzero(s["vertices"].notna().to_numpy()):
            row = s.iloc[i]
            xy = np.array([(row.x1, row.y1), *row.vertices, (row.x2, row.y2)], dtype=float)
            chain = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))])
            frac = chain / chain[-1] if chain[-1] > 0 else np.zeros_like(chain)
            z = row.from_z + (row.to_z - row.from_z) * frac
            geom[i] = _ewkb_polyline(np.column_stack([xy, z]), srid)
    return geom


def _at_points(f: pd.DataFrame, x: str, y: str, z: str, srid: int) -> pd.DataFrame:
    return f.assign(geom=ewkb_points(f[x].to_numpy(float), f[y].to_numpy(float), f[z].to_numpy(float), srid))


def feature_frame(kind: str, frame: pd.DataFrame, srid: int) -> pd.DataFrame:
    """One kind's prepared features (or a chunk of them) with their geometry as EWKB bytes."""
    if kind == "node":
        return _at_points(frame, "easting", "northing", "ground_z", srid)
    if kind == "segment":
        return frame.assign(geom=_segment_geometry(frame, srid))
    if kind == "valve":
        frame = frame.assign(kind=frame["attrs_kind"])
    return _at_points(frame, "x", "y", "z", srid)


#: Arrow type of each SQL type the loader writes: PostgreSQL's binary COPY wants the exact width.
_ARROW_TYPES = {"text": pa.string(), "float8": pa.float64(), "int4": pa.int32(), "int8": pa.int64(),
                "bool": pa.bool_(), "geometry": pa.large_binary()}
#: The binary COPY's header (signature, flags, no extension) and trailer: written once per COPY
#: (:meth:`Loader._copy_into`), the rows of every chunk between them.
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
COPY_TRAILER = b"\xff\xff"


def _copy(copy, table: str, frame: pd.DataFrame, columns: list[tuple[str, str]],
          step: Callable[[str], None], chunk_rows: int = 65_536) -> None:
    """Write a frame's rows into an open binary COPY of ``table`` (PostgreSQL's binary tuples,
    encoded from Arrow by pgpq: no text for the server to parse, geometry as EWKB bytes), in
    pieces so memory stays flat."""
    names = [c for c, _ in columns]
    for start in range(0, len(frame), chunk_rows):
        step(f"copying {table.removeprefix('stage_')}s")
        part = frame.iloc[start:start + chunk_rows]
        batch = pa.RecordBatch.from_arrays([_typed(part, c, _ARROW_TYPES[t], table) for c, t in columns],
                                           names=names)
        encoder = pgpq.ArrowToPostgresBinaryEncoder(batch.schema)
        encoder.write_header()  # (written once per COPY instead)
        rows = encoder.write_batch(batch) + encoder.finish()
        copy.write(memoryview(rows)[:-len(COPY_TRAILER)])


def _typed(part: pd.DataFrame, column: str, kind: pa.DataType, table: str) -> pa.Array:
    """One column as the table's type; a value that does not fit it (a count beyond a 32-bit
    integer) is the import's input error, not a failure of the COPY."""
    try:
        return _arrow_column(part[column], kind)
    except (pa.ArrowInvalid, OverflowError) as exc:
        name = f"{table.removeprefix('stage_')}.{column}"
        raise InputError(f"{name}: a value does not fit the column's type {kind}: {exc}",
                         zh=f"{name}：有值超出该列类型 {kind} 的范围：{exc}") from exc


def _arrow_column(values: pd.Series, kind: pa.DataType) -> pa.Array:
    if kind in (pa.string(), pa.large_binary()):
        if isinstance(values.dtype, pd.ArrowDtype) or getattr(values.dtype, "storage", "") == "pyarrow":
            arrow = pa.array(values.array)  # Arrow already (the geometry, pandas' str)
            if isinstance(arrow, pa.ChunkedArray):
                arrow = arrow.combine_chunks()
            return arrow.cast(kind)
        return pa.array(values.to_numpy(dtype=object), type=kind, from_pandas=True)
    if kind in (pa.int32(), pa.int64()):
        return pa.array(pd.array(values, dtype="Int64"), type=kind, from_pandas=True)
    if kind == pa.bool_():
        return pa.array(values.astype(object).to_numpy(), type=kind, from_pandas=True)
    return pa.array(pd.to_numeric(values).to_numpy(float), type=kind, from_pandas=True)


def begin_batch(conn: sa.Connection, *, kind: str, scope: str, user: str, files: list[dict]) -> int:
    """Take the import lock (one import at a time: concurrent batches touching the same ids would
    race) and record the batch; returns its id. Inside the caller's transaction."""
    conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({INGEST_LOCK})"))
    return conn.execute(
        sa.text("INSERT INTO batch (kind, scope, created_by, files, status) "
                "VALUES (:k, :s, :u, CAST(:f AS jsonb), 'applied') RETURNING id"),
        {"k": kind, "s": scope, "u": user, "f": json.dumps(files, ensure_ascii=False)},
    ).scalar_one()


def end_batch(conn: sa.Connection, batch_id: int, report: Report, changes: dict[str, dict[str, int]],
              before_commit: Callable[[sa.Connection, Report], None] | None = None,
              files: list[dict] | None = None) -> Report:
    """Record the applied batch's counts and report (and its ``files``, when they were read
    in chunks); ``before_commit`` runs last."""
    if files is not None:
        conn.execute(sa.text("UPDATE batch SET files = CAST(:f AS jsonb) WHERE id = :id"),
                     {"f": json.dumps(files, ensure_ascii=False), "id": batch_id})
    report.status = "applied"
    report.batch_id = batch_id
    report.counts = {**report.counts, "changes": changes}
    conn.execute(
        sa.text("UPDATE batch SET counts = CAST(:c AS jsonb), report = CAST(:r AS jsonb) WHERE id = :id"),
        {"c": json.dumps(report.counts), "r": json.dumps(report.as_dict(), ensure_ascii=False, default=str),
         "id": batch_id},
    )
    if before_commit is not None:
        before_commit(conn, report)
    return report


def apply_batch(
    engine: Engine,
    prepared: Prepared,
    *,
    srid: int,
    kind: str,
    scope: str,
    user: str,
    files: list[dict],
    report: Report,
    progress: Callable[[str], None] | None = None,
    before_commit: Callable[[sa.Connection, Report], None] | None = None,
) -> Report:
    """Apply a checked batch in one transaction; fills counts and ``batch_id`` on the report.

    ``before_commit(conn, report)`` runs last inside that transaction (the server records its
    audit entry and as-built status there); raising from it rolls the whole batch back.
    """
    step = progress or (lambda _msg: None)
    frames = {"node": prepared.nodes.drop_duplicates("id"), "segment": prepared.segments,
              "valve": prepared.valves, "source": prepared.sources, "customer": prepared.customers}
    with engine.begin() as conn:
        batch_id = begin_batch(conn, kind=kind, scope=scope, user=user, files=files)
        with conn.connection.driver_connection.cursor() as cur:
            loader = Loader(cur, srid=srid, scope=scope, batch_id=batch_id, step=step,
                            expected={k: len(f) for k, f in frames.items()})
            with loader:
                for name, frame in frames.items():
                    step(f"loading {name}s")
                    loader.write(name, frame)
                changes = loader.finish()
        end_batch(conn, batch_id, report, changes, before_commit)
    return report


#: A batch this large relative to its table rebuilds the secondary indexes instead of
#: growing them row by row: one sorted build beats a million single insertions.
BULK_ROWS = 50_000
BULK_FRACTION = 0.2


class Loader:
    """Writes one batch's features, in chunks, inside the caller's transaction.

    A table the twin has nothing in yet takes the COPY straight in (for a large batch with its
    keys, foreign keys and indexes dropped, rebuilt once at the end: one sorted build instead of
    a million insertions); any other goes through a staging table and is merged in SQL at the
    end (:func:`_merge`: rows that differ updated, new ones added, those of the scope the batch
    no longer has retired). ``expected`` rows per kind (an estimate) choose the bulk path.
    """

    def __init__(self, cur, *, srid: int, scope: str, batch_id: int, step: Callable[[str], None],
                 expected: dict[str, int]) -> None:
        self.cur, self.srid, self.scope, self.batch_id, self.step = cur, srid, scope, batch_id, step
        self.expected = expected
        self.targets: dict[str, str] = {}
        self.written: dict[str, int] = dict.fromkeys(TABLES, 0)
        self.dropped: dict[str, tuple[list, list]] = {}
        self._copying: tuple[str, contextlib.ExitStack, Any] | None = None
        self._building: Future | None = None
        self.analysed: set[str] = set()
        self.index_seconds: dict[str, float] = {}  # each rebuilt index's or key's build
        self._spooled: dict[str, Any] = {}

    def __enter__(self) -> Loader:
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if exc[0] is not None:  # the batch fails: what was spooled is dropped
                for spool in self._spooled.values():
                    spool.close()
                self._spooled = {}
            self._wait()
        except Exception:
            if exc[0] is None:
                raise
        finally:
            self._end_copy(*exc)

    def prebuild(self, names: tuple[str, ...] = ("node", "segment"), then: tuple[str, ...] = ()) -> None:
        """Rebuild the indexes a bulk COPY dropped from these tables on a worker thread, while the
        caller goes on with work that needs no database (the whole-network checks), or prepares
        the ``then`` tables' chunks (spooled to a temporary file until the connection is free):
        PostgreSQL builds on one core while Python checks on the other."""
        self._wait()
        for name in then:
            self._target(name)
        self._end_copy()
        todo = [(name, self.dropped.pop(name)) for name in names if name in self.dropped]
        if todo:
            def build() -> None:
                for name, dropped in todo:
                    _restore_indexes(self.cur, name, dropped, self.step, self.index_seconds)
                    self.cur.execute(f"ANALYZE {name}")
                    self.analysed.add(name)

            pool = ThreadPoolExecutor(1, thread_name_prefix="twin-index")
            self._building = pool.submit(build)
            pool.shutdown(wait=False)

    def _wait(self) -> None:
        """Let a rebuild started by :meth:`prebuild` end (its error raised here), then COPY what
        was spooled meanwhile."""
        building, self._building = self._building, None
        if building is not None:
            building.result()
        spooled, self._spooled = self._spooled, {}
        for name, spool in spooled.items():
            with spool:
                spool.seek(0)
                copy = self._copy_into(name)
                while block := spool.read(1 << 22):
                    copy.write(block)

    def _end_copy(self, *exc: Any) -> None:
        if self._copying is not None:
            stack, copy = self._copying[1:]
            self._copying = None
            if not exc or exc[0] is None:
                copy.write(COPY_TRAILER)
            stack.__exit__(*(exc or (None, None, None)))

    def _columns(self, name: str) -> list[tuple[str, str]]:
        columns = [*TABLES[name].columns, ("geom", "geometry")]
        if self._target(name) == name:
            columns += [("scope", "text"), ("batch_id", "int8")]
        return columns

    def _copy_into(self, name: str) -> Any:
        """The open COPY into ``name``'s target: one per table while its chunks come, sent to the
        server by a worker thread, so PostgreSQL parses one chunk while Python prepares the next."""
        target = self._target(name)
        if self._copying is not None and self._copying[0] == target:
            return self._copying[2]
        self._end_copy()
        stack = contextlib.ExitStack()
        names = ", ".join(c for c, _ in self._columns(name))
        copy = stack.enter_context(self.cur.copy(f"COPY {target} ({names}) FROM STDIN (FORMAT binary)",
                                                 writer=QueuedLibpqWriter(self.cur)))
        copy.write(COPY_HEADER)
        self._copying = (target, stack, copy)
        return copy

    def _target(self, name: str) -> str:
        self._wait()  # one statement at a time on the connection
        if name in self.targets:
            return self.targets[name]
        self._end_copy()
        cur = self.cur
        cur.execute(f"SELECT EXISTS (SELECT 1 FROM {name})")
        if cur.fetchone()[0]:
            columns = [*TABLES[name].columns, ("geom", "geometry")]
            cur.execute(f"CREATE TEMP TABLE stage_{name} ("
                        + ", ".join(f"{c} {sql}" for c, sql in columns)
                        + ") ON COMMIT DROP")
            self.targets[name] = f"stage_{name}"
        else:
            if self.expected.get(name, 0) >= BULK_ROWS:
                self.dropped[name] = _drop_indexes(cur, name)
            self.targets[name] = name
        return self.targets[name]

    def write(self, name: str, frame: pd.DataFrame) -> None:
        """COPY prepared features of one kind (a chunk or all of them)."""
        if not len(frame):
            return
        busy = self._building is not None and not self._building.done() and name in self.targets
        target = self.targets[name] if busy else self._target(name)
        frame = feature_frame(name, frame, self.srid)
        if target == name:
            frame = frame.assign(scope=self.scope, batch_id=self.batch_id)
        columns = [*TABLES[name].columns, ("geom", "geometry")]
        columns += [("scope", "text"), ("batch_id", "int8")] if target == name else []
        if busy:  # the connection builds indexes: the rows wait on disk, not in memory
            if name not in self._spooled:
                self._spooled[name] = tempfile.TemporaryFile(prefix="twin-ingest-")
            _copy(self._spooled[name], target, frame, columns, self.step)
        else:
            _copy(self._copy_into(name), target, frame, columns, self.step)
        self.written[name] += len(frame)

    def finish(self) -> dict[str, dict[str, int]]:
        """Indexes back, staged features merged, every table analysed; the counts per table."""
        self._wait()
        self._end_copy()
        changes = {}
        for name, spec in TABLES.items():
            self.step(f"merging {name}s")
            target = self.targets.get(name) or self._target(name)
            changes[name] = _merge(self.cur, spec, target, batch_id=self.batch_id, scope=self.scope,
                                   step=self.step, written=self.written[name], dropped=self.dropped.get(name),
                                   seconds=self.index_seconds)
        for name in TABLES:
            if name not in self.analysed:  # (analysed by prebuild: nothing written since)
                self.cur.execute(f"ANALYZE {name}")
        return changes


def _secondary_indexes(cur, table: str) -> list[tuple[str, str]]:
    """Name and definition of every index of the table but its primary key."""
    cur.execute(
        "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
        "JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = to_regclass(%s) AND NOT i.indisprimary", (table,))
    return list(cur.fetchall())


def _primary_key(cur, table: str) -> list[tuple[str, str]]:
    """Name and definition of the table's primary key, when no foreign key refers to it."""
    cur.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint c "
                "WHERE conrelid = to_regclass(%s) AND contype = 'p' AND NOT EXISTS "
                "(SELECT 1 FROM pg_constraint r WHERE r.confrelid = c.conrelid AND r.contype = 'f')",
                (table,))
    return list(cur.fetchall())


def _foreign_keys(cur, table: str) -> list[tuple[str, str]]:
    """Name and definition of the table's foreign keys (checked per row during COPY)."""
    cur.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                "WHERE conrelid = to_regclass(%s) AND contype = 'f'", (table,))
    return list(cur.fetchall())


def _drop_indexes(cur, table: str) -> tuple[list, list]:
    """Drop a table's secondary indexes, primary key and foreign keys for a bulk COPY (inside
    the batch's transaction, so a failure restores them); returns what to rebuild."""
    rebuild, refs = _secondary_indexes(cur, table), _primary_key(cur, table) + _foreign_keys(cur, table)
    for name, _ in refs:
        cur.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _ in rebuild:
        cur.execute(f'DROP INDEX "{name}"')
    return rebuild, refs


#: What a bulk import's index builds may use (inside its transaction only, ``SET LOCAL``): the
#: sorts of a million ids in memory, and PostgreSQL's parallel B-tree build on the second core.
BUILD_SETTINGS = {"maintenance_work_mem": "1GB", "max_parallel_maintenance_workers": "2"}


def _build_order(definition: str) -> int:
    """GiST first: they build on one core only, while Python still works on the other; the
    B-trees, which PostgreSQL builds in parallel, last, when the cores are free."""
    return 0 if " USING gist " in definition else 1


def _restore_indexes(cur, table: str, dropped: tuple[list, list], step: Callable[[str], None],
                     seconds: dict[str, float] | None = None) -> None:
    """Build the dropped indexes again, then the keys: the primary key's build checks the ids are
    unique, the foreign keys are validated in one join instead of a check per row. Each build's
    seconds go to ``seconds`` (by index or constraint name) and the log."""
    rebuild, refs = dropped
    for setting, value in BUILD_SETTINGS.items():
        cur.execute(f"SET LOCAL {setting} = '{value}'")
    builds = [(name, definition) for name, definition in sorted(rebuild, key=lambda r: _build_order(r[1]))]
    builds += [(name, f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}') for name, definition in refs]
    for name, statement in builds:
        step(f"indexing {table}s ({name})")
        t0 = time.perf_counter()
        cur.execute(statement)
        took = time.perf_counter() - t0
        log.info("import: %s built in %.2f s", name, took)
        if seconds is not None:
            seconds[name] = round(took, 3)


def _merge(cur, spec: TableSpec, target: str, *, batch_id: int, scope: str,
           step: Callable[[str], None] = lambda _m: None, written: int = 0,
           dropped: tuple[list, list] | None = None, seconds: dict[str, float] | None = None
           ) -> dict[str, int]:
    """Finish one table: rebuild what a bulk COPY dropped, or merge its staging table (rows that
    differ updated, new ones added, those of the scope absent from the batch retired); returns
    the added, changed and retired counts."""
    t = spec.name
    if target == t:  # COPYed straight into a table that had nothing
        if dropped:
            _restore_indexes(cur, t, dropped, step, seconds)
        return {"added": written, "changed": 0, "retired": 0}
    names = [c for c, _ in spec.columns] + ["geom"]
    cols = ", ".join(names)
    s_cols = ", ".join(f"s.{c}" for c in names)
    t_cols = ", ".join(f"t.{c}" for c in names)
    params = {"batch": batch_id, "scope": scope}
    cur.execute(f"CREATE INDEX ON {target} (id)")
    cur.execute(f"ANALYZE {target}")
    step(f"comparing {t}s")
    cur.execute(
        f"UPDATE {t} AS t SET ({cols}, scope, batch_id, retired_at, retired_reason) = "
        f"({s_cols}, %(scope)s, %(batch)s, NULL, NULL) FROM {target} AS s "
        f"WHERE t.id = s.id AND ({t_cols}, t.retired_at, t.scope) IS DISTINCT FROM "
        f"({s_cols}, NULL::timestamptz, %(scope)s)", params)
    changed = cur.rowcount
    fresh = f"FROM {target} AS s WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE {t}.id = s.id)"
    cur.execute(f"SELECT count(*) {fresh}")
    added = cur.fetchone()[0]
    cur.execute(f"SELECT count(*) FROM {t}")
    bulk = added >= BULK_ROWS and added > BULK_FRACTION * cur.fetchone()[0]
    rebuild = _drop_indexes(cur, t) if bulk else None
    if added:
        cur.execute(f"INSERT INTO {t} ({cols}, scope, batch_id) SELECT {s_cols}, %(scope)s, %(batch)s {fresh}",
                    params)
    if rebuild:
        _restore_indexes(cur, t, rebuild, step, seconds)
    cur.execute(
        f"UPDATE {t} AS t SET retired_at = now(), batch_id = %(batch)s, "
        f"retired_reason = 'absent from batch ' || %(batch)s || ' of scope ' || %(scope)s "
        f"WHERE t.scope = %(scope)s AND t.retired_at IS NULL "
        f"AND NOT EXISTS (SELECT 1 FROM {target} AS s WHERE s.id = t.id)", params)
    return {"added": added, "changed": changed, "retired": cur.rowcount}
