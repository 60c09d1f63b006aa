"""API throughput with 0, 1 and 2 read replicas (hot standbys) on loopback (issue 19).

Run with ``.venv/bin/python bench/replicas.py``. It

1. makes a primary of its own in a temporary folder (initdb; the private cluster's settings),
   loads a sample district into it (``--scale``, default 5: ~37,000 segments) and one viewer,
2. makes two standbys of it with the code of ``twin db replica start`` (pg_basebackup with a
   replication slot, each on its own free port),
3. runs ``twin serve`` (``--workers``, default 2) with ``TWIN_READ_DATABASE_URLS`` naming 0, 1 and 2
   of them, then 0 again (the same-run reference), each for ``--seconds`` s of the ``items``
   workload of ``bench/api.py`` (a page of 100 pipes in a random 300 m window, ``--clients``
   clients at saturation),
4. prints throughput and p50/p95 per setting, with the replication lag seen at the end, and
   removes everything it made.

The load generator, the server, the primary and the standbys share this machine's cores: on
one machine replicas add no CPU, so the figure measures the routing's cost, not a gain.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import psycopg
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from api.auth import add_user  # noqa: E402
from bench.api import Workload, _load, _stats  # noqa: E402
from bench.machine import machine  # noqa: E402
from bench.server import Server  # noqa: E402
from ingest.pipeline import ingest_survey  # noqa: E402
from ingest.sample import generate_district  # noqa: E402
from twin.crs import transformer  # noqa: E402
from twin.db import open_twin, twin_srid  # noqa: E402
from twin.pgcluster import Standby, local_cluster  # noqa: E402
from twin.settings import get_settings  # noqa: E402

USER, PASSWORD = "bench", "bench-password"


def _district(settings, scale: float, base: Path) -> Workload:
    generate_district(base / "survey", scale=scale, seed=0)
    t0 = time.perf_counter()
    report = ingest_survey(base / "survey" / "points.csv", base / "survey" / "segments.csv", settings)
    assert report.status == "applied", report
    engine = open_twin(settings)
    with engine.begin() as conn:
        add_user(conn, USER, "viewer", PASSWORD, by="bench")
        n = conn.execute(sa.text("SELECT count(*) FROM current_segment")).scalar()
        mids = conn.execute(sa.text("SELECT ST_X(ST_Centroid(geom)), ST_Y(ST_Centroid(geom)) FROM segment "
                                    "ORDER BY md5(id) LIMIT 2000")).all()
        srid = twin_srid(conn)
    engine.dispose()
    to84 = transformer(srid, "OGC:CRS84")
    xy = np.array(mids, dtype=float)
    lon0, lat0 = to84.transform(xy[:, 0] - 150, xy[:, 1] - 150)
    lon1, lat1 = to84.transform(xy[:, 0] + 150, xy[:, 1] + 150)
    print(f"district: {n:,} segments, loaded in {time.perf_counter() - t0:.1f} s", flush=True)
    return Workload([], [f"{a:.7f},{b:.7f},{c:.7f},{d:.7f}" for a, b, c, d in zip(lon0, lat0, lon1, lat1,
                                                                                  strict=True)])


def _transactions(standby: Standby) -> int:
    """Transactions the standby has run (its own statistics): the reads it served."""
    cluster = standby.primary
    with psycopg.connect(host="127.0.0.1", port=standby.port, user=cluster.superuser, dbname="twin",
                         password=cluster.password(cluster.superuser), autocommit=True) as conn:
        return conn.execute("SELECT xact_commit + xact_rollback FROM pg_stat_database "
                            "WHERE datname = 'twin'").fetchone()[0]


def _run(settings, urls: list[str], work: Workload, args) -> dict:
    server = Server(settings, workers=args.workers, log_level="warning",
                    extra_env={"TWIN_READ_DATABASE_URLS": json.dumps(urls)})
    try:
        token = httpx.post(server.url + "/token", data={"username": USER, "password": PASSWORD}).json()
        headers = [{"Authorization": f"Bearer {token['access_token']}"}]
        asyncio.run(_load(server.url, headers, "items", args.clients, 2, 0, work,
                          "/collections/pipes/items"))  # warm-up
        run = asyncio.run(_load(server.url, headers, "items", args.clients, args.seconds, 0, work,
                                "/collections/pipes/items"))
    finally:
        server.stop()
    return _stats([run])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scale", type=float, default=5.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--clients", type=int, default=20)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    print(machine(), flush=True)
    base = Path(tempfile.mkdtemp(prefix="twin-bench-replicas-"))
    os.chmod(base, 0o711)  # the cluster's system user passes through
    settings = get_settings(data_dir=base, db_schema="twin", database_url=None, read_database_urls=[],
                            tiles_dir=base / "tiles", live_subscriber=False)
    cluster = local_cluster(settings)
    standbys = [Standby(cluster, base / f"standby-{i}", slot=f"bench_replica_{os.getpid()}_{i}")
                for i in (1, 2)]
    try:
        cluster.start()
        cluster.close()
        work = _district(settings, args.scale, base)
        for s in standbys:
            t0 = time.perf_counter()
            s.start()
            print(f"standby on port {s.port} made in {time.perf_counter() - t0:.1f} s", flush=True)
        rows = []
        for n in (0, 1, 2, 0):
            before = [_transactions(s) for s in standbys]
            st = _run(settings, [s.url for s in standbys[:n]], work, args)
            time.sleep(1)  # the standbys' statistics are flushed every second
            served = [_transactions(s) - b for s, b in zip(standbys, before, strict=True)]
            rows.append((n, st))
            print(f"{n} replica(s): {st['rps']:.0f} req/s, p50 {st['p50']:.1f} ms, p95 {st['p95']:.1f} ms, "
                  f"errors {st['errors'] or 0}; transactions on the standbys {served}", flush=True)
        print("lag at the end:", [{k: s.status()[k] for k in ("lag_bytes", "lag_s")} for s in standbys])
    finally:
        for s in standbys:
            s.stop(drop=True)
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
