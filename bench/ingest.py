"""Ingest benchmark: a generated district of >= 1M segments, end to end, against ogr2ogr.

Run with ``make bench`` (or ``.venv/bin/python bench/ingest.py [--scale S]``). It

1. writes the sample district at benchmark scale (not timed),
2. runs ``twin ingest survey`` on it in a child process into a fresh schema: parse + data
   checks + centrelines + load (COPY and merge), timed end to end, peak memory from the
   child's max RSS,
3. in the same run, loads the same segment rows as plain 2D lines with ``ogr2ogr``
   (GDAL's PostgreSQL driver with PG_USE_COPY) as the reference (issue 18's), and both tables as
   the twin keeps them (every column, 3D, the keys a network needs) as a fuller one,
4. measures the database's own share of the twin's import, the floor no check can go under:
   the node and segment rows the import wrote, COPYed back in binary into tables of the same
   columns, indexed as the twin is, analysed and committed in one transaction; and the same
   with the indexes built after a commit on two connections at once (both cores),
5. prints the figures and the ratio and appends them to ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import machine  # noqa: E402
from ingest.load import BUILD_SETTINGS  # noqa: E402
from twin.db import make_engine  # noqa: E402
from twin.pgcluster import database_url  # noqa: E402
from twin.settings import get_settings  # noqa: E402

BIN = Path(sys.executable).parent
SCHEMA = "bench_ingest"
OGR_SCHEMA = "bench_ogr"
FLOOR_SCHEMA = "bench_floor"
FLOOR_TABLES = ("node", "segment")


def _drop(schema: str) -> None:
    engine = make_engine(get_settings(db_schema=schema), admin=True)  # schemas are the admin's
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    engine.dispose()


def _ogr_csv(points: Path, segments: Path, out: Path) -> int:
    """The reference's input: the segment rows with a 2D WKT line from the point table."""
    p = pd.read_csv(points, dtype={"物探点号": str}, usecols=["物探点号", "X", "Y"]).set_index("物探点号")
    s = pd.read_csv(segments, dtype=str, keep_default_na=False)
    a, b = p.reindex(s["起点号"]), p.reindex(s["终点号"])
    # X is northing, Y easting: WKT wants easting first.
    s.insert(0, "WKT", "LINESTRING (" + a["Y"].astype(str).to_numpy() + " " + a["X"].astype(str).to_numpy()
             + ", " + b["Y"].astype(str).to_numpy() + " " + b["X"].astype(str).to_numpy() + ")")
    s.columns = ["WKT"] + [f"c{i}" for i in range(1, len(s.columns))]  # ASCII names for the reference
    s.to_csv(out, index=False)
    return len(s)


def _ogr_tables(points: Path, segments: Path, out: Path) -> tuple[Path, Path]:
    """The fuller reference's input: both tables with every column, the points with a 3D WKT
    point at their ground, the segments with a 3D WKT line between their ends' pipe tops
    (ground less depth)."""
    p = pd.read_csv(points, dtype=str, keep_default_na=False)
    xyz = p[["X", "Y", "地面高程"]].apply(pd.to_numeric, errors="coerce").fillna(0.0)
    p.insert(0, "WKT", "POINT Z (" + xyz["Y"].astype(str) + " " + xyz["X"].astype(str) + " "
             + xyz["地面高程"].astype(str) + ")")
    p.columns = ["WKT"] + [f"c{i}" for i in range(1, len(p.columns))]
    s = pd.read_csv(segments, dtype=str, keep_default_na=False)
    at = xyz.set_axis(p["c1"].to_numpy())
    a, b = at.reindex(s["起点号"]), at.reindex(s["终点号"])
    za = a["地面高程"].to_numpy() - pd.to_numeric(s["起点埋深"], errors="coerce").fillna(0).to_numpy()
    zb = b["地面高程"].to_numpy() - pd.to_numeric(s["终点埋深"], errors="coerce").fillna(0).to_numpy()
    s.insert(0, "WKT", "LINESTRING Z (" + a["Y"].astype(str).to_numpy() + " " + a["X"].astype(str).to_numpy()
             + " " + pd.Series(za).astype(str).to_numpy() + ", " + b["Y"].astype(str).to_numpy() + " "
             + b["X"].astype(str).to_numpy() + " " + pd.Series(zb).astype(str).to_numpy() + ")")
    s.columns = ["WKT"] + [f"c{i}" for i in range(1, len(s.columns))]
    paths = out / "points_wkt3d.csv", out / "segments_wkt3d.csv"
    p.to_csv(paths[0], index=False)
    s.to_csv(paths[1], index=False)
    return paths


