"""Shutdowns benchmark: what valve reliability and shutdown records cost over the bare shutoff.

Run with ``.venv/bin/python bench/shutdowns.py [--pipes N] [--active K] [--no-record]``. In one
run, on the demo district (``twin sample``, scale 1) loaded into a bench schema, it times

1. the reference: :func:`analysis.shutoff.isolate` on the model held in memory, N random water
   pipes;
2. :func:`analysis.shutoff.shutoff` on the same pipes, as the API calls it: the request checks,
   the valves' exercise history read from PostGIS, and the next ring of every valve likely to
   fail, first with no valve ever exercised (all likely to fail: the worst case), then with every
   valve exercised last month (no next ring: the cost of the history alone);
3. :func:`analysis.shutdown.plan_shutdown` (the shutoff, hydrants, the record written) and
   :func:`analysis.shutdown.get_shutdown` with its conflicts against K other shutdowns planned
   for the same window;

prints median and p95 of each and appends them to ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analysis.shutdown import get_shutdown, plan_shutdown  # noqa: E402
from analysis.shutoff import cached_model, isolate, shutoff  # noqa: E402
from bench.district import fresh_demo_twin  # noqa: E402
from bench.machine import machine  # noqa: E402

SCHEMA = "bench_shutdowns"


def _ms(times: list[float]) -> tuple[float, float]:
    return float(np.median(times) * 1000), float(np.percentile(times, 95) * 1000)


def _timed(fn, items) -> list[float]:
    out = []
    for item in items:
        t = time.perf_counter()
        fn(item)
        out.append(time.perf_counter() - t)
    return out


def _load():
    return fresh_demo_twin(SCHEMA)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pipes", type=int, default=300)
    ap.add_argument("--active", type=int, default=20)
    ap.add_argument("--no-record", action="store_true")
    args = ap.parse_args()
    settings, engine = _load()
    model = cached_model(engine)
    rng = np.random.default_rng(0)
    water = model.link_ids[model.link_utility == "JS"]
    pipes = rng.choice(water, size=min(args.pipes, len(water)), replace=False).tolist()
    ref = _timed(lambda p: isolate(model, pipe=p), pipes)

    def round_trip(_p: str) -> None:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    trip = _timed(round_trip, pipes)
    years = settings.valve_exercise_years
    full = _timed(lambda p: shutoff(engine, pipe=p, exercise_years=years), pipes)
    likely = np.mean([sum(v["likely_to_fail"] for v in shutoff(engine, pipe=p).valves) for p in pipes[:50]])
    with engine.begin() as conn:  # a well-kept network: every valve exercised last month
        conn.execute(sa.text("INSERT INTO valve_exercise (valve_id, at, result, by) "
                             "SELECT id, now() - interval '30 days', 'ok', 'bench' FROM current_valve"))
    kept = _timed(lambda p: shutoff(engine, pipe=p, exercise_years=years), pipes)
    start = dt.datetime(2030, 1, 1, 8, tzinfo=dt.UTC)
    plan_args = dict(start=start, end=start + dt.timedelta(hours=4), by="bench")
    planned = [plan_shutdown(engine, settings, pipe=p, **plan_args)["id"] for p in pipes[:args.active]]
    more = pipes[args.active:args.active + 50]
    plans = _timed(lambda p: plan_shutdown(engine, settings, pipe=p, **plan_args), more)
    ids = planned[:10]
    reads = _timed(lambda i: get_shutdown(engine, i), ids)
    total = args.active + len(more)
    lines = [
        f"## Shutdowns (bench/shutdowns.py, {dt.date.today():%Y-%m-%d})",
        f"- {machine()}; demo district (scale 1): {len(model.link_ids):,} pressurised pipes, "
        f"{len(model.valves):,} valves; schema `{SCHEMA}`.",
        "- reference, `isolate` on the model in memory, {n} random water pipes: median {:.2f} ms, p95 {:.2f} ms"
        .format(*_ms(ref), n=len(pipes)),
        "- reference, one database round trip (`SELECT 1` on a pooled connection): median {:.2f} ms, "
        "p95 {:.2f} ms".format(*_ms(trip)),
        "- `shutoff` (checks, exercise history, next ring of every valve likely to fail, {:.1f} per answer): "
        "median {:.2f} ms, p95 {:.2f} ms".format(likely, *_ms(full)),
        "- `shutoff`, every valve exercised last month (exercise history read, no next ring): "
        "median {:.2f} ms, p95 {:.2f} ms".format(*_ms(kept)),
        "- `plan_shutdown` (shutoff, hydrants, record) with {k}..{t} shutdowns in the same window: "
        "median {:.1f} ms, p95 {:.1f} ms".format(*_ms(plans), k=args.active, t=total),
        "- `get_shutdown` with its conflicts against {t} others: median {:.1f} ms, p95 {:.1f} ms"
        .format(*_ms(reads), t=total - 1),
    ]
    print("\n".join(lines))
    if not args.no_record:
        with (ROOT / "bench" / "RESULTS.md").open("a", encoding="utf-8") as f:
            f.write("\n" + "\n".join(lines) + "\n")
    engine.dispose()


if __name__ == "__main__":
    main()
