"""Loading prepared features into the twin: COPY into staging, then one set-based merge.

A batch is applied in one transaction: either every feature lands (added, changed
and retired counted per table) or nothing does.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ingest.prepare import Prepared
from ingest.report import Report

__all__ = ["apply_batch", "TABLES"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TableSpec:
    """How one feature table is staged: its data columns (name, SQL type) and geometry."""

    name: str
    columns: tuple[tuple[str, str], ...]
    geometry: tuple[str, ...]  # staging columns the geometry is built from
    geom_sql: str  # expression over the staging alias ``s``; {srid} is filled in


_POINT = (("gx", "float8"), ("gy", "float8"), ("gz", "float8"))
_POINT_SQL = "ST_SetSRID(ST_MakePoint(s.gx, s.gy, s.gz), {srid})"

TABLES: dict[str, TableSpec] = {
    "node": TableSpec(
        "node",
        (("id", "text"), ("map_id", "text"), ("utility", "text"), ("subtype", "text"),
         ("feature", "text"), ("appurtenance", "text"), ("ground_z", "float8"), ("depth_m", "float8"),
         ("well_depth_m", "float8"), ("well_bottom_z", "float8"), ("eccentric_well_id", "text"),
         ("sheet", "text"), ("survey_date", "text"), ("remarks", "text")),
        tuple(c for c, _ in _POINT), _POINT_SQL,
    ),
    "segment": TableSpec(
        "segment",
        (("id", "text"), ("from_node", "text"), ("to_node", "text"), ("utility", "text"),
         ("subtype", "text"), ("shape", "text"), ("diameter_mm", "float8"), ("width_mm", "float8"),
         ("height_mm", "float8"), ("size_text", "text"), ("material", "text"), ("burial", "text"),
         ("pressure_mpa", "float8"), ("voltage_kv", "float8"), ("cables", "int4"),
         ("holes_total", "int4"), ("holes_used", "int4"), ("casing", "text"), ("flow", "text"),
         ("built_year", "int4"), ("built", "text"), ("owner", "text"), ("road", "text"),
         ("remarks", "text"), ("status", "text"), ("depth_reference", "text"),
         ("from_depth_m", "float8"), ("to_depth_m", "float8"), ("from_z", "float8"), ("to_z", "float8"),
         ("length_m", "float8")),
        ("x1", "y1", "x2", "y2", "wkt"),
        "COALESCE(ST_GeomFromText(s.wkt, {srid}), "
        "ST_SetSRID(ST_MakeLine(ST_MakePoint(s.x1, s.y1, s.from_z), ST_MakePoint(s.x2, s.y2, s.to_z)), {srid}))",
    ),
    "valve": TableSpec(
        "valve",
        (("id", "text"), ("segment_id", "text"), ("node_id", "text"), ("utility", "text"), ("kind", "text"),
         ("operable", "bool"), ("normally_closed", "bool")),
        tuple(c for c, _ in _POINT), _POINT_SQL,
    ),
    "source": TableSpec(
        "source",
        (("id", "text"), ("node_id", "text"), ("utility", "text"), ("kind", "text"), ("name", "text")),
        tuple(c for c, _ in _POINT), _POINT_SQL,
    ),
    "customer": TableSpec(
        "customer",
        (("id", "text"), ("node_id", "text"), ("utility", "text"), ("name", "text"), ("kind", "text"),
         ("critical", "bool"), ("demand", "float8")),
        tuple(c for c, _ in _POINT), _POINT_SQL,
    ),
}


def _staging_frames(prepared: Prepared) -> dict[str, pd.DataFrame]:
    n = prepared.nodes.drop_duplicates("id")
    nodes = n.assign(gx=n["easting"], gy=n["northing"], gz=n["ground_z"])
    s = prepared.segments
    wkt = None
    if "vertices" in s.columns and s["vertices"].notna().any():
        wkt = _polyline_wkt(s)
    segments = s.assign(wkt=wkt)
    v, src, c = prepared.valves, prepared.sources, prepared.customers
    return {
        "node": nodes,
        "segment": segments,
        "valve": v.assign(kind=v["attrs_kind"], gx=v["x"], gy=v["y"], gz=v["z"]),
        "source": src.assign(gx=src["x"], gy=src["y"], gz=src["z"]),
        "customer": c.assign(gx=c["x"], gy=c["y"], gz=c["z"]),
    }


def _polyline_wkt(s: pd.DataFrame) -> pd.Series:
    """WKT of segments with intermediate plan vertices; heights interpolated by chainage."""
    out = pd.Series([None] * len(s), index=s.index, dtype=object)
    for i in np.flatnonzero(s["vertices"].notna().to_numpy()):
        row = s.iloc[i]
        xy = np.array([(row.x1, row.y1), *row.vertices, (row.x2, row.y2)], dtype=float)
        chain = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))])
        frac = chain / chain[-1] if chain[-1] > 0 else np.zeros_like(chain)
        z = row.from_z + (row.to_z - row.from_z) * frac
        out.iat[i] = "LINESTRING Z (" + ", ".join(f"{a!r} {b!r} {c!r}" for a, b, c in zip(xy[:, 0].tolist(), xy[:, 1].tolist(), z.tolist(), strict=True)) + ")"
    return out


def _copy(cur, table: str, frame: pd.DataFrame, columns: list[str], step: Callable[[str], None],
          chunk_rows: int = 200_000) -> None:
    """COPY a frame into a table as CSV, in chunks so memory stays flat."""
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT csv)") as copy:
        for start in range(0, len(frame), chunk_rows):
            step(f"copying {table.removeprefix('stage_')}s {start:,}/{len(frame):,}")
            buf = io.StringIO()
            frame.iloc[start:start + chunk_rows][columns].to_csv(buf, header=False, index=False, na_rep="")
            copy.write(buf.getvalue())


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
) -> Report:
    """Apply a checked batch in one transaction; fills counts and ``batch_id`` on the report."""
    frames = _staging_frames(prepared)
    step = progress or (lambda _msg: None)
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        # One import at a time: concurrent batches touching the same ids would race.
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('twin.ingest'))"))
        batch_id = conn.execute(
            sa.text("INSERT INTO batch (kind, scope, created_by, files, status) "
                    "VALUES (:k, :s, :u, CAST(:f AS jsonb), 'applied') RETURNING id"),
            {"k": kind, "s": scope, "u": user, "f": json.dumps(files, ensure_ascii=False)},
        ).scalar_one()
        changes: dict[str, dict[str, int]] = {}
        with raw.cursor() as cur:
            for name, spec in TABLES.items():
                step(f"loading {name}s")
                changes[name] = _merge(cur, spec, frames[name], srid=srid, batch_id=batch_id, scope=scope,
                                       step=step)
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
    return report


def _merge(cur, spec: TableSpec, frame: pd.DataFrame, *, srid: int, batch_id: int, scope: str,
           step: Callable[[str], None] = lambda _m: None) -> dict[str, int]:
    stage = f"stage_{spec.name}"
    data_cols = [c for c, _ in spec.columns]
    stage_cols = data_cols + [c for c in spec.geometry if c not in data_cols]
    types = dict(spec.columns) | {c: ("text" if c == "wkt" else "float8") for c in spec.geometry}
    cur.execute(f"CREATE TEMP TABLE {stage} ({', '.join(f'{c} {types[c]}' for c in stage_cols)}) ON COMMIT DROP")
    _copy(cur, stage, frame, stage_cols, step)
    step(f"merging {spec.name}s")
    cur.execute(f"CREATE UNIQUE INDEX ON {stage} (id)")
    cur.execute(f"ANALYZE {stage}")
    geom = spec.geom_sql.format(srid=srid)
    t = spec.name
    cols = ", ".join(data_cols)
    s_cols = ", ".join(f"s.{c}" for c in data_cols)
    t_cols = ", ".join(f"t.{c}" for c in data_cols)
    params = {"batch": batch_id, "scope": scope}

    cur.execute(
        f"UPDATE {t} AS t SET ({cols}, geom, scope, batch_id, retired_at, retired_reason) = "
        f"({s_cols}, {geom}, %(scope)s, %(batch)s, NULL, NULL) FROM {stage} AS s "
        f"WHERE t.id = s.id AND ({t_cols}, t.geom, t.retired_at, t.scope) IS DISTINCT FROM "
        f"({s_cols}, {geom}, NULL::timestamptz, %(scope)s)",
        params,
    )
    changed = cur.rowcount
    cur.execute(
        f"INSERT INTO {t} ({cols}, geom, scope, batch_id) SELECT {s_cols}, {geom}, %(scope)s, %(batch)s "
        f"FROM {stage} AS s WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE {t}.id = s.id)",
        params,
    )
    added = cur.rowcount
    cur.execute(
        f"UPDATE {t} AS t SET retired_at = now(), batch_id = %(batch)s, "
        f"retired_reason = 'absent from batch ' || %(batch)s || ' of scope ' || %(scope)s "
        f"WHERE t.scope = %(scope)s AND t.retired_at IS NULL "
        f"AND NOT EXISTS (SELECT 1 FROM {stage} AS s WHERE s.id = t.id)",
        params,
    )
    retired = cur.rowcount
    return {"added": added, "changed": changed, "retired": retired}