def _ogr_load(pg: str, csv_path: Path, table: str, kind: str) -> None:
    subprocess.run(["ogr2ogr", "-f", "PostgreSQL", pg, str(csv_path), "-oo", "GEOM_POSSIBLE_NAMES=WKT",
                    "-oo", "KEEP_GEOM_COLUMNS=NO", "-a_srs", "EPSG:4548", "-nlt", kind,
                    "-nln", f"{OGR_SCHEMA}.{table}", "-lco", "GEOMETRY_NAME=geom", "-gt", "65536",
                    "--config", "PG_USE_COPY", "YES"], check=True)


def _ogr_full(pg: str, points: Path, segments: Path) -> float:
    """ogr2ogr loading both tables as the twin keeps them (every column, 3D points and lines,
    a 2D GiST each), then the keys a network needs (unique point ids, the segments' two end
    ids): what PipeTwin writes, without its checks, derived features and versioning."""
    _drop(OGR_SCHEMA)
    t0 = time.perf_counter()
    _ogr_load(pg, points, "points", "POINTZ")
    _ogr_load(pg, segments, "segments", "LINESTRINGZ")
    engine = make_engine(get_settings(db_schema=OGR_SCHEMA), admin=True)
    with engine.begin() as conn:
        for statement in (f"CREATE UNIQUE INDEX ON {OGR_SCHEMA}.points (c1)",
                          f"CREATE INDEX ON {OGR_SCHEMA}.segments (c1)",
                          f"CREATE INDEX ON {OGR_SCHEMA}.segments (c2)",
                          f"ANALYZE {OGR_SCHEMA}.points", f"ANALYZE {OGR_SCHEMA}.segments"):
            conn.execute(sa.text(statement))
    engine.dispose()
    return time.perf_counter() - t0


def _pg_floor() -> tuple[float, float, float]:
    """The database's share of the import of the twin in ``SCHEMA`` (just loaded): its node and
    segment rows COPYed back in binary into tables of the same columns, with the twin's indexes
    and keys built, analysed and committed: (seconds in one transaction, as an import runs;
    seconds with the indexes built after a commit on two connections at once; seconds of that
    one's COPY and commit alone). No check, no
    derived valves or customers, no batch record: a floor, not an import."""
    settings = get_settings(db_schema=SCHEMA)
    engine = make_engine(settings, admin=True)
    dumps, indexes = {}, {}
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        with raw.cursor() as cur:
            for t in FLOOR_TABLES:
                sink = io.BytesIO()
                with cur.copy(f"COPY {SCHEMA}.{t} TO STDOUT (FORMAT binary)") as copy:
                    for block in copy:
                        sink.write(block)
                dumps[t] = sink.getvalue()
                cur.execute("SELECT indexdef, pg_relation_size(format('%%I.%%I', schemaname, indexname)) "
                            "FROM pg_indexes WHERE schemaname = %s AND tablename = %s", (SCHEMA, t))
                indexes[t] = [(d.replace(f" ON {SCHEMA}.", f" ON {FLOOR_SCHEMA}."), size)
                              for d, size in cur.fetchall()]
    settings_sql = [f"SET LOCAL {k} = '{v}'" for k, v in BUILD_SETTINGS.items()]

    def fresh() -> None:
        _drop(FLOOR_SCHEMA)
        with engine.begin() as conn:
            for t in FLOOR_TABLES:
                conn.execute(sa.text(f"CREATE TABLE {FLOOR_SCHEMA}.{t} (LIKE {SCHEMA}.{t})"))

    def copy_in(cur) -> None:
        for t in FLOOR_TABLES:
            with cur.copy(f"COPY {FLOOR_SCHEMA}.{t} FROM STDIN (FORMAT binary)") as copy:
                data = memoryview(dumps[t])
                for at in range(0, len(data), 1 << 20):
                    copy.write(data[at:at + (1 << 20)])

    def build(statements: list[str]) -> None:
        for sql in statements:  # each committed alone: two builders never wait on each other's locks
            with engine.begin() as conn:
                for setting in settings_sql:
                    conn.execute(sa.text(setting))
                conn.execute(sa.text(sql))

    fresh()
    t0 = time.perf_counter()
    with engine.begin() as conn, conn.connection.driver_connection.cursor() as cur:
        for sql in settings_sql:
            cur.execute(sql)
        copy_in(cur)
        for t in FLOOR_TABLES:
            for definition, _ in indexes[t]:
                cur.execute(definition)
            cur.execute(f"ANALYZE {FLOOR_SCHEMA}.{t}")
    serial = time.perf_counter() - t0

    fresh()
    t0 = time.perf_counter()
    with engine.begin() as conn, conn.connection.driver_connection.cursor() as cur:
        copy_in(cur)
    copied = time.perf_counter() - t0
    shares: list[list[str]] = [[], []]
    loads = [0, 0]
    for definition, size in sorted((i for t in FLOOR_TABLES for i in indexes[t]), key=lambda i: -i[1]):
        k = loads.index(min(loads))  # the largest index to the connection with the least to build
        shares[k].append(definition)
        loads[k] += size
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(build, shares))
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(build, [[f"ANALYZE {FLOOR_SCHEMA}.{t}"] for t in FLOOR_TABLES]))
    parallel = time.perf_counter() - t0
    _drop(FLOOR_SCHEMA)
    engine.dispose()
    return serial, parallel, copied


