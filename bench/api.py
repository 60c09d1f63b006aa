"""API load benchmark: PipeTwin beside tipg (the reference OGC API Features server), same table.

Run with ``.venv/bin/python bench/api.py``. It

1. uses the district of ``bench/analysis.py`` (schema ``bench_analysis``, about 1.07M segments;
   built by that script when missing) and adds one viewer per client (``bench-0`` ...) to it,
2. starts ``twin serve`` and tipg 1.6 (uvicorn ``tipg.main:app``), each on a free loopback port
   with ``--workers`` processes (default 2), tipg serving the same ``segment`` table of the same
   database as the same role, with the same properties as PipeTwin's ``pipes``,
3. runs interleaved rounds (PipeTwin, tipg, PipeTwin, tipg ...; ``--rounds``, default 2) of
   ``--seconds`` seconds per scenario:

   - ``items``: a page of 100 pipes in a random 300 m window, GeoJSON in CRS84 (the same windows,
     in the same order, for both servers), at *saturation* (``--clients`` clients, default 50,
     each sending its next request as soon as the last is answered: the throughput ceiling),
     *paced* (each client waits an exponential think time of mean ``--think`` s between
     requests, like people at a viewer) and *alone* (one client at saturation: the latency floor);
   - ``shutoff`` (a random water main) and ``tiles`` (random GLB contents of the 3D tileset) at
     saturation, and shutoff paced: PipeTwin only (tipg has no equivalent); their reference is
     ``healthz``, the same server's floor for a request that does no work;

4. prints throughput and p50/p95/p99 per server and scenario, pooled over the rounds, and the
   ratio PipeTwin / tipg, and appends them to ``bench/RESULTS.md`` (unless ``--no-record``).

``--profile`` records the PipeTwin server (py-spy ``record --subprocesses`` on its pid) during
its first items run at saturation and writes a speedscope profile to ``bench/out/``
(open it at https://www.speedscope.app). The tileset of ``bench_analysis`` is built once into
``bench/out/tiles-bench_analysis`` (``--scenarios`` chooses some of items, healthz, shutoff, tiles). The load generator runs
on the same cores as both servers and PostgreSQL: compare the servers only within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.auth import add_user  # noqa: E402
from bench.httpload import Connection, TransportError  # noqa: E402
from bench.machine import machine  # noqa: E402
from bench.server import Server, Tipg  # noqa: E402
from twin.crs import transformer  # noqa: E402
from twin.db import open_twin, twin_id, twin_srid  # noqa: E402
from twin.schema import columns  # noqa: E402
from twin.settings import get_settings  # noqa: E402

SCHEMA = "bench_analysis"
OUT = ROOT / "bench" / "out"
TILES = OUT / f"tiles-{SCHEMA}"
BIN = Path(sys.executable).parent
#: One viewer per client, as 50 people at their viewers (the per-user caps apply to each).
USER, PASSWORD = "bench", "bench-password"
#: The issue's targets (issue 21).
SCENARIOS = ("items", "healthz", "shutoff", "tiles")
TARGET_RATIO, TARGET_ALONE_P50_MS, TARGET_SHUTOFF_P95_MS = 1.5, 15.0, 100.0


def _user(i: int) -> str:
    return f"{USER}-{i}"


@dataclass
class Workload:
    """What the clients ask for: water pipes (shutoff), CRS84 windows (items), GLB paths (tiles)."""

    pipes: list[str]
    boxes: list[str]
    tiles: list[str] = field(default_factory=list)


def _prepare(clients: int) -> Workload:
    """Random water pipes and 300 m windows around random pipes, in CRS84; a viewer per client."""
    settings = get_settings(db_schema=SCHEMA)
    engine = open_twin(settings)
    with engine.begin() as conn:
        n = conn.execute(sa.text("SELECT count(*) FROM current_segment")).scalar()
        if not n:
            sys.exit(f"schema {SCHEMA} is empty: run bench/analysis.py once first (or ingest it)")
        have = {r[0] for r in conn.execute(sa.text("SELECT name FROM app_user WHERE name LIKE 'bench-%'"))}
        for i in range(clients):
            if _user(i) not in have:
                add_user(conn, _user(i), "viewer", PASSWORD, by="bench")
        conn.execute(sa.text("SELECT setseed(0.21)"))
        pipes = [r[0] for r in conn.execute(sa.text(
            "SELECT id FROM segment TABLESAMPLE SYSTEM (1) REPEATABLE (21) "
            "WHERE utility = 'JS' AND retired_at IS NULL LIMIT 2000"))]
        mids = conn.execute(sa.text(
            "SELECT ST_X(ST_Centroid(geom)), ST_Y(ST_Centroid(geom)) FROM segment "
            "TABLESAMPLE SYSTEM (0.5) REPEATABLE (21) LIMIT 2000")).all()
        srid = twin_srid(conn)
    engine.dispose()
    to84 = transformer(srid, "OGC:CRS84")
    xy = np.array(mids, dtype=float)
    lon0, lat0 = to84.transform(xy[:, 0] - 150, xy[:, 1] - 150)
    lon1, lat1 = to84.transform(xy[:, 0] + 150, xy[:, 1] + 150)
    boxes = [f"{a:.7f},{b:.7f},{c:.7f},{d:.7f}" for a, b, c, d in zip(lon0, lat0, lon1, lat1, strict=True)]
    print(f"district: {n:,} segments; {len(pipes)} water pipes and {len(boxes)} windows sampled", flush=True)
    return Workload(pipes, boxes)


def _tileset() -> list[str]:
    """GLB paths of the district's tileset, built once (a child ``twin tiles build --full``)."""
    settings = get_settings(db_schema=SCHEMA)
    engine = open_twin(settings)
    mine = twin_id(engine)
    engine.dispose()
    try:
        theirs = json.loads((TILES / "manifest.json").read_text()).get("twin")
    except (OSError, ValueError):
        theirs = None
    if theirs != mine:
        print(f"building the district's tileset into {TILES} (once) ...", flush=True)
        t0 = time.perf_counter()
        env = {**os.environ, "TWIN_DB_SCHEMA": SCHEMA, "OPENBLAS_NUM_THREADS": "1"}
        subprocess.run([str(BIN / "twin"), "tiles", "build", "--full", "--out", str(TILES)], env=env,
                       check=True, stdout=subprocess.DEVNULL)
        print(f"tileset built in {time.perf_counter() - t0:.0f} s", flush=True)
    paths = sorted(str(p.relative_to(TILES)) for p in TILES.glob("t/**/*.glb"))
    return random.Random(21).sample(paths, min(2000, len(paths)))


