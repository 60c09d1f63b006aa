"""BCF benchmark: stored findings as BCF 3.0 topics (``GET /findings.bcf``) on a big district.

Run with ``.venv/bin/python bench/bcf.py``. In one run it

1. opens the district twin (``bench_analysis``, made by ``bench/analysis.py``: about a million
   pipes and the 222,210 whole-network findings it stored; read only);
2. times :func:`documents.bcf.network_findings_bcf` (what the route and ``twin analyze findings
   --bcf`` call) for the most topics a file holds (500) without snapshots, and with the default
   20 snapshots (VTK's start-up taken before, by one picture);
3. times, as same-run references, :func:`analysis.findings.list_findings` of the same 500 (the
   JSON listing of ``GET /findings``) and one :func:`documents.pictures.finding_picture`;
4. prints a table and appends it to ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analysis.findings import list_findings  # noqa: E402
from bench.machine import machine  # noqa: E402
from documents.bcf import MAX_TOPICS, SNAPSHOTS, network_findings_bcf  # noqa: E402
from documents.pictures import finding_picture  # noqa: E402
from twin.db import make_engine  # noqa: E402
from twin.settings import get_settings  # noqa: E402

SCHEMA = "bench_analysis"


def _median(fn, runs: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def bench_bcf(engine, settings, runs: int = 3) -> list[tuple[str, str]]:
    """The figures: (what, value) rows."""
    listed, doc = _median(lambda: list_findings(engine, limit=MAX_TOPICS), runs)
    first = doc["findings"][0]
    t = time.perf_counter()
    finding_picture(engine, first)
    startup = time.perf_counter() - t
    picture, _ = _median(lambda: finding_picture(engine, first), runs)
    bare, export = _median(lambda: network_findings_bcf(engine, settings, limit=MAX_TOPICS, snapshots=0), runs)
    full, export20 = _median(lambda: network_findings_bcf(engine, settings, limit=MAX_TOPICS), 1)
    per_picture = (full - bare) / max(export20.snapshots, 1)
    return [
        ("topics per file", f"{len(export.keys)} (the cap); {doc['numberMatched']:,} findings stored"),
        ("BCF, no snapshots", f"**{bare:.2f} s** ({bare / len(export.keys) * 1000:.1f} ms a topic), "
                              f"{len(export.data) / 1e6:.2f} MB"),
        (f"BCF, {SNAPSHOTS} snapshots (default)", f"**{full:.1f} s**, {export20.snapshots} snapshots, "
                                                 f"{len(export20.data) / 1e6:.2f} MB; "
                                                 f"{per_picture:.2f} s a snapshot"),
        ("reference: list_findings of the same 500 (JSON)", f"{listed * 1000:.0f} ms"),
        ("reference: one finding_picture", f"{picture:.2f} s (VTK start-up before: {startup:.2f} s)"),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--schema", default=SCHEMA)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    args = ap.parse_args()
    settings = get_settings(db_schema=args.schema)
    engine = make_engine(settings)
    rows = bench_bcf(engine, settings, args.runs)
    engine.dispose()
    width = max(len(w) for w, _ in rows)
    for what, figure in rows:
        print(f"{what:<{width}}  {figure.replace('**', '')}")
    if args.no_record:
        return
    load = os.getloadavg()[0]
    with (ROOT / "bench" / "RESULTS.md").open("a", encoding="utf-8") as f:
        f.write(f"\n### documents: findings as BCF 3.0 (`bench/bcf.py`), {dt.date.today().isoformat()}\n"
                f"- machine: {machine()}; load average {load:.1f} during the run\n"
                f"- district: schema `{args.schema}`, median of {args.runs} runs (one with snapshots)\n"
                + "".join(f"- {what}: {figure}\n" for what, figure in rows))


if __name__ == "__main__":
    main()
