"""Live readings benchmark: readings stored per second end to end, and alarm latency.

Run with ``.venv/bin/python bench/sensors.py``. In one run it

1. starts a private Mosquitto broker in a temporary folder (:class:`live.broker.Broker`, as
   ``twin broker start`` does) and a twin holding the small survey in schema ``bench_sensors``
   with ``--sensors`` pressure sensors registered on its nodes;
2. **end to end**: ``--publishers`` processes publish ``--readings`` readings at QoS 1 as fast as
   they can (paho, up to 1,000 unacknowledged, its loop run by the publishing thread) while a
   :class:`live.subscriber.Subscriber` (the one the server and ``twin sensors listen`` run, with
   ``--connections`` paho connections) stores them; the figure is readings stored per second, from the first publish
   to the last reading committed (counted in the table). Publishers on the same cores weigh on
   this figure, so it is also taken **draining**: the readings are published while the
   subscriber is down (the broker queues them for its session), then it starts and the time
   from its start to the last reading committed is taken;
3. **references in the same run**: the same rows through ``Subscriber.store`` without a broker
   (parse, check, store, alarms), and a raw ``COPY`` of the same rows into a plain table (the
   database's ceiling on this machine);
4. **alarm latency** (run first, on a quiet database): ``--alarms`` times, a reading below a sensor's low threshold is published
   and the time until its ``NOTIFY twin_live`` alarm event reaches a listening connection is
   taken (what the server's event stream forwards to the page);
5. prints the figures and appends them to ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import machine  # noqa: E402
from ingest.pipeline import ingest_survey  # noqa: E402
from live.broker import Broker  # noqa: E402
from live.events import CHANNEL  # noqa: E402
from live.readings import TOPIC_PREFIX  # noqa: E402
from live.sensors import SensorSpec, Who, add_sensors  # noqa: E402
from live.subscriber import Subscriber, mqtt_client  # noqa: E402
from twin.db import make_engine, open_twin  # noqa: E402
from twin.pgcluster import local_cluster  # noqa: E402
from twin.settings import get_settings  # noqa: E402

SCHEMA = "bench_sensors"
SMALL = ROOT / "tests" / "data" / "small"


def payloads(sensors: list[str], n: int, start: dt.datetime, part: int, parts: int) -> list[tuple[str, bytes]]:
    """The ``part``-th share of ``n`` readings, round robin over the sensors, one second apart per sensor."""
    out = []
    for k in range(part, n, parts):
        sid = sensors[k % len(sensors)]
        t = start + dt.timedelta(seconds=k // len(sensors), microseconds=k % 997)
        out.append((TOPIC_PREFIX + sid, json.dumps({"t": t.isoformat(), "v": 0.3 + (k % 7) * 0.001}).encode()))
    return out


def publish_share(url: str, messages: list[tuple[str, bytes]], ready, go) -> None:
    """One publisher process: paho at QoS 1, up to 1,000 unacknowledged; its network loop is run
    by this thread between publishes (paho's own thread halves a publisher's rate here)."""
    client, host, port = mqtt_client(get_settings(), f"bench-pub-{os.getpid()}", url=url)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(host, port)
    client.loop(1.0)
    ready.set()
    go.wait()
    infos = []
    for k, (topic, payload) in enumerate(messages):
        infos.append(client.publish(topic, payload, qos=1))
        if k % 200 == 199:
            client.loop(0)
    while not all(info.is_published() for info in infos[-1000:]):
        client.loop(0.1)
    client.disconnect()


def forget(url: str, client_ids: list[str]) -> None:
    """End these sessions on the broker (a clean connection): a phase's shared subscriptions must
    not take a share of the next phase's readings."""
    for client_id in client_ids:
        client, host, port = mqtt_client(get_settings(), client_id, url=url)
        client.connect(host, port)
        client.loop(1.0)
        client.disconnect()


def count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM reading")).scalar())


