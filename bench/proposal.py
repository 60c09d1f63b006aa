"""Proposal check benchmark at 1M segments: this code against a reference commit's, in one run.

Run with ``.venv/bin/python bench/proposal.py`` (``--ref COMMIT``: the reference, default
``HEAD``; after this change is committed, name the commit before it). It

1. reuses bench/analysis.py's district and schema ``bench_analysis`` (built there when missing),
2. starts two worker processes: one imports this tree's ``analysis`` package, the other the same
   package with the proposal check's modules (:data:`MODULES`) as they are at ``--ref``
   (``git show``, written to a temporary directory put first on ``sys.path``),
3. times ``analysis.proposal.check_proposal`` with a real engine (what ``POST
   /processes/proposal`` and ``twin analyze proposal`` call) on the same 1 km DN300 water pipes
   spread over the district, in rounds alternating new / reference, and compares every report
   (all fields but the timings and clock times): the two must be identical,
4. prints median and p95 of wall and CPU ms of each, the load average, and appends them to
   ``bench/RESULTS.md`` (``--no-record``: not).

The machine's two cores are shared: the CPU time of the worker is what other work does not add to.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# not bench/ itself (its analysis.py is no package); a worker's PYTHONPATH may put the reference first
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import analysis  # noqa: E402, F401  (first: bench.analysis puts this tree first on sys.path)
from bench.analysis import SCHEMA, _load, _prepare, _roads  # noqa: E402
from bench.machine import machine  # noqa: E402

#: The modules of the proposal check that the reference takes from ``--ref``.
MODULES = ("proposal", "proposal_input", "proposal_report", "clash", "clearance", "cover", "rule_tables",
           "rule_catalogue")
TARGET_MS = 50.0


def _reference_tree(ref: str, into: Path) -> str:
    """A copy of this tree's ``analysis`` package with :data:`MODULES` as at ``ref``; its commit."""
    commit = subprocess.run(["git", "rev-parse", ref], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout.strip()
    shutil.copytree(ROOT / "analysis", into / "analysis", ignore=shutil.ignore_patterns("__pycache__"))
    for name in MODULES:
        text = subprocess.run(["git", "show", f"{commit}:analysis/{name}.py"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout
        (into / "analysis" / f"{name}.py").write_text(text, encoding="utf-8")
    return commit


#: A clock time in a report (checked at, the section's date, the stamp's time).
_CLOCK = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:\d{2})?")


def _digest(report: dict) -> str:
    """The report without its timings and clock times, hashed (identical answers, same digest)."""
    report = {k: v for k, v in report.items() if k != "timings_s"}
    text = _CLOCK.sub("<time>", json.dumps(report, sort_keys=True, default=str))
    return hashlib.sha256(text.encode()).hexdigest()


def worker() -> None:
    """Serve ``run FIRST COUNT`` lines: check the proposals FIRST.. and print one JSON line."""
    import numpy as np

    from analysis.proposal import check_proposal
    from twin.settings import get_settings

    engine = _prepare(25.0)
    settings = get_settings(db_schema=SCHEMA)
    roads = _roads(engine, 40, np.random.default_rng(7))

    def doc(i: int) -> dict:
        x, y0, _y1 = roads[i % len(roads)]
        return {"type": "Feature", "properties": {"id": "BENCH", "utility": "JS", "size": "DN300", "depth_m": 1.5},
                "geometry": {"type": "LineString", "coordinates": [[x + 3, y0 + 200], [x + 3, y0 + 1200]]}}

    check_proposal(engine, doc(0), settings)  # warm-up: pool, imports, rule tables
    print(json.dumps({"ready": True, "module": sys.modules["analysis.proposal"].__file__}), flush=True)
    for line in sys.stdin:
        _cmd, first, count = line.split()
        wall, cpu, digests, findings = [], [], [], []
        for i in range(int(first), int(first) + int(count)):
            t0, c0 = time.perf_counter(), time.process_time()
            report = check_proposal(engine, doc(i), settings)
            wall.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
            d = report.as_dict(with_svg=True)
            digests.append(_digest(d))
            if os.environ.get("BENCH_PROPOSAL_DUMP"):  # the reports themselves, to compare by hand
                with open(f"{os.environ['BENCH_PROPOSAL_DUMP']}-{os.getpid()}-{i}.json", "w") as f:
                    json.dump(d, f, sort_keys=True, default=str, indent=1)
            findings.append(len(report.findings))
        print(json.dumps({"wall": wall, "cpu": cpu, "digests": digests, "findings": findings}), flush=True)


def _start(path: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path)}
    proc = subprocess.Popen([sys.executable, __file__, "--worker"], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    ready = _reply(proc)
    print(f"worker ready: {ready['module']}", flush=True)
    return proc


def _ask(proc: subprocess.Popen, first: int, count: int) -> dict:
    proc.stdin.write(f"run {first} {count}\n")
    proc.stdin.flush()
    return _reply(proc)


def _reply(proc: subprocess.Popen) -> dict:
    """The worker's next JSON line (other lines, e.g. waiting for the district's lock, shown)."""
    while True:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit("the worker stopped")
        if line.startswith("{"):
            return json.loads(line)
        print(line, end="", flush=True)


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 2 else values[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--ref", default="HEAD", help="reference commit of the proposal check's modules")
    ap.add_argument("--rounds", type=int, default=6, help="rounds, each new then reference")
    ap.add_argument("--runs", type=int, default=15, help="checks per round and side")
    ap.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    args = ap.parse_args()
    if args.worker:
        worker()
        return
    with tempfile.TemporaryDirectory(prefix="bench-proposal-") as tmp:
        commit = _reference_tree(args.ref, Path(tmp))
        _prepare(25.0)  # the district, once, before the workers
        load0 = _load()
        new, ref = _start([str(ROOT)]), _start([tmp, str(ROOT)])
        got: dict[str, dict[str, list]] = {"new": {}, "ref": {}}
        for r in range(args.rounds):
            for side, proc in (("new", new), ("ref", ref)) if r % 2 == 0 else (("ref", ref), ("new", new)):
                out = _ask(proc, r * args.runs + 1, args.runs)
                for k, v in out.items():
                    got[side].setdefault(k, []).extend(v)
            print(f"round {r + 1}: new median {statistics.median(got['new']['wall'][-args.runs:]):.1f} ms, "
                  f"reference {statistics.median(got['ref']['wall'][-args.runs:]):.1f} ms", flush=True)
        for proc in (new, ref):
            proc.stdin.close()
            proc.wait()
    load1 = _load()
    same = sum(a == b for a, b in zip(got["new"]["digests"], got["ref"]["digests"], strict=True))
    total = len(got["new"]["digests"])
    stats = {side: {k: (statistics.median(got[side][k]), _p95(got[side][k])) for k in ("wall", "cpu")}
             for side in ("new", "ref")}
    line = (f"- proposal check of a 1 km DN300 water pipe (`check_proposal`, real engine), {args.rounds} rounds x "
            f"{args.runs} places, new / reference (`{commit[:10]}`'s {', '.join(MODULES)}) alternating: wall "
            f"median **{stats['new']['wall'][0]:.1f}** / {stats['ref']['wall'][0]:.1f} ms, p95 "
            f"{stats['new']['wall'][1]:.1f} / {stats['ref']['wall'][1]:.1f} ms; CPU of the worker median "
            f"**{stats['new']['cpu'][0]:.1f}** / {stats['ref']['cpu'][0]:.1f} ms, p95 {stats['new']['cpu'][1]:.1f} / "
            f"{stats['ref']['cpu'][1]:.1f} ms; reports identical {same}/{total} (median "
            f"{statistics.median(got['new']['findings']):.0f} findings); load average {load0} -> {load1}; "
            f"target {TARGET_MS:.0f} ms median {'met' if stats['new']['wall'][0] <= TARGET_MS else 'NOT met'}")
    print(line, flush=True)
    if same != total:
        print("REPORTS DIFFER", flush=True)
    if not args.no_record:
        with (ROOT / "bench" / "RESULTS.md").open("a", encoding="utf-8") as f:
            f.write(f"\n### proposal check, {dt.date.today().isoformat()} (bench/proposal.py)\n- machine: "
                    f"{machine()}\n{line}\n")


if __name__ == "__main__":
    main()
