"""3D Tiles benchmark: a district of >= 1M segments, full build and incremental rebuild.

Run with ``.venv/bin/python bench/tiles.py [--scale S]``. It

1. writes the sample district at benchmark scale and ingests it into the schema
   ``bench_tiles`` (not timed; skipped with ``--reuse`` when the schema is already loaded),
2. runs ``twin tiles build --full`` in a child process: segments per second, tiles, triangles,
   bytes per segment, peak memory (proportional set size of the build and its workers, sampled),
3. changes the material of the 100 segments nearest the district's centre (one SQL UPDATE) and
   times ``twin tiles build`` (incremental) end to end, process start included,
4. prints the figures and appends them to ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import machine  # noqa: E402
from twin.db import make_engine  # noqa: E402
from twin.settings import get_settings  # noqa: E402

BIN = Path(sys.executable).parent
SCHEMA = "bench_tiles"
BENCHMARK_SCALE = 25.0
TARGET_SEGMENTS_PER_S = 20_000
TARGET_INCREMENTAL_S = 5.0


def _env() -> dict[str, str]:
    return {**os.environ, "TWIN_DB_SCHEMA": SCHEMA}


def _run_measured(args: list[str]) -> tuple[float, dict, int]:
    """Run a command; (seconds, its JSON output, peak PSS of it and its children in bytes)."""
    peak = 0
    done = threading.Event()
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), text=True)

    def sample() -> None:
        nonlocal peak
        try:
            root = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            return
        while not done.is_set():
            total = 0
            try:
                for p in [root, *root.children(recursive=True)]:
                    try:
                        total += p.memory_full_info().pss
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        pass
            except psutil.NoSuchProcess:
                break
            peak = max(peak, total)
            done.wait(0.25)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, err = proc.communicate()
    seconds = time.perf_counter() - started
    done.set()
    thread.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{err[-3000:]}")
    return seconds, json.loads(out), peak


def _schema_segments(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        exists = conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": f"{SCHEMA}.segment"}).scalar()
        if not exists:
            return 0
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {SCHEMA}.current_segment")).scalar())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=BENCHMARK_SCALE, help="sample scale (25: ~1.06M segments)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "tiles")
    ap.add_argument("--reuse", action="store_true", help="keep the bench_tiles schema if it is loaded")
    ap.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    args = ap.parse_args()
    twin = str(BIN / "twin")
    engine = make_engine(get_settings(db_schema=SCHEMA), admin=True)  # it drops the schema

    loaded = _schema_segments(engine) if args.reuse else 0
    if not loaded:
        survey = args.out / "survey"
        print(f"writing the sample district (scale {args.scale:g}) to {survey} ...", flush=True)
        subprocess.run([twin, "sample", "--out", str(survey), "--scale", str(args.scale), "--json"],
                       check=True, stdout=subprocess.DEVNULL, env=_env())
        with engine.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        print("ingesting it into schema bench_tiles (not timed) ...", flush=True)
        t0 = time.perf_counter()
        subprocess.run([twin, "ingest", "survey", "--points", str(survey / "points.csv"), "--segments",
                        str(survey / "segments.csv"), "--json"], check=True, stdout=subprocess.DEVNULL,
                       env=_env())
        print(f"  ingest {time.perf_counter() - t0:.1f} s", flush=True)
        loaded = _schema_segments(engine)

    tiles = args.out / "tileset"
    print(f"full build of {loaded:,} segments into {tiles} ...", flush=True)
    full_s, full, peak = _run_measured([twin, "tiles", "build", "--full", "--json", "--out", str(tiles)])
    rate = full["segments"] / full["seconds"]

    # Change 100 segments in one area: the ones nearest the district's centre.
    with engine.begin() as conn:
        cx, cy = conn.execute(sa.text(
            "SELECT (ST_XMin(e) + ST_XMax(e)) / 2, (ST_YMin(e) + ST_YMax(e)) / 2 "
            "FROM (SELECT ST_Extent(geom) AS e FROM current_segment) x")).one()
        changed = conn.execute(sa.text(f"""
            UPDATE segment SET material = material || ' (bench {int(time.time())})'
             WHERE id IN (SELECT id FROM current_segment
                           ORDER BY geom <-> ST_SetSRID(ST_MakePoint(:x, :y), ST_SRID(geom)) LIMIT 100)
            RETURNING id""").bindparams(x=cx, y=cy)).scalars().all()
    inc_s, inc, _ = _run_measured([twin, "tiles", "build", "--json", "--out", str(tiles)])
    engine.dispose()

    figures = {
        "segments": full["segments"], "nodes": full["nodes"], "tiles": full["tiles"],
        "triangles": full["triangles"], "bytes": full["bytes"],
        "full_seconds": full["seconds"], "full_process_seconds": round(full_s, 2),
        "segments_per_s": round(rate), "bytes_per_segment": round(full["bytes"] / max(full["segments"], 1)),
        "peak_pss_mib": round(peak / 2**20), "stages": full["stages"],
        "changed": len(changed), "incremental_seconds": inc["seconds"],
        "incremental_process_seconds": round(inc_s, 2), "incremental_written": inc["tiles_written"],
        "incremental_kept": inc["tiles_kept"], "incremental_stages": inc["stages"],
    }
    print(json.dumps(figures, indent=2))
    ok_rate = rate >= TARGET_SEGMENTS_PER_S
    ok_inc = inc_s < TARGET_INCREMENTAL_S
    print(f"full build: {rate:,.0f} segments/s (target {TARGET_SEGMENTS_PER_S:,}: {'met' if ok_rate else 'NOT met'}); "
          f"incremental after {len(changed)} changes: {inc_s:.2f} s end to end "
          f"(target {TARGET_INCREMENTAL_S:g} s: {'met' if ok_inc else 'NOT met'})")
    if args.no_record:
        return
    section = [
        f"\n### tiles, {dt.date.today().isoformat()}",
        f"- machine: {machine()}",
        f"- district: scale {args.scale:g}, {full['segments']:,} segments, {full['nodes']:,} drawn nodes "
        "(wells, valves, hydrants, meters, sources, service connections)",
        f"- full build `twin tiles build --full`: {full['seconds']:.1f} s = **{rate:,.0f} segments/s** "
        f"({full_s:.1f} s with process start), {full['tiles']:,} tiles, {full['triangles']:,} triangles, "
        f"{full['bytes'] / 2**20:,.0f} MiB = {figures['bytes_per_segment']:,} bytes/segment, "
        f"peak PSS {figures['peak_pss_mib']:,} MiB (build and workers); stages (s): {full['stages']}",
        f"- incremental `twin tiles build` after an UPDATE of {len(changed)} segments near the centre: "
        f"**{inc_s:.2f} s** end to end ({inc['seconds']:.2f} s in the build), {inc['tiles_written']} tiles "
        f"rewritten, {inc['tiles_kept']:,} kept; stages (s): {inc['stages']}",
        f"- targets: >= {TARGET_SEGMENTS_PER_S:,} segments/s {'met' if ok_rate else '**not met**'}; "
        f"incremental < {TARGET_INCREMENTAL_S:g} s {'met' if ok_inc else '**not met**'}",
    ]
    results = ROOT / "bench" / "RESULTS.md"
    text = results.read_text(encoding="utf-8")
    if "## 3D Tiles (`bench/tiles.py`)" not in text:
        text += ("\n## 3D Tiles (`bench/tiles.py`)\nTargets: at least 20,000 segments/s for a full build on 2 "
                 "cores, an incremental rebuild after changing 100 segments in one area under 5 s.\n")
    results.write_text(text + "\n".join(section) + "\n", encoding="utf-8")
    print(f"appended to {results}")


if __name__ == "__main__":
    main()
