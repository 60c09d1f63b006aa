"""Whole-network scan in bounded memory: by partitions on processes here against the whole network at once.

``.venv/bin/python bench/scan_partitions.py [--schema bench_3m]`` on an ingested twin (default
``bench_ingest``, the 1M district of ``bench/ingest.py``). Each scan runs in a child process, as
``twin analyze scan --no-store`` does (findings not stored): the whole network at once (the
reference: what a network below ``TWIN_SCAN_PARTITION_ABOVE`` gets), then by partitions here,
on two child processes, a partition each at a time (what a larger one gets). Prints wall seconds, peak RSS (the child's, and its
forked clearance child's or its partition processes') and whether the counts agree; appends them to
``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import report  # noqa: E402

CHILD = """
import json, resource, sys, time
from twin.settings import get_settings
from twin.db import open_twin
from analysis.scan import scan_network
settings = get_settings()
engine = open_twin(settings)
t0 = time.perf_counter()
r = scan_network(engine, settings=settings, cluster=False, limit=0)
wall = time.perf_counter() - t0
rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
print(json.dumps({"seconds": wall, "rss_mib": rss / 1024, "segments": r["segments"],
                  "pairs": r["candidate_pairs"], "verdicts": r["verdicts"], "partitions": r.get("partitions"),
                  "workers": r["workers"],
                  "timings": r["timings_s"]}))
"""


def _scan(schema: str, above: int) -> dict:
    env = {**os.environ, "TWIN_DB_SCHEMA": schema, "TWIN_SCAN_PARTITION_ABOVE": str(above),
           "OPENBLAS_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=7200)
    if out.returncode != 0:
        print(out.stderr[-3000:])
        raise SystemExit("the scan failed")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--schema", default="bench_ingest", help="an ingested twin (default: the 1M district)")
    ap.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = ap.parse_args()
    whole = _scan(args.schema, 10**12)
    parts = _scan(args.schema, 1)
    same = all(whole[k] == parts[k] for k in ("segments", "pairs", "verdicts"))
    lines = [
        f"- twin `{args.schema}`: {whole['segments']:,} segments, {whole['pairs']:,} candidate pairs, "
        f"verdicts {whole['verdicts']}",
        f"- the whole network at once (the reference; clearance forked beside collision): "
        f"**{whole['seconds']:.1f} s**, peak RSS {whole['rss_mib']:,.0f} MiB (the largest process) {whole['timings']}",
        f"- by partitions here, {parts['workers']} processes a partition each at a time ({parts['partitions']} "
        f"partitions): **{parts['seconds']:.1f} s** "
        f"(x{parts['seconds'] / whole['seconds']:.2f} the time), peak RSS **{parts['rss_mib']:,.0f} MiB** "
        f"(x{parts['rss_mib'] / whole['rss_mib']:.2f}) {parts['timings']}; same counts: {same}",
    ]
    report("Scan by partitions here", "bench/scan_partitions.py", lines, record=not args.no_record)


if __name__ == "__main__":
    main()