def _twin_ingest(points: Path, segments: Path) -> tuple[float, float, float, dict]:
    """``twin ingest survey`` in a child process into a fresh schema: wall seconds, the child's
    CPU seconds, its peak RSS (MiB) and the report."""
    _drop(SCHEMA)
    env = {**os.environ, "TWIN_DB_SCHEMA": SCHEMA}
    # A wrapper process per run, so the peak RSS is this child's (rusage of children keeps the maximum).
    probe = ("import resource, subprocess, sys, json; r = subprocess.run(sys.argv[1:]); "
             "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
             "print(json.dumps({'rc': r.returncode, 'rss': u.ru_maxrss, 'cpu': u.ru_utime + u.ru_stime}), "
             "file=sys.stderr)")
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", probe, str(BIN / "twin"), "ingest", "survey", "--points",
                          str(points), "--segments", str(segments), "--json"], env=env, capture_output=True,
                         text=True)
    wall = time.perf_counter() - t0
    usage = json.loads(res.stderr.strip().splitlines()[-1])
    if usage["rc"] != 0:
        print(res.stdout[-3000:], res.stderr[-3000:])
        raise SystemExit("twin ingest failed")
    return wall, usage["cpu"], usage["rss"] / 1024, json.loads(res.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=None, help="sample scale (default: >= 1M segments)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    ap.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    ap.add_argument("--small-scale", type=float, default=10.0,
                    help="a second, smaller district whose peak memory shows the growth (0: none)")
    ap.add_argument("--tables", type=Path, default=None,
                    help="a folder with points.csv and segments.csv already written (not generated again)")
    args = ap.parse_args()

    from ingest.sample import BENCHMARK_SCALE, generate_district

    scale = args.scale or BENCHMARK_SCALE
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    summary = {} if args.tables else generate_district(args.out, scale=scale, seed=1)
    gen_s = time.perf_counter() - t0
    folder = args.tables or args.out
    points, segments = folder / "points.csv", folder / "segments.csv"
    summary.setdefault("points_total", sum(1 for _ in points.open("rb")) - 1)
    n_seg = sum(1 for _ in segments.open("rb")) - 1
    label = f"tables {args.tables}" if args.tables else f"scale {scale}"  # --tables: not generated
    print(f"district: {label}, {n_seg:,} segments, generated in {gen_s:.1f} s", flush=True)

    # -- PipeTwin, end to end, in a child process ------------------------------------------
    twin_s, cpu_s, peak_mib, report = _twin_ingest(points, segments)
    stages = report["seconds"]
    print(f"PipeTwin: {twin_s:.1f} s, {n_seg / twin_s:,.0f} segments/s, peak {peak_mib:,.0f} MiB, "
          f"CPU {cpu_s:.1f} s (stages {stages}, warnings {report['warning_count']})", flush=True)
    floor_s, floor2_s, copy_s = _pg_floor()
    print(f"the database's share alone (the twin's rows COPYed back, its indexes, one transaction): "
          f"{floor_s:.1f} s; indexes on two connections after a commit: {floor2_s:.1f} s (COPY + commit "
          f"{copy_s:.1f} s)", flush=True)
    small = ""
    if args.small_scale:
        folder = args.out / f"scale{args.small_scale:g}"
        generate_district(folder, scale=args.small_scale, seed=1)
        n_small = sum(1 for _ in (folder / "segments.csv").open("rb")) - 1
        small_s, _, small_mib, _ = _twin_ingest(folder / "points.csv", folder / "segments.csv")
        small = (f"; at scale {args.small_scale:g} ({n_small:,} segments): {small_s:.1f} s, "
                 f"peak RSS {small_mib:,.0f} MiB")
        print(f"PipeTwin{small.removeprefix(';')}", flush=True)

    # -- the reference: ogr2ogr, plain 2D lines, PG_USE_COPY ---------------------------------
    ogr_input = args.out / "segments_wkt.csv"
    _ogr_csv(points, segments, ogr_input)
    _drop(OGR_SCHEMA)
    url = sa.engine.make_url(database_url(get_settings(), admin=True))  # it creates its table
    pg = f"PG:host={url.host} port={url.port} dbname={url.database} user={url.username}"
    if url.password:
        pg += f" password={url.password}"
    t0 = time.perf_counter()
    subprocess.run(["ogr2ogr", "-f", "PostgreSQL", pg, str(ogr_input), "-oo", "GEOM_POSSIBLE_NAMES=WKT",
                    "-oo", "KEEP_GEOM_COLUMNS=NO", "-a_srs", "EPSG:4548", "-nlt", "LINESTRING",
                    "-nln", f"{OGR_SCHEMA}.lines", "-lco", "GEOMETRY_NAME=geom", "-gt", "65536",
                    "--config", "PG_USE_COPY", "YES"], check=True)
    ogr_s = time.perf_counter() - t0
    print(f"ogr2ogr:  {ogr_s:.1f} s, {n_seg / ogr_s:,.0f} segments/s", flush=True)
    ratio = ogr_s / twin_s
    print(f"ratio (PipeTwin speed / ogr2ogr speed): {ratio:.2f}", flush=True)
    full_s = _ogr_full(pg, *_ogr_tables(points, segments, args.out))
    full = full_s / twin_s
    print(f"ogr2ogr, both tables as the twin keeps them: {full_s:.1f} s; ratio {full:.2f}", flush=True)

    _drop(SCHEMA)
    _drop(OGR_SCHEMA)
    if not args.no_record:
        gdal = subprocess.run(["ogr2ogr", "--version"], capture_output=True, text=True).stdout.strip()
        with (ROOT / "bench" / "RESULTS.md").open("a", encoding="utf-8") as f:
            f.write(
                f"\n### ingest, {dt.date.today().isoformat()}\n"
                f"- machine: {machine()}; {gdal}\n"
                f"- district: {label}, {n_seg:,} segments, {summary.get('points_total', 0):,} points\n"
                f"- PipeTwin `twin ingest survey` end to end (read + checks + centrelines + COPY/merge): "
                f"{twin_s:.1f} s = **{n_seg / twin_s:,.0f} segments/s**, peak RSS {peak_mib:,.0f} MiB, "
                f"CPU {cpu_s:.1f} s{small}; stages (s, interleaved): {stages}\n"
                f"- ogr2ogr reference (2D lines, PG_USE_COPY): {ogr_s:.1f} s = {n_seg / ogr_s:,.0f} segments/s\n"
                f"- ratio PipeTwin / ogr2ogr speed: **{ratio:.2f}**\n"
                f"- fuller reference, ogr2ogr loading both tables as the twin keeps them (every column, 3D "
                f"points and lines, 2D GiST, unique point ids, the end ids indexed): {full_s:.1f} s; "
                f"ratio **{full:.2f}**\n"
                f"- the database's share alone, the floor no check goes under (the twin's node and segment "
                f"rows COPYed back in binary into tables of the same columns, the twin's indexes and keys, "
                f"ANALYZE, one transaction): {floor_s:.1f} s = {ogr_s / floor_s:.2f}x the 2D reference's speed; "
                f"with the indexes built after a commit on two connections at once: {floor2_s:.1f} s = "
                f"{ogr_s / floor2_s:.2f}x (its COPY + commit {copy_s:.1f} s)\n"
            )


if __name__ == "__main__":
    main()
