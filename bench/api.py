"""API load benchmark: 50 concurrent clients on loopback against items pages and shutoff queries.

Run with ``.venv/bin/python bench/api.py``. It

1. uses the district of ``bench/analysis.py`` (schema ``bench_analysis``, about 1.07M segments;
   built by that script when missing) and adds one viewer per client (``bench-0`` ...) to it,
2. starts ``twin serve`` on a free loopback port (``--workers``, default 2) in a process of its own,
3. runs each scenario with 50 clients for ``--seconds`` seconds, in two load models:
   *saturation* (each client sends its next request as soon as the last one is answered: the
   throughput ceiling; latency is then concurrency / throughput) and *paced* (each client waits
   an exponential think time of mean ``--think`` seconds between requests, like people at a
   viewer: latency at a realistic offered load),
4. scenarios: ``healthz`` (the reference: the same server's floor for a request that does no
   work, measured in the same run), ``items`` (a page of 100 pipes in a random 300 m window,
   GeoJSON in CRS84) and ``shutoff`` (a random water main),
5. prints throughput and p50/p95/p99 and appends them to ``bench/RESULTS.md``.

The load generator runs on the same two cores as the server and PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import machine  # noqa: E402
from bench.server import Server  # noqa: E402
from twin.crs import transformer  # noqa: E402
from twin.db import open_twin, twin_srid  # noqa: E402
from twin.settings import get_settings  # noqa: E402

SCHEMA = "bench_analysis"
#: One viewer per client, as 50 people at their viewers (the per-user caps apply to each).
USER, PASSWORD = "bench", "bench-password"


def _user(i: int) -> str:
    return f"{USER}-{i}"
TARGET_P95_MS = 50.0


def _prepare(clients: int) -> tuple[list[str], list[str]]:
    """Random water pipes (shutoff) and 300 m windows around random pipes (items), in CRS84."""
    settings = get_settings(db_schema=SCHEMA)
    engine = open_twin(settings)
    from api.auth import add_user

    with engine.begin() as conn:
        n = conn.execute(sa.text("SELECT count(*) FROM current_segment")).scalar()
        if not n:
            sys.exit("schema bench_analysis is empty: run bench/analysis.py once first")
        have = {r[0] for r in conn.execute(sa.text("SELECT name FROM app_user WHERE name LIKE 'bench-%'"))}
        for i in range(clients):
            if _user(i) not in have:
                add_user(conn, _user(i), "viewer", PASSWORD, by="bench")
        pipes = [r[0] for r in conn.execute(sa.text(
            "SELECT id FROM segment TABLESAMPLE SYSTEM (1) WHERE utility = 'JS' AND retired_at IS NULL LIMIT 2000"))]
        mids = conn.execute(sa.text(
            "SELECT ST_X(ST_Centroid(geom)), ST_Y(ST_Centroid(geom)) FROM segment "
            "TABLESAMPLE SYSTEM (0.5) LIMIT 2000")).all()
        srid = twin_srid(conn)
    engine.dispose()
    to84 = transformer(srid, "OGC:CRS84")
    xy = np.array(mids, dtype=float)
    lon0, lat0 = to84.transform(xy[:, 0] - 150, xy[:, 1] - 150)
    lon1, lat1 = to84.transform(xy[:, 0] + 150, xy[:, 1] + 150)
    boxes = [f"{a:.7f},{b:.7f},{c:.7f},{d:.7f}" for a, b, c, d in zip(lon0, lat0, lon1, lat1, strict=True)]
    print(f"district: {n:,} segments; {len(pipes)} water pipes and {len(boxes)} windows sampled", flush=True)
    return pipes, boxes


def _request(kind: str, pipes: list[str], boxes: list[str], rnd: random.Random) -> tuple[str, str, dict | None]:
    if kind == "healthz":
        return "GET", "/healthz", None
    if kind == "items":
        return "GET", f"/collections/pipes/items?limit=100&bbox={rnd.choice(boxes)}", None
    return "POST", "/processes/shutoff/execution", {"inputs": {"pipe": rnd.choice(pipes)}}


async def _load(url: str, headers: list[dict], kind: str, clients: int, seconds: float, think: float,
                pipes: list[str], boxes: list[str]) -> dict:
    lat: list[float] = []
    errors: dict[int | str, int] = {}
    stop = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def one(seed: int) -> None:
            rnd = random.Random(seed)
            if think:
                await asyncio.sleep(rnd.expovariate(1 / think))
            while time.perf_counter() < stop:
                method, path, body = _request(kind, pipes, boxes, rnd)
                t0 = time.perf_counter()
                try:
                    r = await client.request(method, path, json=body, headers=headers[seed % len(headers)])
                    await r.aread()
                    status: int | str = r.status_code
                except httpx.TransportError as exc:  # counted, not fatal: the run goes on
                    status = type(exc).__name__
                lat.append((time.perf_counter() - t0) * 1000)
                if status != 200:
                    errors[status] = errors.get(status, 0) + 1
                if think:
                    await asyncio.sleep(rnd.expovariate(1 / think))

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(clients)))
        wall = time.perf_counter() - t0
    q = np.percentile(lat, [50, 95, 99]) if lat else [float("nan")] * 3
    return {"kind": kind, "requests": len(lat), "rps": len(lat) / wall, "p50": q[0], "p95": q[1], "p99": q[2],
            "errors": errors}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--think", type=float, default=1.0, help="mean think time (s) of the paced model")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    args = ap.parse_args()

    pipes, boxes = _prepare(args.clients)
    server = Server(get_settings(db_schema=SCHEMA), workers=args.workers, log_level="warning", start_timeout_s=60)
    url = server.url
    try:
        tokens = [httpx.post(url + "/token", data={"username": _user(i), "password": PASSWORD},
                             timeout=60).json()["access_token"] for i in range(args.clients)]
        each = [{"Authorization": f"Bearer {t}"} for t in tokens]
        headers = each[0]
        # Warm every worker: the first shutoff of a process builds its network model.
        t0 = time.perf_counter()
        for p in pipes[: 4 * args.workers]:
            r = httpx.post(url + "/processes/shutoff/execution", json={"inputs": {"pipe": p}}, headers=headers,
                           timeout=300)
            assert r.status_code in (200, 400, 404), r.text
        print(f"warm-up (network models built in each worker): {time.perf_counter() - t0:.1f} s", flush=True)
        rows = []
        for model, think in (("saturation", 0.0), ("paced", args.think)):
            for kind in ("healthz", "items", "shutoff"):
                res = asyncio.run(_load(url, each, kind, args.clients, args.seconds, think, pipes, boxes))
                res["model"] = model
                rows.append(res)
                print(f"{model:10s} {kind:8s} {res['requests']:6d} req {res['rps']:7.1f}/s  p50 {res['p50']:6.1f}  "
                      f"p95 {res['p95']:6.1f}  p99 {res['p99']:6.1f} ms  non-200 {res['errors'] or '-'}", flush=True)
    finally:
        server.stop()

    if args.no_record:
        return
    today = dt.date.today().isoformat()
    lines = [f"\n## API load ({today})\n",
             f"- {machine()}; server `twin serve --workers {args.workers}`, load generator (httpx, asyncio) on "
             f"the same cores; {args.clients} clients, {args.seconds:.0f} s per scenario; schema `{SCHEMA}`.\n",
             "- *saturation*: no think time (latency = clients / throughput); *paced*: exponential think time, "
             f"mean {args.think:g} s per client. `healthz` is the same-run reference (no work).\n\n",
             "| model | scenario | requests | throughput /s | p50 ms | p95 ms | p99 ms | p95 / healthz p95 | non-200 |\n",
             "|---|---|---:|---:|---:|---:|---:|---:|---|\n"]
    ref = {r["model"]: r["p95"] for r in rows if r["kind"] == "healthz"}
    for r in rows:
        lines.append(f"| {r['model']} | {r['kind']} | {r['requests']:,} | {r['rps']:.0f} | {r['p50']:.1f} | "
                     f"{r['p95']:.1f} | {r['p99']:.1f} | {r['p95'] / ref[r['model']]:.1f} | "
                     f"{r['errors'] or '-'} |\n")
    paced = {r["kind"]: r for r in rows if r["model"] == "paced"}
    for kind in ("items", "shutoff"):
        ok = paced[kind]["p95"] < TARGET_P95_MS
        lines.append(f"- {kind} p95 at 50 paced clients: {paced[kind]['p95']:.1f} ms "
                     f"(target {TARGET_P95_MS:.0f} ms: {'met' if ok else 'NOT met'})\n")
    with open(ROOT / "bench" / "RESULTS.md", "a") as f:
        f.writelines(lines)
    print("".join(lines))


if __name__ == "__main__":
    main()