def clear(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE reading"))
        conn.execute(sa.text("DELETE FROM alarm"))


def end_to_end(settings, engine, broker: Broker, sensors: list[str], n: int, publishers: int,
               connections: int = 1, processes: int = 1) -> dict:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    shares = [payloads(sensors, n, start, p, publishers) for p in range(publishers)]
    ctx = mp.get_context("fork")
    go = ctx.Event()
    readies = [ctx.Event() for _ in shares]
    procs = [ctx.Process(target=publish_share, args=(broker.url, s, r, go)) for s, r in zip(shares, readies, strict=True)]
    sub = Subscriber(settings, engine, url=broker.url, client_id="bench-sensors", connections=connections,
                     processes=processes).start()
    sub.wait_connected()
    for p in procs:
        p.start()
    for r in readies:
        r.wait(30)
    t0 = time.perf_counter()
    go.set()
    while count(engine) < n and time.perf_counter() - t0 < 600:
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    for p in procs:
        p.join()
    sub.stop()
    forget(broker.url, ["bench-sensors"] + [f"bench-sensors-p{k}" for k in range(2, processes + 1)])
    stored = count(engine)
    return {"readings": n, "stored": stored, "seconds": elapsed, "per_s": stored / elapsed,
            "batches": sub.stats["batches"]}


def drain(settings, engine, broker: Broker, sensors: list[str], n: int, publishers: int,
          connections: int = 1, processes: int = 1) -> dict:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=2)
    first = Subscriber(settings, engine, url=broker.url, client_id=f"bench-drain-{processes}", connections=connections,
                       processes=processes).start()
    first.wait_connected()
    first.stop()  # the session (and its subscription) stays on the broker
    ctx = mp.get_context("fork")
    go = ctx.Event()
    go.set()
    procs = [ctx.Process(target=publish_share, args=(broker.url, payloads(sensors, n, start, p, publishers),
                                                     ctx.Event(), go)) for p in range(publishers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    t0 = time.perf_counter()
    sub = Subscriber(settings, engine, url=broker.url, client_id=f"bench-drain-{processes}", connections=connections,
                     processes=processes).start()
    while count(engine) < n and time.perf_counter() - t0 < 600:
        time.sleep(0.02)
    elapsed = time.perf_counter() - t0
    sub.stop()
    forget(broker.url, [f"bench-drain-{processes}"] + [f"bench-drain-{processes}-p{k}" for k in range(2, processes + 1)])
    return {"stored": count(engine), "seconds": elapsed, "per_s": count(engine) / elapsed,
            "batches": sub.stats["batches"]}


def library_reference(settings, engine, sensors: list[str], n: int) -> dict:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    messages = payloads(sensors, n, start, 0, 1)
    sub = Subscriber(settings, engine)
    t0 = time.perf_counter()
    for k in range(0, n, 5000):  # the subscriber's batches at full speed are about this size
        sub.store(messages[k:k + 5000])
    elapsed = time.perf_counter() - t0
    return {"seconds": elapsed, "per_s": count(engine) / elapsed}


def copy_reference(engine: sa.Engine, sensors: list[str], n: int) -> dict:
    start = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    text = "".join(f"{sensors[k % len(sensors)]}\t{(start + dt.timedelta(seconds=k // len(sensors))).isoformat()}"
                   f"\t{0.3 + (k % 7) * 0.001}\n" for k in range(n))
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        with raw.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS bench_copy")
            cur.execute("CREATE TABLE bench_copy (sensor_id text, t timestamptz, v float8)")
            t0 = time.perf_counter()
            with cur.copy("COPY bench_copy FROM STDIN") as copy:
                copy.write(text)
            elapsed = time.perf_counter() - t0
            cur.execute("DROP TABLE bench_copy")
    return {"seconds": elapsed, "per_s": n / elapsed}


def alarm_latency(settings, engine, broker: Broker, sensors: list[str], times: int) -> list[float]:
    url = make_engine(settings).url
    listener = psycopg.connect(host=url.host, port=url.port, user=url.username, dbname=url.database,
                               password=url.password or local_cluster(settings).password(url.username),
                               autocommit=True)
    listener.execute(f"LISTEN {CHANNEL}")
    client, host, port = mqtt_client(settings, url=broker.url)
    client.connect(host, port)
    client.loop_start()
    out = []
    with Subscriber(settings, engine, url=broker.url, client_id="bench-sensors") as sub:
        sub.wait_connected()
        for k in range(times):
            sid = sensors[k % len(sensors)]
            t0 = time.perf_counter()
            client.publish(TOPIC_PREFIX + sid, json.dumps({"t": dt.datetime.now(dt.UTC).isoformat(), "v": 0.01}), qos=1)
            for note in listener.notifies(timeout=5):
                body = json.loads(note.payload)
                if body["type"] == "alarm" and body["alarm"]["sensor"] == sid:
                    out.append(time.perf_counter() - t0)
                    break
            time.sleep(0.05)
    client.disconnect()
    client.loop_stop()
    listener.close()
    forget(broker.url, ["bench-sensors"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readings", type=int, default=200_000)
    ap.add_argument("--sensors", type=int, default=500)
    ap.add_argument("--publishers", type=int, default=2)
    ap.add_argument("--alarms", type=int, default=30)
    ap.add_argument("--connections", type=int, default=1, help="the subscriber's MQTT connections")
    ap.add_argument("--processes", type=int, default=1, help="the subscriber's processes")
    ap.add_argument("--only", choices=("e2e", "drain"), help="one bulk phase only (and no latency)")
    ap.add_argument("--no-record", action="store_true", help="print only; do not append to RESULTS.md")
    args = ap.parse_args()

    settings = get_settings(db_schema=SCHEMA)
    open_twin(get_settings()).dispose()
    admin = make_engine(settings, admin=True)
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE'))
    admin.dispose()
    ingest_survey(SMALL / "points.csv", SMALL / "segments.csv", settings)
    engine = open_twin(settings)
    nodes = ["JS1", "JS2", "JS3", "JS4", "JS5", "JS6"]
    sensors = [f"BP-{k:04d}" for k in range(args.sensors)]
    add_sensors(engine, [SensorSpec(s, "pressure", "MPa", node=nodes[k % len(nodes)], low=0.15, rate=0.05)
                         for k, s in enumerate(sensors)], Who("bench"))
    folder = Path(tempfile.mkdtemp(prefix="pipetwin-bench-mqtt-"))
    folder.chmod(0o711)
    broker = Broker(root=folder / "mqtt", secrets=folder / "secrets")
    broker.start()
    load = [os.getloadavg()[0]]
    if args.only:  # a quick look at one phase: printed, not recorded
        try:
            phase = end_to_end if args.only == "e2e" else drain
            print(args.only, phase(settings, engine, broker, sensors, args.readings, args.publishers,
                                   args.connections, args.processes), f"load {load[0]:.1f} -> {os.getloadavg()[0]:.1f}")
        finally:
            broker.stop()
            shutil.rmtree(folder, ignore_errors=True)
        return
    try:
        # latency first: on a database not just loaded with the bulk phases' rows (checkpoints)
        lat = np.array(alarm_latency(settings, engine, broker, sensors, args.alarms)) * 1000
        clear(engine)
        e2e = end_to_end(settings, engine, broker, sensors, args.readings, args.publishers, args.connections,
                         args.processes)
        clear(engine)
        dr = drain(settings, engine, broker, sensors, args.readings, args.publishers, args.connections, args.processes)
        clear(engine)
        other = 2 if args.processes == 1 else 1  # the same drain with the other number of processes
        dr1 = drain(settings, engine, broker, sensors, args.readings, args.publishers, processes=other)
        clear(engine)
        lib = library_reference(settings, engine, sensors, args.readings)
        clear(engine)
        raw = copy_reference(engine, sensors, args.readings)
        load.append(os.getloadavg()[0])
    finally:
        broker.stop()
        shutil.rmtree(folder, ignore_errors=True)
    lines = [
        f"## Live readings (bench/sensors.py, {dt.date.today()})",
        f"- {machine()}; {args.readings:,} readings of {args.sensors} pressure sensors, {args.publishers} "
        f"paho publisher processes at QoS 1, a paho-mqtt subscriber of {args.processes} process(es)"
        f"{' on a shared subscription' if args.processes > 1 else ''}, private Mosquitto 2.0 and PostgreSQL "
        f"on the same cores; load "
        f"average {load[0]:.1f} at the start, {load[-1]:.1f} at the end.",
        f"- end to end (publish -> broker -> subscriber -> committed): {e2e['per_s']:,.0f} readings/s "
        f"({e2e['stored']:,} stored in {e2e['seconds']:.1f} s; target 10,000/s: "
        f"{'met' if e2e['per_s'] >= 10_000 else 'NOT met'})",
        f"- draining readings queued while the subscriber was down (broker -> subscriber -> committed): "
        f"{dr['per_s']:,.0f} readings/s ({dr['stored']:,} in {dr['seconds']:.1f} s; "
        f"target 10,000/s: {'met' if dr['per_s'] >= 10_000 else 'NOT met'}); with {other} subscriber "
        f"process(es) {dr1['per_s']:,.0f} readings/s",
        f"- reference, the subscriber's batch path without the broker: {lib['per_s']:,.0f} readings/s",
        f"- reference, raw COPY of the same rows into a plain table: {raw['per_s']:,.0f} rows/s",
        f"- alarm latency, publish -> NOTIFY at a listener ({len(lat)} of {args.alarms}): median "
        f"{np.median(lat):.0f} ms, p95 {np.percentile(lat, 95):.0f} ms, max {lat.max():.0f} ms "
        f"(target 1 s: {'met' if len(lat) and lat.max() < 1000 else 'NOT met'})",
    ]
    print("\n".join(lines))
    if not args.no_record:
        with (ROOT / "bench" / "RESULTS.md").open("a", encoding="utf-8") as out:  # other benches write here too
            out.write("\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
