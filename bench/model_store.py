"""Stored shutoff model benchmark: a process that needs the model loads it instead of building it.

Run with ``.venv/bin/python bench/model_store.py [--schema bench_3m]`` on an ingested twin
(default ``bench_ingest``, the 1M district of ``bench/ingest.py``). Every figure is a fresh
process calling :func:`analysis.shutoff.cached_model`, as a server worker or a ``twin``
command does on its first shutoff:

1. one process, empty store: read + segment + store (the reference: what every process paid
   before the store);
2. one process, the store filled by 1: load;
3. two processes started together (the server's two workers), each with a store of its own
   (the reference: each builds), then sharing the filled store (a restart: both load), then
   sharing an empty one (one builds, the other waits and loads): seconds until both have
   their model.

Prints the figures and appends them to ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import report  # noqa: E402

CHILD = """
import json, resource, time
from twin.settings import get_settings
from twin.db import open_twin
from analysis.shutoff import cached_model
engine = open_twin(get_settings())
t0 = time.perf_counter()
model = cached_model(engine)
print(json.dumps({"seconds": time.perf_counter() - t0, "timings": model.timings, "links": len(model.links),
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _start(schema: str, store: Path) -> subprocess.Popen:
    env = {**os.environ, "TWIN_DB_SCHEMA": schema, "TWIN_MODEL_DIR": str(store), "OPENBLAS_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", CHILD], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)


def _result(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate(timeout=1800)
    if proc.returncode != 0:
        raise SystemExit("the child process failed")
    return json.loads(out.strip().splitlines()[-1])


def _together(schema: str, stores: list[Path]) -> tuple[float, list[dict]]:
    t0 = time.perf_counter()
    procs = [_start(schema, s) for s in stores]
    results = [_result(p) for p in procs]
    return time.perf_counter() - t0, results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--schema", default="bench_ingest", help="an ingested twin (default: the 1M district)")
    ap.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-models-"))
    try:
        shared = tmp / "shared"
        built = _result(_start(args.schema, shared))
        loaded = _result(_start(args.schema, shared))
        own_wall, own = _together(args.schema, [tmp / "a", tmp / "b"])
        restart_wall, _ = _together(args.schema, [shared, shared])
        shutil.rmtree(shared)
        shared_wall, both = _together(args.schema, [shared, shared])
        size = sum(f.stat().st_size for f in shared.rglob("*") if f.is_file()) / 2**20
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    kinds = sorted("load" if "load_s" in r["timings"] else "build" for r in both)
    lines = [
        f"- twin `{args.schema}`: {built['links']:,} pressurised pipes in the model; stored {size:,.0f} MiB",
        f"- one process, empty store (read + segment + store, the reference): **{built['seconds']:.2f} s** "
        f"(read {built['timings']['read_s']:.2f}, segment {built['timings']['segment_s']:.2f}, "
        f"store {built['timings'].get('store_s', 0):.2f}), peak RSS {built['rss_mib']:,.0f} MiB",
        f"- one process, from the store: **{loaded['seconds']:.2f} s** = "
        f"{built['seconds'] / loaded['seconds']:.1f}x faster, peak RSS {loaded['rss_mib']:,.0f} MiB",
        f"- two processes started together (a server's two workers): each building its own "
        f"{own_wall:.2f} s until both have it (process start included); from the filled store (a restart) **{restart_wall:.2f} s** "
        f"({own_wall / restart_wall:.1f}x); sharing an empty store {shared_wall:.2f} s ({' + '.join(kinds)})",
    ]
    report("Stored shutoff model", "bench/model_store.py", lines, record=not args.no_record)


if __name__ == "__main__":
    main()
