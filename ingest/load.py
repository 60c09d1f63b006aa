"""Loading prepared features into the twin in one transaction.

New features are COPYed straight into their tables with geometry as EWKB built in numpy;
features the twin already has go through a staging table and one set-based update of
the rows that differ; features the batch's scope no longer has are retired. Either the
whole batch lands (added, changed and retired counted per table) or nothing does.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ingest.prepare import Prepared
from ingest.report import Report
from twin.schema import KINDS, sql_columns
from twin.store import INGEST_LOCK

__all__ = ["apply_batch", "TABLES", "ewkb_points", "ewkb_lines"]


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


def _hex_records(records: np.ndarray) -> pd.arrays.ArrowExtensionArray:
    """Hex text of each record of a packed structured array: one Arrow string array over the
    hex of the whole buffer (no Python string per row, none made again for the COPY)."""
    size = 2 * records.dtype.itemsize
    text = pa.py_buffer(records.tobytes().hex().encode("ascii"))
    offsets = pa.py_buffer(np.arange(0, size * (len(records) + 1), size, dtype=np.int64))
    return pd.arrays.ArrowExtensionArray(
        pa.Array.from_buffers(pa.large_string(), len(records), [None, offsets, text]))


def ewkb_points(x: np.ndarray, y: np.ndarray, z: np.ndarray, srid: int
                ) -> pd.arrays.ArrowExtensionArray:
    """Hex EWKB of POINT Z geometries, as PostGIS reads them from COPY."""
    rec = np.zeros(len(x), dtype=[("bo", "u1"), ("type", "<u4"), ("srid", "<u4"),
                                  ("x", "<f8"), ("y", "<f8"), ("z", "<f8")])
    rec["bo"], rec["type"], rec["srid"] = 1, _POINTZ, srid
    rec["x"], rec["y"], rec["z"] = x, y, z
    return _hex_records(rec)


def ewkb_lines(x1: np.ndarray, y1: np.ndarray, z1: np.ndarray, x2: np.ndarray, y2: np.ndarray,
               z2: np.ndarray, srid: int) -> pd.arrays.ArrowExtensionArray:
    """Hex EWKB of two-vertex LINESTRING Z geometries (survey segments are straight)."""
    rec = np.zeros(len(x1), dtype=[("bo", "u1"), ("type", "<u4"), ("srid", "<u4"), ("n", "<u4"),
                                   ("x1", "<f8"), ("y1", "<f8"), ("z1", "<f8"),
                                   ("x2", "<f8"), ("y2", "<f8"), ("z2", "<f8")])
    rec["bo"], rec["type"], rec["srid"], rec["n"] = 1, _LINESTRINGZ, srid, 2
    rec["x1"], rec["y1"], rec["z1"], rec["x2"], rec["y2"], rec["z2"] = x1, y1, z1, x2, y2, z2
    return _hex_records(rec)


def _ewkb_polyline(xyz: np.ndarray, srid: int) -> str:
    head = struct.pack("<BIII", 1, _LINESTRINGZ, srid, len(xyz))
    return (head + np.ascontiguousarray(xyz, dtype="<f8").tobytes()).hex()


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


def _feature_frames(prepared: Prepared, srid: int) -> dict[str, pd.DataFrame]:
    def at_points(f: pd.DataFrame, x: str, y: str, z: str) -> pd.DataFrame:
        return f.assign(geom=ewkb_points(f[x].to_numpy(float), f[y].to_numpy(float),
                                         f[z].to_numpy(float), srid))

    n = prepared.nodes.drop_duplicates("id")
    v = prepared.valves.assign(kind=prepared.valves["attrs_kind"])
    s = prepared.segments
    return {
        "node": at_points(n, "easting", "northing", "ground_z"),
        "segment": s.assign(geom=_segment_geometry(s, srid)),
        "valve": at_points(v, "x", "y", "z"),
        "source": at_points(prepared.sources, "x", "y", "z"),
        "customer": at_points(prepared.customers, "x", "y", "z"),
    }


_ARROW_TYPES = {"text": pa.string(), "float8": pa.float64(), "int4": pa.int64(), "bool": pa.bool_()}


def _copy(cur, table: str, frame: pd.DataFrame, columns: list[tuple[str, str]],
          step: Callable[[str], None], chunk_rows: int = 250_000) -> None:
    """COPY a frame into a table as CSV (written by Arrow), in chunks so memory stays flat."""
    names = [c for c, _ in columns]
    options = pacsv.WriteOptions(include_header=False)
    with cur.copy(f"COPY {table} ({', '.join(names)}) FROM STDIN (FORMAT csv)") as copy:
        for start in range(0, len(frame), chunk_rows):
            step(f"copying {table.removeprefix('stage_')}s {start:,}/{len(frame):,}")
            part = frame.iloc[start:start + chunk_rows]
            arrays = [_arrow_column(part[c], _ARROW_TYPES[t]) for c, t in columns]
            buf = io.BytesIO()
            pacsv.write_csv(pa.Table.from_arrays(arrays, names=names), buf, write_options=options)
            copy.write(buf.getbuffer())


def _arrow_column(values: pd.Series, kind: pa.DataType) -> pa.Array:
    if kind == pa.string():
        if isinstance(values.dtype, pd.ArrowDtype) or getattr(values.dtype, "storage", "") == "pyarrow":
            return pa.array(values.array)  # Arrow already (the geometry's hex, pandas' str)
        return pa.array(values.to_numpy(dtype=object), type=kind, from_pandas=True)
    if kind == pa.int64():
        return pa.array(pd.array(values, dtype="Int64"), type=kind, from_pandas=True)
    if kind == pa.bool_():
        return pa.array(values.astype(object).to_numpy(), type=kind, from_pandas=True)
    return pa.array(pd.to_numeric(values).to_numpy(float), type=kind, from_pandas=True)


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
    frames = _feature_frames(prepared, srid)
    step = progress or (lambda _msg: None)
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        # One import at a time: concurrent batches touching the same ids would race.
        conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({INGEST_LOCK})"))
        batch_id = conn.execute(
            sa.text("INSERT INTO batch (kind, scope, created_by, files, status) "
                    "VALUES (:k, :s, :u, CAST(:f AS jsonb), 'applied') RETURNING id"),
            {"k": kind, "s": scope, "u": user, "f": json.dumps(files, ensure_ascii=False)},
        ).scalar_one()
        changes: dict[str, dict[str, int]] = {}
        with raw.cursor() as cur:
            for name, spec in TABLES.items():
                step(f"loading {name}s")
                changes[name] = _merge(cur, spec, frames[name], batch_id=batch_id, scope=scope, step=step)
            for name in TABLES:
                cur.execute(f"ANALYZE {name}")
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


#: A batch this large relative to its table rebuilds the secondary indexes instead of
#: growing them row by row: one sorted build beats a million single insertions.
BULK_ROWS = 50_000
BULK_FRACTION = 0.2


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


def _merge(cur, spec: TableSpec, frame: pd.DataFrame, *, batch_id: int, scope: str,
           step: Callable[[str], None] = lambda _m: None) -> dict[str, int]:
    """Add, change and retire one table's features; returns the three counts."""
    t = spec.name
    cur.execute(f"SELECT id, scope, retired_at IS NULL FROM {t}")
    have = pd.DataFrame(cur.fetchall(), columns=["id", "scope", "live"], dtype=object)
    known = frame["id"].isin(have["id"]).to_numpy()
    fresh, old = frame[~known], frame[known]

    columns = [*spec.columns, ("geom", "text")]
    rebuild, refs = [], []
    if len(fresh) >= BULK_ROWS and len(fresh) > BULK_FRACTION * len(have):
        # Inside the batch's transaction, so a failure restores them. Foreign keys are
        # re-added afterwards, which validates them in one join instead of a check per row;
        # the primary key too: one sorted build that checks the ids are unique.
        rebuild, refs = _secondary_indexes(cur, t), _primary_key(cur, t) + _foreign_keys(cur, t)
        for name, _ in refs:
            cur.execute(f'ALTER TABLE {t} DROP CONSTRAINT "{name}"')
        for name, _ in rebuild:
            cur.execute(f'DROP INDEX "{name}"')
    added = 0
    if len(fresh):
        fresh = fresh.assign(scope=scope, batch_id=batch_id)
        _copy(cur, t, fresh, [*columns, ("scope", "text"), ("batch_id", "int4")], step)
        added = len(fresh)
    for name, definition in rebuild:
        step(f"indexing {t}s ({name})")
        cur.execute(definition)
    for name, definition in refs:
        cur.execute(f'ALTER TABLE {t} ADD CONSTRAINT "{name}" {definition}')

    changed = 0
    if len(old):
        step(f"comparing {t}s")
        stage = f"stage_{t}"
        cur.execute(f"CREATE TEMP TABLE {stage} ("
                    + ", ".join(f"{c} {'geometry' if c == 'geom' else sql}" for c, sql in columns)
                    + ") ON COMMIT DROP")
        _copy(cur, stage, old, columns, step)
        cur.execute(f"CREATE UNIQUE INDEX ON {stage} (id)")
        cur.execute(f"ANALYZE {stage}")
        names = [c for c, _ in columns]
        cols = ", ".join(names)
        s_cols = ", ".join(f"s.{c}" for c in names)
        t_cols = ", ".join(f"t.{c}" for c in names)
        cur.execute(
            f"UPDATE {t} AS t SET ({cols}, scope, batch_id, retired_at, retired_reason) = "
            f"({s_cols}, %(scope)s, %(batch)s, NULL, NULL) FROM {stage} AS s "
            f"WHERE t.id = s.id AND ({t_cols}, t.retired_at, t.scope) IS DISTINCT FROM "
            f"({s_cols}, NULL::timestamptz, %(scope)s)",
            {"batch": batch_id, "scope": scope},
        )
        changed = cur.rowcount

    gone = have.loc[(have["scope"] == scope) & have["live"].astype(bool) & ~have["id"].isin(frame["id"]), "id"]
    retired = 0
    if len(gone):
        cur.execute(
            f"UPDATE {t} SET retired_at = now(), batch_id = %(batch)s, "
            f"retired_reason = 'absent from batch ' || %(batch)s || ' of scope ' || %(scope)s "
            f"WHERE id = ANY(%(ids)s)",
            {"batch": batch_id, "scope": scope, "ids": gone.tolist()},
        )
        retired = cur.rowcount
    return {"added": added, "changed": changed, "retired": retired}
