"""The survey import's COPY, text (CSV written by Arrow, geometry as hex EWKB: the loader before
issue 18's binary COPY) against binary (pgpq, geometry as EWKB bytes: the loader now), same rows,
same run.

``.venv/bin/python bench/ingest_copy.py [--tables bench/out/district25] [--rounds 2]``: reads and
checks the district's tables (not timed), then COPYs its segments into an unindexed temporary
table, alternating the two formats; prints wall seconds, the importing process's CPU seconds and
the PostgreSQL backend's (from /proc: the cluster runs on this machine). Not a test.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import ingest.load as load  # noqa: E402
from ingest.prepare import SurveyBatch  # noqa: E402
from ingest.tables import (  # noqa: E402
    POINT_COLUMNS,
    POINT_REQUIRED,
    SEGMENT_COLUMNS,
    SEGMENT_REQUIRED,
    open_table,
)
from twin.crs import twin_crs  # noqa: E402
from twin.db import make_engine, open_twin  # noqa: E402
from twin.settings import get_settings  # noqa: E402

SCHEMA = "bench_ingest_copy"
TEXT_TYPES = {"text": pa.string(), "float8": pa.float64(), "int4": pa.int64(), "int8": pa.int64(),
              "bool": pa.bool_(), "geometry": pa.large_string()}


def _hex(geom: pa.Array) -> pa.Array:
    """EWKB bytes as hex text, over the whole buffer (the old loader's ``_hex_records``)."""
    geom = geom.combine_chunks() if isinstance(geom, pa.ChunkedArray) else geom
    offsets = np.frombuffer(geom.buffers()[1], dtype=np.int64)[geom.offset:geom.offset + len(geom) + 1]
    data = geom.buffers()[2].to_pybytes()[offsets[0]:offsets[-1]]
    text = pa.py_buffer(data.hex().encode("ascii"))
    return pa.Array.from_buffers(pa.large_string(), len(geom), [None, pa.py_buffer(2 * (offsets - offsets[0])), text])


def _copy_csv(copy, frame, columns, chunk_rows: int = 65_536) -> None:
    names = [c for c, _ in columns]
    options = pacsv.WriteOptions(include_header=False)
    for start in range(0, len(frame), chunk_rows):
        part = frame.iloc[start:start + chunk_rows]
        arrays = [_hex(pa.array(part[c].array)) if t == "geometry" else load._arrow_column(part[c], TEXT_TYPES[t])
                  for c, t in columns]
        buf = io.BytesIO()
        pacsv.write_csv(pa.Table.from_arrays(arrays, names=names), buf, write_options=options)
        copy.write(buf.getbuffer())


def _backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, clock ticks of 1/100 s


def _frames(folder: Path, settings) -> list:
    crs = twin_crs(settings.crs)
    batch = SurveyBatch(settings, crs)
    points = open_table(folder / "points.csv", POINT_COLUMNS, POINT_REQUIRED)
    segments = open_table(folder / "segments.csv", SEGMENT_COLUMNS, SEGMENT_REQUIRED)
    for chunk in points:
        batch.add_points(chunk)
    batch.end_points()
    return [load.feature_frame("segment", batch.add_segments(chunk), crs.srid) for chunk in segments]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tables", type=Path, default=ROOT / "bench" / "out" / "district25")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    settings = get_settings(db_schema=SCHEMA)
    frames = _frames(args.tables, settings)
    n = sum(len(f) for f in frames)
    columns = [*load.TABLES["segment"].columns, ("geom", "geometry")]
    names = ", ".join(c for c, _ in columns)
    engine = open_twin(settings)
    results: dict[str, list[tuple[float, float, float]]] = {"text": [], "binary": []}
    try:
        for _ in range(args.rounds):
            for fmt in ("text", "binary"):
                with engine.begin() as conn, conn.connection.driver_connection.cursor() as cur:
                    cur.execute("CREATE TEMP TABLE copy_target (LIKE segment INCLUDING DEFAULTS) ON COMMIT DROP")
                    cur.execute("SELECT pg_backend_pid()")
                    pid = cur.fetchone()[0]
                    b0, c0, t0 = _backend_cpu(pid), time.process_time(), time.perf_counter()
                    sql = f"COPY copy_target ({names}) FROM STDIN (FORMAT {'csv' if fmt == 'text' else 'binary'})"
                    with cur.copy(sql, writer=load.QueuedLibpqWriter(cur)) as copy:
                        if fmt == "binary":
                            copy.write(load.COPY_HEADER)
                        for frame in frames:
                            if fmt == "text":
                                _copy_csv(copy, frame, columns)
                            else:
                                load._copy(copy, "copy_target", frame, columns, lambda _m: None)
                        if fmt == "binary":
                            copy.write(load.COPY_TRAILER)
                    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                    backend = _backend_cpu(pid) - b0
                    cur.execute("SELECT count(*), count(geom) FROM copy_target")
                    assert cur.fetchone() == (n, n)
                results[fmt].append((wall, cpu, backend))
                print(f"{fmt:6s}: {wall:6.2f} s wall, Python CPU {cpu:5.2f} s, PostgreSQL CPU {backend:5.2f} s",
                      flush=True)
    finally:
        engine.dispose()
        admin = make_engine(settings, admin=True)  # schemas are the admin's
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        admin.dispose()
    best = {fmt: min(r, key=lambda x: x[1] + x[2]) for fmt, r in results.items()}
    print(f"{n:,} segments; best round, CPU (Python + PostgreSQL): text "
          f"{best['text'][1] + best['text'][2]:.2f} s, binary {best['binary'][1] + best['binary'][2]:.2f} s")


if __name__ == "__main__":
    main()
