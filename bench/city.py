"""A district through every stage, at 1M and at 3M segments side by side (issues 18 and 19).

Run with ``.venv/bin/python bench/city.py --schema bench_analysis --schema bench_3m`` on
districts already ingested (``twin sample --scale 42`` is about 3.0M segments: the count grows
with the square of the scale, ~1,715 * scale**2; the ingest is timed on its own, under
``flock /tmp/bigmem.lock /usr/bin/time -v twin ingest survey ...``). For each schema, one after
the other, it measures

1. the full tile build (``twin tiles build --full --json`` in a child process: seconds, segments/s,
   bytes per segment, peak PSS of the build and its workers) and the first view (the coarsest
   level's tiles, as ``bench/tiles.py`` counts it);
2. the whole-network scan (``twin analyze scan --json --no-store``: seconds, peak PSS, counts);
3. what the twin takes on disk (the schema's tables and indexes) and the tileset;

prints the figures and, unless ``--no-record``, appends them to ``bench/RESULTS.md``. The first
schema is the same-run reference of the others (ratios per segment).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import machine  # noqa: E402
from bench.tiles import _run_measured, first_view  # noqa: E402
from twin.db import open_twin  # noqa: E402
from twin.settings import get_settings  # noqa: E402

BIN = Path(sys.executable).parent


def _size(schema: str) -> tuple[int, int]:
    """(segments, bytes of the schema's tables with their indexes and TOAST)."""
    engine = open_twin(get_settings(db_schema=schema))
    try:
        with engine.connect() as conn:
            n = conn.execute(sa.text("SELECT count(*) FROM current_segment")).scalar()
            size = conn.execute(sa.text(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace ns ON ns.oid = c.relnamespace WHERE ns.nspname = :s AND c.relkind = 'r'"),
                {"s": schema}).scalar()
    finally:
        engine.dispose()
    return int(n), int(size)


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _stage(schema: str, out: Path, skip_scan: bool) -> dict:
    env = {**os.environ, "TWIN_DB_SCHEMA": schema, "OPENBLAS_NUM_THREADS": "1"}
    n, db_bytes = _size(schema)
    fig: dict = {"schema": schema, "segments": n, "db_gib": round(db_bytes / 2**30, 2)}
    seconds, rep, peak = _run_measured([str(BIN / "twin"), "tiles", "build", "--full", "--no-dask", "--json",
                                        "--out", str(out)], env=env)
    fig["tiles"] = {"seconds": round(seconds, 1), "cpu_s": rep["process_cpu_seconds"],
                    "segments_per_s": round(rep["segments"] / seconds),
                    "tiles": rep["tiles"], "bytes_per_segment": round(rep["bytes"] / rep["segments"]),
                    "tileset_gib": round(_folder_bytes(out) / 2**30, 2), "peak_pss_mib": round(peak / 2**20),
                    "stages": rep["stages"], "first_view": first_view(out)}
    print(schema, "tiles", fig["tiles"], flush=True)
    shutil.rmtree(out, ignore_errors=True)
    if not skip_scan:
        seconds, rep, peak = _run_measured([str(BIN / "twin"), "analyze", "scan", "--no-dask", "--no-store",
                                            "--json", "--limit", "0"], env=env)
        fig["scan"] = {"seconds": round(seconds, 1), "cpu_s": rep["process_cpu_seconds"],
                       "peak_pss_mib": round(peak / 2**20),
                       "timings_s": rep.get("timings_s"), "candidate_pairs": rep.get("candidate_pairs"),
                       "verdicts": rep.get("verdicts")}
        print(schema, "scan", fig["scan"], flush=True)
    return fig


def _lines(figs: list[dict]) -> list[str]:
    ref = figs[0]
    out = []
    for f in figs:
        t, grow = f["tiles"], f["segments"] / ref["segments"]
        line = (f"- `{f['schema']}`: {f['segments']:,} segments (x{grow:.2f}), twin {f['db_gib']} GiB in PostgreSQL; "
                f"full tile build **{t['seconds']} s** ({t['segments_per_s']:,} segments/s, "
                f"x{t['seconds'] / ref['tiles']['seconds']:.2f} the time; {t['cpu_s']} CPU s of the command and its "
                f"workers), {t['tiles']:,} tiles, "
                f"{t['bytes_per_segment']} bytes/segment ({t['tileset_gib']} GiB), peak PSS "
                f"{t['peak_pss_mib']:,} MiB, stages {t['stages']}; first view {t['first_view']}")
        if "scan" in f:
            s = f["scan"]
            line += (f"; scan (no store) **{s['seconds']} s** (x{s['seconds'] / ref['scan']['seconds']:.2f} the "
                     f"time; {s['cpu_s']} CPU s), peak PSS {s['peak_pss_mib']:,} MiB, "
                     f"{s['candidate_pairs']:,} candidate pairs, "
                     f"verdicts {s['verdicts']}, {s['timings_s']}")
        out.append(line)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--schema", action="append", help="districts, the reference first (repeatable)")
    ap.add_argument("--skip-scan", action="store_true")
    ap.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    args = ap.parse_args()
    schemas = args.schema or ["bench_analysis", "bench_3m"]
    load = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="city_", dir=ROOT / "bench" / "out"))
    try:
        figs = [_stage(s, tmp / s, args.skip_scan) for s in schemas]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    head = [f"## A district through every stage, {' and '.join(schemas)} (`bench/city.py`, "
            f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)",
            f"- machine: {machine()}; load average at the start {load:.1f} (other sessions on the same cores)"]
    text = "\n".join([*head, *_lines(figs)]) + "\n"
    print(text)
    if not args.no_record:
        with (ROOT / "bench" / "RESULTS.md").open("a", encoding="utf-8") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
