"""Analysis benchmark on a district of >= 1M segments: scan, proposal check, cross-section, profile.

Run with ``.venv/bin/python bench/analysis.py``. It

1. reuses ``bench/out/district25`` (written by ``twin sample --scale 25`` when missing) and the
   schema ``bench_analysis`` (ingested when empty; both steps are guarded by the lock directory
   ``bench/out/district25.lock`` so two scripts never build them at once),
2. times the whole-network collision + clearance scan (``analysis.scan.scan_network``, target
   <= 20 s, issue 18) and the same with its findings stored (``analysis.findings.scan_and_store``
   called exactly as the server's ``network-scan`` process calls it, with that process's default
   inputs: a first scan into an emptied findings table, a re-scan, an unchanged re-scan); same-run
   references: the read alone (``load_scan_network``), the previous findings store's three runs
   between two of this one's (``--no-reference`` skips them) and, for the proposal
   check, the candidate search as one PostGIS query (``ST_DWithin`` on the GiST index). Then the
   proposal check of a 1 km pipe (<= 50 ms, issue 18), a cross-section across a road (< 50 ms)
   and a profile over >= 2 km (< 100 ms): the median of repeated runs on a warm connection
   pool, places spread over the district (``--only-scan`` times the scan alone, ``--skip-scan``
   all but the scan); the load average before and after each timing goes with its figure,
   since other work on the machine's two cores moves wall times,
3. prints the figures and appends them to ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analysis.findings import scan_and_store  # noqa: E402
from analysis.profile import longitudinal_profile  # noqa: E402
from analysis.proposal import check_proposal  # noqa: E402
from analysis.scan import load_scan_network, scan_network  # noqa: E402
from analysis.section import cross_section  # noqa: E402
from api.processes import NetworkScanInputs  # noqa: E402
from bench.machine import machine  # noqa: E402
from twin.db import open_twin  # noqa: E402
from twin.settings import TwinSettings, get_settings  # noqa: E402

BIN = Path(sys.executable).parent
SCHEMA = "bench_analysis"
DISTRICT = ROOT / "bench" / "out" / "district25"
LOCK = ROOT / "bench" / "out" / "district25.lock"
TARGETS_MS = {"proposal": 50.0, "section": 50.0, "profile": 100.0}
#: The whole-network scan (issue 18), seconds.
TARGET_SCAN_S = 20.0


def _locked(step) -> None:
    """Run ``step`` holding the lock directory (waits for another holder to finish)."""
    while True:
        try:
            LOCK.mkdir(parents=True)
            break
        except FileExistsError:
            print("waiting for bench/out/district25.lock ...", flush=True)
            time.sleep(10)
    try:
        (LOCK / "owner").write_text(f"bench/analysis.py pid {os.getpid()} {dt.datetime.now().isoformat()}\n")
        step()
    finally:
        for f in LOCK.iterdir():
            f.unlink()
        LOCK.rmdir()


def _prepare(scale: float) -> sa.Engine:
    settings = get_settings(db_schema=SCHEMA)

    def build() -> None:
        if not (DISTRICT / "segments.csv").exists():
            subprocess.run([str(BIN / "twin"), "sample", "--scale", str(scale), "--out", str(DISTRICT), "--json"],
                           check=True, capture_output=True)
        engine = open_twin(settings)
        with engine.connect() as conn:
            n = conn.execute(sa.text("SELECT count(*) FROM current_segment")).scalar()
        engine.dispose()
        if not n:
            env = {**os.environ, "TWIN_DB_SCHEMA": SCHEMA}
            subprocess.run([str(BIN / "twin"), "ingest", "survey", "--points", str(DISTRICT / "points.csv"),
                            "--segments", str(DISTRICT / "segments.csv"), "--json"], env=env, check=True,
                           capture_output=True)

    _locked(build)
    return open_twin(settings)


def _median_ms(fn, runs: int, cpu: list | None = None) -> tuple[float, float, list]:
    """Median and max wall ms of ``runs`` calls after a warm-up; ``cpu`` gets each call's CPU ms
    of this process (what a busy machine's other work does not add to)."""
    fn(0)  # warm-up (connection pool, imports, caches)
    times, results = [], []
    for i in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        results.append(fn(i + 1))
        times.append((time.perf_counter() - t0) * 1000)
        if cpu is not None:
            cpu.append((time.process_time() - c0) * 1000)
    return statistics.median(times), max(times), results


def _roads(engine: sa.Engine, n: int, rng: np.random.Generator) -> list[tuple[float, float, float]]:
    """Straight north-south sewer pieces (offset 0 = a road centreline): (x, y_min, y_max) per road."""
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT ST_X(ST_StartPoint(geom)) AS x, min(ST_YMin(geom)), max(ST_YMax(geom)) FROM current_segment "
            "WHERE subtype = 'WS' AND ST_X(ST_StartPoint(geom)) = ST_X(ST_EndPoint(geom)) "
            "GROUP BY 1 HAVING max(ST_YMax(geom)) - min(ST_YMin(geom)) > 1500")).all()
    pick = rng.choice(len(rows), size=min(n, len(rows)), replace=False)
    return [tuple(map(float, rows[i])) for i in pick]