def _request(kind: str, work: Workload, rnd: random.Random, items_path: str) -> tuple[str, str, dict | None]:
    if kind == "healthz":
        return "GET", "/healthz", None
    if kind == "items":
        return "GET", f"{items_path}?limit=100&bbox={rnd.choice(work.boxes)}", None
    if kind == "tiles":
        return "GET", f"/tiles/{rnd.choice(work.tiles)}", None
    return "POST", "/processes/shutoff/execution", {"inputs": {"pipe": rnd.choice(work.pipes)}}


async def _load(url: str, headers: list[dict], kind: str, clients: int, seconds: float, think: float,
                work: Workload, items_path: str) -> dict:
    """``clients`` clients asking for ``kind`` for ``seconds``; latencies and non-200 answers.

    Each client keeps one connection (bench/httpload.py: a light client, so that the load
    generator takes little of the CPU the servers compete for)."""
    lat: list[float] = []
    errors: dict[int | str, int] = {}
    stop = time.perf_counter() + seconds

    async def one(seed: int) -> None:
        rnd = random.Random(seed)  # the same requests, in the same order, for either server
        conn = Connection(url)
        if think:
            await asyncio.sleep(rnd.expovariate(1 / think))
        while time.perf_counter() < stop:
            method, path, body = _request(kind, work, rnd, items_path)
            t0 = time.perf_counter()
            try:
                status, _ = await asyncio.wait_for(
                    conn.request(method, path, body, headers[seed % len(headers)]), 60)
            except (TransportError, TimeoutError) as exc:  # counted, not fatal: the run goes on
                status = type(exc).__name__
            lat.append((time.perf_counter() - t0) * 1000)
            if status != 200:
                errors[status] = errors.get(status, 0) + 1
            if think:
                await asyncio.sleep(rnd.expovariate(1 / think))
        await conn.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(clients)))
    wall = time.perf_counter() - t0
    return {"lat": lat, "wall": wall, "errors": errors}


