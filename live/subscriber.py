"""The subscriber: MQTT readings in, stored, checked for alarms, told to every server process.

``Subscriber(settings, engine)`` connects to the broker in use (:func:`live.broker.broker_url`:
``TWIN_MQTT_URL`` or the private broker) with paho-mqtt, subscribes to ``pipetwin/readings/+``
at QoS 1 and runs until :meth:`Subscriber.stop`:

* **Nothing the broker kept is lost.** The session is persistent (a fixed client id,
  ``clean_session=False``) and messages are acknowledged by hand (paho's ``manual_ack``) only
  once their batch is committed, so readings published while the subscriber (or the broker, with
  its persistence) was down arrive when it is back; paho makes a lost connection again by itself
  (0.2 s, doubling up to 5 s). A reading delivered twice is stored once (``(sensor, t)`` is
  unique).
* **Fast paths.** paho's network thread (``loop_start``) only appends each message to a queue;
  the store thread takes them in batches: gathered for up to ``batch_ms`` (or ``max_batch``
  messages), parsed, stored (:func:`live.readings.store_readings`, one ``COPY``), checked
  (:func:`live.alarms.evaluate`), and the new alarms and the batch's last values are sent with
  ``NOTIFY twin_live`` in the same transaction (:mod:`live.events`); then acknowledged. A new
  pressure drop also looks for a suspected burst.
* **Invalid messages** (bad topic, bad JSON, unknown sensor, bad time, not a number) are counted
  in :attr:`Subscriber.stats` and logged (the first few of each reason, then one in 1000); they
  never stop it. A failing batch (database down) is retried; its messages stay unacknowledged.
* **Periodic work** every ``check_s``: stale sensors (:func:`live.alarms.check_stale`), and once
  an hour the readings older than ``TWIN_READINGS_RETENTION_DAYS`` (daily partitions dropped).

**Several server workers**: pass ``shared=True`` and a distinct, stable ``client_id`` per worker
(e.g. ``pipetwin-<schema>-w<n>``): the subscription becomes ``$share/pipetwin/pipetwin/readings/+``
and the broker hands each message to one worker only. **More throughput**: ``processes=n`` runs
``n - 1`` more subscriber processes (spawned, each with its own engine) on the shared
subscription, as client ids ``<client_id>-p2``, ...: paho's per-message work and the batches'
parsing share one interpreter lock in a process, so a second process stores about 1.5x as many
readings a second (``bench/sensors.py``); ``connections=n`` (more paho connections in this
process) did not help. The client ids must stay the same from run to run (their sessions keep
what arrives while they are down); a session of the group that does not come back keeps taking
its share, held on the broker, so end it (a clean connection under its client id) when lowering
``processes``. **In the server**: start one in the lifespan when
:func:`configured` is true, ``stop()`` it on shutdown; it runs paho's network thread per
connection and two daemon threads (store, check) and uses at most two connections of
``engine``. ``twin sensors listen`` runs it in the foreground.
"""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing as mp
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass

import paho.mqtt.client as mqtt
import sqlalchemy as sa

from live.alarms import RateWindow, check_stale, evaluate, raise_alarms, suspected_burst
from live.broker import broker_url, local_broker, mqtt_target
from live.events import notify, notify_readings
from live.readings import (
    TOPIC,
    TOPIC_PREFIX,
    drop_old_partitions,
    ensure_partitions,
    parse_messages,
    store_readings,
)
from live.sensors import sensor_rules
from twin.db import make_engine
from twin.errors import ConfigError, TwinError
from twin.settings import TwinSettings

__all__ = ["Subscriber", "configured", "mqtt_client", "SHARED_GROUP"]

log = logging.getLogger(__name__)

SHARED_GROUP = "pipetwin"

#: Least seconds between two reloads of the sensors for readings of unknown sensors.
RULES_RELOAD_S = 0.25


def configured(settings: TwinSettings) -> bool:
    """Whether there is a broker to subscribe to: ``TWIN_MQTT_URL``, or the private one running."""
    if settings.mqtt_url is not None:
        return True
    try:
        return local_broker(settings).running()
    except ConfigError:
        return False