def _time_section(engine: sa.Engine, settings: TwinSettings, roads: list, rng: np.random.Generator,
                  runs: int) -> str:
    """Cross-section: 50 m across a north-south road, somewhere along it."""

    def section(i: int):
        x, y0, y1 = roads[i % len(roads)]
        y = float(rng.uniform(y0 + 100, y1 - 100)) + 0.37
        return cross_section(engine, f"{x - 25},{y},{x + 25},{y}", crs=settings.crs)

    ms, worst, secs = _median_ms(section, runs)
    pipes = statistics.median(len(s.pipes) for s in secs)
    print(f"cross-section: median {ms:.1f} ms (max {worst:.1f}), {pipes:.0f} pipes cut", flush=True)
    return (f"- cross-section, 50 m across a road: **{ms:.1f} ms** median (max {worst:.1f}), {pipes:.0f} pipes "
            f"cut; target 50 ms {_met(ms, TARGETS_MS['section'])}")


def _load() -> float:
    """The machine's load average over the last minute (two cores: above 2, other work waits)."""
    return round(os.getloadavg()[0], 1)


def _time_proposal(engine: sa.Engine, settings: TwinSettings, roads: list, runs: int) -> str:
    """Proposal check: a 1 km DN300 water pipe 3 m east of a road centreline, 1.5 m deep; the same-run
    reference is the candidate search alone, as one PostGIS query on the GiST index."""

    def proposal(i: int):
        x, y0, _y1 = roads[i % len(roads)]
        doc = {"type": "Feature", "properties": {"id": "BENCH", "utility": "JS", "size": "DN300", "depth_m": 1.5},
               "geometry": {"type": "LineString", "coordinates": [[x + 3, y0 + 200], [x + 3, y0 + 1200]]}}
        return check_proposal(engine, doc, settings)

    def candidates(i: int) -> int:
        x, y0, _y1 = roads[i % len(roads)]
        with engine.connect() as conn:
            return conn.execute(sa.text(
                "SELECT count(*) FROM current_segment WHERE ST_DWithin(geom, ST_SetSRID(ST_MakeLine("
                "ST_MakePoint(:x, :a), ST_MakePoint(:x, :b)), (SELECT value::int FROM twin_meta WHERE key = 'srid')), "
                ":d)"), {"x": x + 3, "a": y0 + 200, "b": y0 + 1200, "d": 6.15}).scalar()

    cpu: list[float] = []
    load0 = _load()
    ms, worst, props = _median_ms(proposal, runs, cpu)
    ref_ms, _ref_worst, _counts = _median_ms(candidates, runs)
    load1 = _load()
    cpu_ms = statistics.median(cpu)
    findings = statistics.median(len(r.findings) for r in props)
    cands = statistics.median(r.candidates for r in props)
    stages = {k: round(statistics.median(r.timings_s[k] for r in props) * 1000, 1) for k in props[0].timings_s}
    print(f"proposal check (1 km): median {ms:.1f} ms (max {worst:.1f}; CPU of this process {cpu_ms:.1f} ms), "
          f"{cands:.0f} existing candidates, {findings:.0f} findings; stages ms {stages}; reference, the "
          f"candidate search as one PostGIS query: {ref_ms:.1f} ms; load average {load0} -> {load1}", flush=True)
    return (f"- proposal check, 1 km DN300 water pipe (read + candidates + collision/clearance/cover + section): "
            f"**{ms:.1f} ms** median (max {worst:.1f}; CPU of the bench process {cpu_ms:.1f} ms), {cands:.0f} existing "
            f"candidates, {findings:.0f} findings; stages ms {stages}; same-run reference, the candidate search "
            f"alone as one PostGIS query (`ST_DWithin` on the GiST index): {ref_ms:.1f} ms median; load average "
            f"{load0} -> {load1}; target 50 ms {_met(ms, TARGETS_MS['proposal'])}")