def _times(procs: list[psutil.Process]) -> dict[int, float]:
    out = {}
    for p in procs:
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return out


def _cpu(pid: int) -> tuple[dict[int, float], dict[int, float]]:
    """CPU seconds (user + system) by pid of a server's processes, and of the PostgreSQL backends
    serving it: those whose client address (``postgres: role db 127.0.0.1(PORT) ...``) is a
    socket of one of the server's processes (other work on the same cluster is not counted)."""
    try:
        root = psutil.Process(pid)
        server = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}, {}
    ports = set()
    for p in server:
        try:
            ports |= {c.laddr.port for c in p.net_connections(kind="tcp") if c.raddr}
        except psutil.NoSuchProcess:
            pass
    backends = []
    for p in psutil.process_iter(["cmdline"]):
        line = " ".join(p.info["cmdline"] or [])
        if line.startswith("postgres: ") and "(" in line:
            port = line.split("(", 1)[1].split(")", 1)[0]
            if port.isdigit() and int(port) in ports:
                backends.append(p)
    return _times(server), _times(backends)


def _cpu_used(before: tuple[dict, dict], after: tuple[dict, dict]) -> tuple[float, float, float]:
    """CPU seconds the server and its database backends used between two readings of
    :func:`_cpu`, and the busiest server process's share."""
    used = [after[0][p] - before[0].get(p, 0.0) for p in after[0]]
    db = sum(after[1][p] - before[1].get(p, 0.0) for p in after[1])  # new backends: all theirs
    total = sum(used)
    return total, db, (max(used) / total if total > 0 else float("nan"))


def _stats(runs: list[dict]) -> dict:
    """Rounds pooled: throughput over the summed wall time, percentiles over every latency, the
    server's CPU milliseconds per request (its processes only: a figure a busy machine disturbs
    less than throughput) and the busiest worker's share of that CPU."""
    lat = [v for r in runs for v in r["lat"]]
    errors: dict = {}
    for r in runs:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    q = np.percentile(lat, [50, 95, 99]) if lat else [float("nan")] * 3
    cpu = sum(r.get("cpu", 0.0) for r in runs)
    db = sum(r.get("db", 0.0) for r in runs)
    shares = [r["share"] for r in runs if not np.isnan(r.get("share", np.nan))]
    return {"requests": len(lat), "rps": len(lat) / sum(r["wall"] for r in runs), "p50": q[0], "p95": q[1],
            "p99": q[2], "errors": errors, "cpu_ms": cpu * 1000 / len(lat) if lat else float("nan"),
            "db_ms": db * 1000 / len(lat) if lat else float("nan"),
            "share": max(shares) if shares else float("nan")}