def mqtt_client(settings: TwinSettings, client_id: str = "", *, persistent: bool = False,
                manual_ack: bool = False, url: str | None = None) -> tuple[mqtt.Client, str, int]:
    """A paho client (v2 callbacks) with the broker's credentials, and the host and port to use."""
    target = mqtt_target(url or broker_url(settings))
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=not persistent if client_id else True, manual_ack=manual_ack)
    if target.user:
        client.username_pw_set(target.user, target.password)
    if target.tls:
        client.tls_set()
    client.reconnect_delay_set(min_delay=1, max_delay=5)
    return client, target.host, target.port


@dataclass(eq=False)
class _Link:
    """One connection of the subscriber (paho's ``userdata``)."""

    client: mqtt.Client
    client_id: str
    generation: int = 0  # moves on with each connection: acks of an older one are not sent


class Subscriber:
    """Stores readings from the broker, raises alarms and sends live events (see the module)."""

    def __init__(self, settings: TwinSettings, engine: sa.Engine, *, client_id: str | None = None,
                 shared: bool = False, batch_ms: float = 50.0, max_batch: int = 20_000,
                 check_s: float = 5.0, url: str | None = None, connections: int = 1,
                 processes: int = 1) -> None:
        self.settings, self.engine = settings, engine
        self.client_id = client_id or f"pipetwin-{settings.db_schema}"
        shared = shared or connections > 1 or processes > 1  # else each message comes to each
        self.topic = f"$share/{SHARED_GROUP}/{TOPIC}" if shared else TOPIC
        self.batch_s, self.max_batch, self.check_s = batch_ms / 1000.0, max_batch, check_s
        self.url, self.n_connections, self.n_processes = url, max(1, connections), max(1, processes)
        self._children: list = []  # (process, stop, ready) of the other processes
        self.stats: Counter = Counter()
        self.connected = threading.Event()  # every connection subscribed
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()  # (link, generation, message), from paho
        self._stop = threading.Event()
        self._threads: dict[str, threading.Thread] = {}
        self._links: list[_Link] = []
        self._subscribed: set[str] = set()
        self._rules: dict = {}
        self._rules_at = 0.0
        self._window = RateWindow()
        self._partitions: set[str] = set()
        self._last_burst: tuple = ()

    # -- life cycle ------------------------------------------------------------------------------
    def start(self) -> Subscriber:
        """Start reading (a broker that is down is waited for), storing and checking."""
        self._load_rules(force=True)
        self._make_partitions()
        for k in range(self.n_connections):
            self._links.append(self._connect(self.client_id if k == 0 else f"{self.client_id}-{k + 1}"))
        ctx = mp.get_context("spawn")  # not fork: the server process has threads
        for k in range(2, self.n_processes + 1):
            stop, ready = ctx.Event(), ctx.Event()
            child = ctx.Process(target=_run_child, name=f"twin-live-subscriber-{k}", daemon=True,
                                args=(self.settings, self.url, f"{self.client_id}-p{k}", stop, ready))
            child.start()
            self._children.append((child, stop, ready))
        for target, name in ((self._store_loop, "store"), (self._check_loop, "check")):
            self._threads[name] = threading.Thread(target=target, name=f"twin-live-{name}", daemon=True)
            self._threads[name].start()
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Store and acknowledge what has arrived, then disconnect (the session stays on the broker;
        whatever arrives meanwhile is not acknowledged, so the broker sends it again)."""
        self._stop.set()
        for _child, stop, _ready in self._children:
            stop.set()
        for thread in self._threads.values():
            thread.join(timeout_s)
        for child, _stop, _ready in self._children:
            child.join(timeout_s)
            if child.is_alive():
                child.terminate()
        self._children.clear()
        for link in self._links:
            link.client.disconnect()
        for link in self._links:
            link.client.loop_stop()
        self._links.clear()
        self.connected.clear()

    def wait_connected(self, timeout_s: float = 10.0) -> bool:
        """Whether every connection (and every other process, the first time) has subscribed."""
        deadline = time.monotonic() + timeout_s
        return self.connected.wait(timeout_s) and all(
            ready.wait(max(0.0, deadline - time.monotonic())) for _child, _stop, ready in self._children)

    def __enter__(self) -> Subscriber:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the broker (paho's network threads) -----------------------------------------------------
    def _connect(self, client_id: str) -> _Link:
        """A persistent, hand-acknowledged paho session, connecting (and reconnecting) in its thread."""
        client, host, port = mqtt_client(self.settings, client_id, persistent=True, manual_ack=True,
                                         url=self.url)
        link = _Link(client, client_id)
        client.user_data_set(link)
        client.reconnect_delay_set(min_delay=0.2, max_delay=5)  # type: ignore[arg-type]
        client.max_inflight_messages_set(1000)
        client.suppress_exceptions = True  # a failing callback is logged, the loop goes on
        inbox = self._inbox
        client.on_message = lambda _c, lk, msg: inbox.put((lk, lk.generation, msg))
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.connect_async(host, port, keepalive=30)
        client.loop_start()
        return link

    def _on_connect(self, client: mqtt.Client, link: _Link, flags, reason, _props) -> None:
        if reason.is_failure:
            log.warning("the MQTT broker refused %s: %s", link.client_id, reason)
            return
        link.generation += 1
        self.stats["connections"] += 1
        client.subscribe(self.topic, qos=1)
        log.info("connected as %s (session %s)", link.client_id,
                 "resumed" if flags.session_present else "new")

    def _on_subscribe(self, _client: mqtt.Client, link: _Link, _mid, reasons, _props) -> None:
        if any(r.is_failure for r in reasons):
            log.error("the MQTT broker refused the subscription to %s", self.topic)
            return
        self._subscribed.add(link.client_id)
        if len(self._subscribed) >= self.n_connections:
            self.connected.set()
        log.info("subscribed to %s as %s", self.topic, link.client_id)

    def _on_disconnect(self, _client: mqtt.Client, link: _Link, _flags, reason, _props) -> None:
        self._subscribed.discard(link.client_id)
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("MQTT connection %s lost (%s); connecting again", link.client_id, reason)

    # -- storing ---------------------------------------------------------------------------------
    def _load_rules(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._rules_at > 2.0:
            with self.engine.connect() as conn:
                self._rules = sensor_rules(conn)
            self._rules_at = now

    def _rules_for(self, topics: list[str], arrived: float) -> None:
        """Reload the sensors when a reading names one not known and the rules were read before
        it arrived (a sensor registered a moment ago must not lose its first readings). Reloads
        are at least :data:`RULES_RELOAD_S` apart: a flood of unknown ids waits, it does not
        query the database per batch."""
        if not any(t.startswith(TOPIC_PREFIX) and t[len(TOPIC_PREFIX):] not in self._rules for t in topics):
            return
        if self._rules_at > arrived:
            return  # read after these arrived: the unknown ids are unknown
        pause = self._rules_at + RULES_RELOAD_S - time.monotonic()
        if pause > 0:
            self._stop.wait(pause)
        self._load_rules(force=True)

    def _take(self, wait: bool = True) -> list[tuple]:
        """Messages of one batch: wait for the first, then gather for ``batch_s``; or, without
        ``wait``, what has arrived."""
        inbox = self._inbox
        if wait:
            try:
                first = [inbox.get(timeout=0.2)]
            except queue.Empty:
                return []
            if inbox.qsize() < self.max_batch:
                self._stop.wait(self.batch_s)  # stop() cuts the gathering short
        else:
            first = []
        n = min(inbox.qsize(), self.max_batch - len(first))
        return first + [inbox.get_nowait() for _ in range(n)]

    def _store_loop(self) -> None:
        """Store batches until stopped; then store and acknowledge what has arrived, once."""
        while True:
            stopping = self._stop.is_set()
            items = self._take(wait=not stopping)
            if items:
                self._store_batch(items)
            if stopping:
                return

    def _store_batch(self, items: list[tuple]) -> None:
        """Store one batch of ``(link, generation, message)``, then acknowledge it; a batch that
        fails (database down) is tried again until it is stored or the subscriber stops."""
        messages = []
        arrived = min(getattr(msg, "timestamp", 0.0) for _l, _g, msg in items)
        for _link, _gen, msg in items:
            try:
                topic = msg.topic
            except UnicodeDecodeError:  # brokers refuse such topics; counted as bad_topic
                topic = "?"
            messages.append((topic, msg.payload))
        while True:
            try:
                self.store(messages, arrived=arrived)
                break
            except Exception:  # the database may be down: keep the batch, try again
                self.stats["batch_errors"] += 1
                log.exception("storing a batch of %d readings failed; retrying", len(items))
                if self._stop.wait(1.0):
                    return  # not acknowledged: the broker sends them again
        for link, generation, msg in items:  # on the connection each came by, if still that one
            if msg.qos and generation == link.generation:
                link.client.ack(msg.mid, msg.qos)

    def store(self, items: list[tuple], arrived: float | None = None) -> None:
        """Parse, store and check one batch of ``(topic, payload, ...)`` messages that arrived
        (``time.monotonic()``) no earlier than ``arrived`` (default: now)."""
        self._rules_for([t for t, *_ in items], time.monotonic() if arrived is None else arrived)
        batch = parse_messages(((t, p) for t, p, *_ in items), self._rules,
                               retention_days=self.settings.readings_retention_days)
        self._count_invalid(batch)
        self.stats["received"] += len(items)
        ids, t_us, v = batch.arrays()
        if not len(ids):
            return
        candidates = evaluate(self._rules, ids, t_us, v, self._window)
        with self.engine.begin() as conn:
            last = store_readings(conn, ids, t_us, v, self._partitions)
            alarms = raise_alarms(conn, candidates, schema=self.settings.db_schema)
            notify_readings(conn, last, schema=self.settings.db_schema)
        self.stats["stored"] += len(ids)
        self.stats["batches"] += 1
        self.stats["alarms"] += len(alarms)
        if any(a["cause"] == "drop" and a["kind"] == "pressure" for a in alarms):
            self._look_for_burst()

    def _count_invalid(self, batch) -> None:
        for reason, n in batch.invalid.items():
            before = self.stats[f"invalid_{reason}"]
            self.stats[f"invalid_{reason}"] += n
            self.stats["invalid"] += n
            if before < 5 or before // 1000 != (before + n) // 1000:
                log.warning("%d invalid message(s) (%s), %d so far; e.g. %s", n, reason, before + n,
                            "; ".join(e for e in batch.examples if e.startswith(reason))[:300])

    def _look_for_burst(self) -> None:
        try:
            burst = suspected_burst(self.engine, window_s=self.settings.alarm_burst_window_s)
        except TwinError as exc:
            log.warning("suspected burst not told: %s", exc)
            return
        if burst is None or tuple(burst["alarms"]) == self._last_burst:
            return
        self._last_burst = tuple(burst["alarms"])
        self.stats["bursts"] += 1
        log.warning("suspected burst near pipe %s (sensors %s)", burst["pipe"], ", ".join(burst["sensors"]))
        with self.engine.begin() as conn:
            notify(conn, "burst", "burst", burst, schema=self.settings.db_schema)

    # -- periodic work ---------------------------------------------------------------------------
    def _make_partitions(self) -> None:
        """Today's and tomorrow's partitions, made ahead so no reading waits for one."""
        today = dt.datetime.now(dt.UTC).date()
        with self.engine.begin() as conn:
            ensure_partitions(conn, [today, today + dt.timedelta(days=1)], self._partitions)

    def _check_loop(self) -> None:
        last_prune = -3600.0  # the first check also prunes
        while not self._stop.wait(self.check_s):
            try:
                self.stats["alarms"] += len(check_stale(self.engine))
                if time.monotonic() - last_prune > 3600:
                    self._make_partitions()
                    dropped = drop_old_partitions(self.engine, self.settings.readings_retention_days,
                                                  now=dt.datetime.now(dt.UTC))
                    if dropped:
                        log.info("dropped reading partitions %s", ", ".join(dropped))
                    self._partitions.difference_update(dropped)
                    last_prune = time.monotonic()
            except Exception:
                log.exception("the periodic alarm check failed")


def _run_child(settings: TwinSettings, url: str | None, client_id: str, stop, ready) -> None:
    """Another subscriber process on the shared subscription, until ``stop`` is set."""
    engine = make_engine(settings)
    sub = Subscriber(settings, engine, client_id=client_id, shared=True, url=url,
                     check_s=86_400.0).start()  # the periodic work is the first process's
    try:
        if sub.wait_connected(60):
            ready.set()
        parent = mp.parent_process()
        while not stop.wait(1.0) and (parent is None or parent.is_alive()):
            pass  # a parent killed outright takes its helpers with it
    finally:
        sub.stop()
        engine.dispose()