def _profile_ends(engine: sa.Engine, roads: list) -> list[tuple[str, str]]:
    """Pairs of water cross points >= 2 km apart along the water main of each road."""
    pairs = []
    with engine.connect() as conn:
        for x, y0, y1 in roads:
            ids = conn.execute(sa.text(
                "SELECT id, ST_Y(geom) FROM current_node WHERE utility = 'JS' AND feature = 'cross' "
                "AND ST_DWithin(geom, ST_SetSRID(ST_MakeLine(ST_MakePoint(:x, :a), ST_MakePoint(:x, :b)), "
                "(SELECT value::int FROM twin_meta WHERE key = 'srid')), 8) ORDER BY ST_Y(geom)"),
                {"x": x + 6, "a": y0, "b": y1}).all()
            for k, (a, ya) in enumerate(ids):
                far = [b for b, yb in ids[k + 1:] if yb - ya >= 2000]
                if far:
                    pairs.append((a, far[0]))
                    break
    if not pairs:
        raise SystemExit("no pair of water cross points 2 km apart")
    return pairs


def _time_profile(engine: sa.Engine, settings: TwinSettings, roads: list, runs: int) -> str:
    """Profile along the water main of a road, >= 2 km between two of its cross points."""
    pairs = _profile_ends(engine, roads)

    def profile(i: int):
        a, b = pairs[i % len(pairs)]
        return longitudinal_profile(engine, a, b, crs=settings.crs)

    ms, worst, profs = _median_ms(profile, runs)
    plen = statistics.median(p.length_m for p in profs)
    pseg = statistics.median(len(p.segments) for p in profs)
    pcross = statistics.median(len(p.crossings) for p in profs)
    corridor = statistics.median(p.searched["corridor_attempts"][-1]["segments"] for p in profs)
    print(f"profile (>= 2 km): median {ms:.1f} ms (max {worst:.1f}), path {plen:.0f} m, {pseg:.0f} pipes, "
          f"{pcross:.0f} crossings, corridor {corridor:.0f} segments", flush=True)
    return (f"- profile along a water main between cross points >= 2 km apart: **{ms:.1f} ms** median "
            f"(max {worst:.1f}), path {plen:.0f} m, {pseg:.0f} pipes, {pcross:.0f} crossings, corridor "
            f"{corridor:.0f} segments read; target 100 ms {_met(ms, TARGETS_MS['profile'])}")


