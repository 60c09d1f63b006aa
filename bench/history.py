"""History and field look-ups on a district of >= 1M segments: what the viewer's 历史 and 在哪 cost.

Run with ``.venv/bin/python bench/history.py [--schema bench_analysis] [--changes 1000]``. On an
existing twin (``bench/analysis.py`` builds ``bench_analysis``; this script only reads it and
does not migrate it) it

1. opens one transaction, changes the ``remarks`` of ``--changes`` random pipes in it (new
   versions, as edits make them), and times inside it, median of ``--runs``:
   ``twin.store.changes_between`` from the first change to now over the whole district and over
   a 500 m box (what ``GET /view/changes`` runs), ``twin.store.timeline``, and as the same-run
   reference the naive comparison it avoids: the whole network as of both times joined
   (``segment_as_of`` twice, FULL JOIN, rows that differ); then ROLLS BACK: nothing is kept;
2. times ``analysis.field.nearest_valves`` (five valves, GiST ``<->``) at points spread over the
   district, against a scan of every valve's distance as the reference;
3. prints the figures (and appends them to ``bench/RESULTS.md`` with ``--record``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analysis.field import nearest_valves  # noqa: E402
from bench.machine import machine  # noqa: E402
from twin.db import make_engine  # noqa: E402
from twin.settings import get_settings  # noqa: E402
from twin.store import changes_between, timeline  # noqa: E402


def _median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def _naive(conn: sa.Connection, t0, t1) -> int:
    return conn.execute(sa.text(
        "SELECT count(*) FROM segment_as_of(:t0) a FULL JOIN segment_as_of(:t1) b ON a.id = b.id "
        "WHERE a.id IS NULL OR b.id IS NULL OR a.version <> b.version"), {"t0": t0, "t1": t1}).scalar_one()


def bench_changes(conn: sa.Connection, n: int, runs: int) -> dict:
    first = conn.execute(sa.text("SELECT min(created_at) FROM batch WHERE status = 'applied'")).scalar_one()
    conn.execute(sa.text(
        "UPDATE segment SET remarks = coalesce(remarks, '') || ' bench' WHERE id IN "
        "(SELECT id FROM segment TABLESAMPLE SYSTEM (1) WHERE retired_at IS NULL LIMIT :n)"), {"n": n})
    now = conn.execute(sa.text("SELECT now()")).scalar_one()
    x, y = conn.execute(sa.text("SELECT ST_X(c), ST_Y(c) FROM (SELECT ST_Centroid(ST_Extent(geom)) AS c "
                                "FROM (SELECT geom FROM current_segment LIMIT 200000) s) e")).one()
    box = (x - 250, y - 250, x + 250, y + 250)
    whole = changes_between(conn, first, now, srid=4326)
    out = {
        "changed": whole["total"],
        "changes_ms": _median_ms(lambda: changes_between(conn, first, now, srid=4326), runs),
        "changes_box_ms": _median_ms(lambda: changes_between(conn, first, now, bbox=box, srid=4326), runs),
        "timeline_ms": _median_ms(lambda: timeline(conn), runs),
        "naive_ms": _median_ms(lambda: _naive(conn, first, now), max(1, runs // 3)),
        "naive_rows": _naive(conn, first, now),
    }
    return out


def bench_valves(conn: sa.Connection, runs: int) -> dict:
    pts = np.array(conn.execute(sa.text(
        "SELECT ST_X(geom), ST_Y(geom) FROM node TABLESAMPLE SYSTEM (0.1) WHERE retired_at IS NULL LIMIT 20")).all(), dtype=float)
    valves = conn.execute(sa.text("SELECT count(*) FROM current_valve")).scalar_one()

    def knn() -> None:
        for x, y in pts:
            nearest_valves(conn, float(x), float(y), n=5)

    def scan() -> None:
        for x, y in pts[:3]:
            conn.execute(sa.text(
                "SELECT id FROM current_valve ORDER BY ST_Distance(geom, ST_SetSRID(ST_MakePoint(:x, :y), "
                "ST_SRID(geom))) LIMIT 5"), {"x": float(x), "y": float(y)}).all()

    return {"valves": valves, "nearest_ms": _median_ms(knn, runs) / len(pts),
            "scan_ms": _median_ms(scan, 1) / 3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--schema", default="bench_analysis")
    ap.add_argument("--changes", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--record", action="store_true", help="append the figures to bench/RESULTS.md")
    args = ap.parse_args()
    engine = make_engine(get_settings(db_schema=args.schema))
    with engine.connect() as conn:
        segments = conn.execute(sa.text("SELECT count(*) FROM current_segment")).scalar_one()
        conn.rollback()
        try:
            ch = bench_changes(conn, args.changes, args.runs)
        finally:
            conn.rollback()  # the bench's edits are never kept
        va = bench_valves(conn, args.runs)
        conn.rollback()
    engine.dispose()
    lines = [
        f"Twin `{args.schema}`, {segments:,} segments, {va['valves']:,} valves; {machine()}.",
        f"- `changes_between` first change -> now with {ch['changed']:,} pipes changed (in one rolled-back "
        f"transaction): whole district {ch['changes_ms']:.0f} ms, 500 m box {ch['changes_box_ms']:.0f} ms; "
        f"reference (both as-of networks joined, {ch['naive_rows']:,} rows differ) {ch['naive_ms']:.0f} ms.",
        f"- `timeline`: {ch['timeline_ms']:.1f} ms.",
        f"- `nearest_valves` (5, GiST `<->`): {va['nearest_ms']:.1f} ms a look-up; reference (every valve's "
        f"distance sorted) {va['scan_ms']:.0f} ms.",
    ]
    print("\n".join(lines))
    if args.record:
        when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        with open(ROOT / "bench" / "RESULTS.md", "a", encoding="utf-8") as f:
            f.write(f"\n## {when}: history and field look-ups (issue 22, `bench/history.py`)\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