class Profiler:
    """py-spy record of a process and its children for a while, to a speedscope file."""

    def __init__(self, pid: int, seconds: float, label: str) -> None:
        OUT.mkdir(parents=True, exist_ok=True)
        self.path = OUT / f"api-profile-{label}-{dt.datetime.now():%Y%m%d-%H%M%S}.speedscope.json"
        self.proc = subprocess.Popen(
            [str(BIN / "py-spy"), "record", "--pid", str(pid), "--subprocesses", "--duration",
             str(max(1, int(seconds))), "--rate", "50", "--format", "speedscope", "--output", str(self.path),
             "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait(self) -> None:
        _, err = self.proc.communicate(timeout=120)
        print(f"profile: {self.path}" if self.path.is_file() else f"py-spy failed: {err.strip()[-300:]}",
              flush=True)


# (scenario, model, clients, think) of one round; the servers that run it
def _plan(args: argparse.Namespace, with_tiles: bool) -> list[tuple[str, str, int, float, tuple[str, ...]]]:
    both = ("pipetwin", "tipg") if not args.no_tipg else ("pipetwin",)
    plan = [("items", "saturation", args.clients, 0.0, both),
            ("items", "paced", args.clients, args.think, both),
            ("items", "alone", 1, 0.0, both),
            ("healthz", "saturation", args.clients, 0.0, both),
            ("shutoff", "saturation", args.clients, 0.0, ("pipetwin",)),
            ("shutoff", "paced", args.clients, args.think, ("pipetwin",))]
    if with_tiles:
        plan.append(("tiles", "saturation", args.clients, 0.0, ("pipetwin",)))
    return [p for p in plan if p[0] in args.scenarios]


def _tokens(url: str, clients: int) -> list[dict]:
    out = []
    for i in range(clients):
        r = httpx.post(url + "/token", data={"username": _user(i), "password": PASSWORD}, timeout=60)
        r.raise_for_status()
        out.append({"Authorization": f"Bearer {r.json()['access_token']}"})
    return out


def _warm(url: str, headers: dict, work: Workload, workers: int) -> None:
    """The first shutoff of a process builds its network model: once per worker, before timing."""
    t0 = time.perf_counter()
    for p in work.pipes[: 4 * workers]:
        r = httpx.post(url + "/processes/shutoff/execution", json={"inputs": {"pipe": p}}, headers=headers,
                       timeout=600)
        assert r.status_code in (200, 400, 404), r.text
    print(f"warm-up (network models built in each worker): {time.perf_counter() - t0:.1f} s", flush=True)


def _run(args: argparse.Namespace, work: Workload) -> dict[tuple[str, str, str], dict]:
    """The interleaved rounds; pooled figures per (scenario, model, server)."""
    settings = get_settings(db_schema=SCHEMA, tiles_dir=TILES if work.tiles else None)
    props = [c.name for c in columns("segment", exported=True)]
    servers: dict[str, object] = {}
    runs: dict[tuple[str, str, str], list[dict]] = {}
    try:
        servers["pipetwin"] = Server(settings, workers=args.workers, log_level="warning", start_timeout_s=120)
        if not args.no_tipg:
            servers["tipg"] = Tipg(settings, "segment", props, workers=args.workers)
        pt = servers["pipetwin"]
        headers = {"pipetwin": _tokens(pt.url, args.clients), "tipg": [{}]}
        paths = {"pipetwin": "/collections/pipes/items"}
        if "tipg" in servers:
            paths["tipg"] = f"/collections/{servers['tipg'].collection}/items"
        if "shutoff" in args.scenarios:
            _warm(pt.url, headers["pipetwin"][0], work, args.workers)
        profiled = not args.profile
        for rnd in range(args.rounds):
            for scenario, model, clients, think, names in _plan(args, bool(work.tiles)):
                for name in names:
                    prof = None
                    if not profiled and name == "pipetwin" and scenario == "items" and model == "saturation":
                        prof, profiled = Profiler(pt.proc.pid, args.seconds, "items"), True
                    cpu0 = _cpu(servers[name].proc.pid)
                    res = asyncio.run(_load(servers[name].url, headers[name], scenario, clients, args.seconds,
                                            think, work, paths.get(name, "")))
                    res["cpu"], res["db"], res["share"] = _cpu_used(cpu0, _cpu(servers[name].proc.pid))
                    if prof:
                        prof.wait()
                    runs.setdefault((scenario, model, name), []).append(res)
                    s = _stats([res])
                    print(f"round {rnd + 1} {name:8s} {model:10s} {scenario:8s} {s['requests']:6d} req "
                          f"{s['rps']:7.1f}/s  p50 {s['p50']:7.1f}  p95 {s['p95']:7.1f}  p99 {s['p99']:7.1f} ms"
                          f"  cpu {s['cpu_ms']:5.2f} + db {s['db_ms']:5.2f} ms/req  busiest {s['share']:.0%}"
                          f"  non-200 {s['errors'] or '-'}", flush=True)
    finally:
        for s in servers.values():
            s.stop()
    return {k: _stats(v) for k, v in runs.items()}


def _report(args: argparse.Namespace, res: dict[tuple[str, str, str], dict]) -> list[str]:
    """The table and the targets, as Markdown."""
    today = dt.date.today().isoformat()
    lines = [f"\n## API load beside tipg ({today})\n",
             f"- {machine()}; `twin serve --workers {args.workers}` and tipg 1.6 (uvicorn, "
             f"{args.workers} workers) on the same table (`{SCHEMA}.segment`, same role, same properties); "
             f"load generator (bench/httpload.py, asyncio, one keep-alive connection per client) on the same cores; {args.rounds} interleaved rounds of "
             f"{args.seconds:g} s per scenario and server, pooled.\n",
             f"- *saturation*: {args.clients} clients, no think time; *paced*: {args.clients} clients, "
             f"exponential think time of mean {args.think:g} s; *alone*: one client. items: 100 pipes in a "
             "random 300 m window, GeoJSON CRS84 (same windows for both).\n\n",
             "- *server CPU*: CPU ms per request of the server's processes; *db CPU*: of the "
             "PostgreSQL backends connected to them (not the load generator's, nor other work's on "
             "the cluster); *busiest*: the busiest server process's share of its CPU (1/workers "
             "when the workers share the load evenly).\n\n",
             "| scenario | model | server | requests | throughput /s | p50 ms | p95 ms | p99 ms | "
             "server CPU ms/req | db CPU ms/req | busiest | "
             "throughput PipeTwin / tipg | p95 PipeTwin / tipg | non-200 |\n",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n"]
    for (scenario, model, name), s in res.items():
        ref = res.get((scenario, model, "tipg"))
        ratio = (f"{s['rps'] / ref['rps']:.2f} | {s['p95'] / ref['p95']:.2f}"
                 if ref and name == "pipetwin" else "| ")
        lines.append(f"| {scenario} | {model} | {name} | {s['requests']:,} | {s['rps']:.0f} | {s['p50']:.1f} | "
                     f"{s['p95']:.1f} | {s['p99']:.1f} | {s['cpu_ms']:.2f} | {s['db_ms']:.2f} | {s['share']:.0%} | {ratio} | "
                     f"{s['errors'] or '-'} |\n")
    pt_sat, tg_sat = res.get(("items", "saturation", "pipetwin")), res.get(("items", "saturation", "tipg"))
    if pt_sat and tg_sat:
        ratio = pt_sat["rps"] / tg_sat["rps"]
        ok = ratio >= TARGET_RATIO and pt_sat["p95"] <= tg_sat["p95"]
        lines.append(f"- items at saturation: {ratio:.2f}x tipg's throughput, p95 {pt_sat['p95']:.0f} ms against "
                     f"{tg_sat['p95']:.0f} ms (target >= {TARGET_RATIO}x with p95 <= tipg's: "
                     f"{'met' if ok else 'NOT met'})\n")
    alone = res.get(("items", "alone", "pipetwin"))
    if alone:
        lines.append(f"- items, one client alone: p50 {alone['p50']:.1f} ms (target <= {TARGET_ALONE_P50_MS:g} ms: "
                     f"{'met' if alone['p50'] <= TARGET_ALONE_P50_MS else 'NOT met'})\n")
    for model in ("saturation", "paced"):
        s = res.get(("shutoff", model, "pipetwin"))
        if s:
            lines.append(f"- shutoff, {args.clients} clients {model}: p95 {s['p95']:.0f} ms (target < "
                         f"{TARGET_SHUTOFF_P95_MS:g} ms: {'met' if s['p95'] < TARGET_SHUTOFF_P95_MS else 'NOT met'})\n")
    return lines


def main() -> None:
    global SCHEMA, TILES  # noqa: PLW0603 - the district every step of this run uses
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=15.0, help="per scenario, server and round")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved rounds (PipeTwin, tipg, ...)")
    ap.add_argument("--think", type=float, default=1.0, help="mean think time (s) of the paced model")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-tipg", action="store_true", help="PipeTwin alone (no same-run reference)")
    ap.add_argument("--scenarios", type=lambda t: t.split(","), default=list(SCENARIOS),
                    help=f"comma-separated, of {','.join(SCENARIOS)} (default: all)")
    ap.add_argument("--profile", action="store_true", help="py-spy the PipeTwin server's first items run")
    ap.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    ap.add_argument("--schema", default=SCHEMA, help=f"the district's schema (default {SCHEMA}; e.g. bench_3m)")
    args = ap.parse_args()
    SCHEMA, TILES = args.schema, OUT / f"tiles-{args.schema}"

    work = _prepare(args.clients)
    if "tiles" in args.scenarios:
        work.tiles = _tileset()
    res = _run(args, work)
    lines = _report(args, res)
    print("".join(lines))
    if not args.no_record:
        with open(ROOT / "bench" / "RESULTS.md", "a") as f:
            f.writelines(lines)


if __name__ == "__main__":
    main()