#: The findings store before its bulk writes (migration 0021: one index on ``finding``, HOT
#: updates; binary COPY; the history's foreign key checked once in bulk): the same-run reference
#: of the stored scan, loaded from this commit, run on the ``finding`` table as it was then.
STORE_REFERENCE = "98aad5b1755c468f662d9ba4d5dfd7ec274a2d89"
#: ``finding`` as :data:`STORE_REFERENCE` wrote it (migration 0012's indexes, full pages), and as
#: migration 0021 leaves it; each series of stored scans starts on an emptied table.
FINDING_BEFORE = ("CREATE INDEX IF NOT EXISTS finding_status_idx ON finding (status, verdict)",
                  "CREATE INDEX IF NOT EXISTS finding_pair_idx ON finding (utility_pair)",
                  "ALTER TABLE finding RESET (fillfactor)")
FINDING_NOW = ("DROP INDEX IF EXISTS finding_status_idx", "DROP INDEX IF EXISTS finding_pair_idx",
               "ALTER TABLE finding SET (fillfactor = 50)")


def _reference_store():
    """``analysis/findings.py`` as of :data:`STORE_REFERENCE`, imported as a module of its own."""
    text = subprocess.run(["git", "show", f"{STORE_REFERENCE}:analysis/findings.py"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "findings_reference.py"
    path.write_text(text, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("findings_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _stored_scan(store, engine: sa.Engine, settings: TwinSettings, inputs) -> tuple[dict, float, float]:
    """One stored scan as the server's ``network-scan`` process runs it: result, wall seconds, CPU
    seconds of this process and of the scan's forked child."""
    t0, c0 = time.perf_counter(), time.process_time()
    k0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = store(engine, user="bench", include=inputs.include, settings=settings, limit=inputs.limit)
    k1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    child = (k1.ru_utime + k1.ru_stime) - (k0.ru_utime + k0.ru_stime)
    return r, time.perf_counter() - t0, time.process_time() - c0 + child


def _finding_table(engine: sa.Engine, statements: tuple[str, ...]) -> None:
    """Empty ``finding`` (and its history) and give it the indexes and fill of ``statements``."""
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE finding CASCADE"))
        for statement in statements:
            conn.execute(sa.text(statement))


def _stored_series(label: str, store, table: tuple[str, ...], engine: sa.Engine, settings: TwinSettings,
                   inputs) -> dict:
    """A first scan into an emptied ``finding`` table (as ``table`` makes it), a re-scan (every finding
    new -> active) and an unchanged re-scan, each stored by ``store``."""
    _finding_table(engine, table)
    runs = {}
    for name in ("first scan", "re-scan", "unchanged re-scan"):
        runs[label + name] = r, wall, cpu = _stored_scan(store, engine, settings, inputs)
        print(f"stored scan, {label}{name}: {wall:.1f} s (store {wall - r['timings_s']['total']:.1f} s, CPU "
              f"{cpu:.1f} s), timings {r['timings_s']}, stored {r['findings']}; load {_load()}", flush=True)
    return runs


def _time_scan(engine: sa.Engine, settings: TwinSettings, reference: bool) -> str:
    """The whole-network scan (``scan_network``, as the server's ``network-scan`` process asks it:
    include and limit its defaults), then the same with its findings stored (``scan_and_store``, what
    that process runs): a first scan into an empty findings table (``bench_analysis``'s findings are
    the bench's own), a re-scan (every finding new -> active) and an unchanged re-scan; same-run
    references: the read alone (``load_scan_network``) and, with ``reference``, the findings store of
    :data:`STORE_REFERENCE` (its three runs, between two series of this store's)."""
    inputs = NetworkScanInputs()  # the process's default inputs

    def progress(percent: int, message: str) -> None:
        print(f"  scan {percent:3d}% {message}", flush=True)

    load0 = _load()
    t0 = time.perf_counter()
    net = load_scan_network(engine, inputs.include)
    read = time.perf_counter() - t0
    del net
    t0, c0 = time.perf_counter(), time.process_time()
    ref = scan_network(engine, include=inputs.include, settings=settings, limit=inputs.limit, progress=progress)
    alone, alone_cpu = time.perf_counter() - t0, time.process_time() - c0
    runs: dict = {}
    series = [("", scan_and_store, FINDING_NOW)]
    if reference:  # alternately: this store, the reference, this store again
        series += [("reference store, ", _reference_store().scan_and_store, FINDING_BEFORE),
                   ("again, ", scan_and_store, FINDING_NOW)]
    try:
        for label, store, table in series:
            runs.update(_stored_series(label, store, table, engine, settings, inputs))
    finally:
        _finding_table(engine, FINDING_NOW)
    load1 = _load()
    r = runs["first scan"][0]
    clash, clear = r["collision"]["counts"], r["clearance"]["counts"]
    stored = "; ".join(f"{name} **{wall:.1f} s** (store {wall - res['timings_s']['total']:.1f} s; CPU of the scan's "
                       f"processes {cpu:.1f} s; stored {res['findings']})" for name, (res, wall, cpu) in runs.items())
    print(f"whole-network scan: {alone:.1f} s (timings {ref['timings_s']}); stored: {stored}; reference, the "
          f"read alone: {read:.1f} s; workers {r['workers']}, clashes {clash}, clearance {clear}; load average "
          f"{load0} -> {load1}", flush=True)
    return (f"- whole-network collision + clearance scan (`scan_network`, include {inputs.include}, limit "
            f"{inputs.limit}, clearance in a forked process: {ref['workers'] == 2}): **{alone:.1f} s** "
            f"(CPU of this process {alone_cpu:.1f} s) {ref['timings_s']}; target {TARGET_SCAN_S:.0f} s "
            f"{_met(alone, TARGET_SCAN_S)}; with every finding stored (`analysis.findings.scan_and_store`, as "
            f"the server's `network-scan` process runs it): {stored}"
            + (f" (the reference: the findings store of {STORE_REFERENCE[:7]} on the `finding` table as it "
               "wrote it: three indexes, full pages, every event's key checked one by one)" if reference else "")
            + f"; same-run reference, the read alone (`load_scan_network`, two COPYs): {read:.1f} s; "
            f"{r['segments']:,} segments, {r['candidate_pairs']:,} candidate pairs; collision {clash}, "
            f"clearance {clear}; load average {load0} -> {load1}")


def _met(value: float, target: float) -> str:
    return "met" if value <= target else "NOT met"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=25.0)
    ap.add_argument("--runs", type=int, default=15, help="timed runs per query (median reported)")
    ap.add_argument("--skip-scan", action="store_true", help="skip the whole-network scan")
    ap.add_argument("--only-scan", action="store_true", help="time the whole-network scan only")
    ap.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    ap.add_argument("--no-reference", action="store_true", help="scan: skip the previous findings store's run")
    args = ap.parse_args()

    engine = _prepare(args.scale)
    settings = get_settings(db_schema=SCHEMA)
    with engine.connect() as conn:
        n_seg = conn.execute(sa.text("SELECT count(*) FROM current_segment")).scalar()
    print(f"district: {n_seg:,} segments in schema {SCHEMA}", flush=True)
    lines = []
    if not args.only_scan:
        rng = np.random.default_rng(7)
        roads = _roads(engine, args.runs + 1, rng)
        lines += [_time_section(engine, settings, roads, rng, args.runs),
                  _time_proposal(engine, settings, roads, args.runs),
                  _time_profile(engine, settings, roads, args.runs)]
    if not args.skip_scan:
        lines.append(_time_scan(engine, settings, not args.no_reference))
    engine.dispose()
    if args.no_record:
        return
    what = "whole-network scan" if args.only_scan else "section, profile, proposal"
    runs = "" if args.only_scan else f"; median of {args.runs} runs after one warm-up, places spread over the district"
    with (ROOT / "bench" / "RESULTS.md").open("a", encoding="utf-8") as f:
        f.write(f"\n### analysis: {what}, {dt.date.today().isoformat()}\n- machine: {machine()}\n"
                f"- district: {n_seg:,} segments (schema `{SCHEMA}`, `bench/out/district25`){runs}\n"
                + "".join(line + "\n" for line in lines))


if __name__ == "__main__":
    main()
