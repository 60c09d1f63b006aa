"""Sensor readings: parsed from MQTT payloads, stored in daily partitions, kept for a while.

The ``reading`` table is ``PARTITION BY RANGE (t)``, one partition per UTC day
(``reading_pYYYYMMDD``), made on demand as readings of a new day arrive and dropped
``TWIN_READINGS_RETENTION_DAYS`` after (:func:`drop_old_partitions`). A batch goes in by
``COPY`` into a temporary table, then one ``INSERT ... ON CONFLICT DO NOTHING``: a reading
delivered twice (QoS 1 is at least once; two workers) is stored once, by ``(sensor, t)``.

A payload is ``{"t": "<ISO 8601 with offset>", "v": <number>}`` on ``pipetwin/readings/<id>``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import sqlalchemy as sa

from twin.errors import InputError, NotFound

__all__ = ["TOPIC_PREFIX", "TOPIC", "Batch", "parse_messages", "store_readings", "ensure_partitions",
           "drop_old_partitions", "partitions", "series", "INVALID_REASONS"]

TOPIC_PREFIX = "pipetwin/readings/"
TOPIC = TOPIC_PREFIX + "+"
#: Why a message is not stored (counted by the subscriber).
INVALID_REASONS = ("bad_topic", "bad_json", "unknown_sensor", "bad_time", "not_number")
#: Readings stamped further ahead than this are refused (a clock gone wrong).
MAX_AHEAD = dt.timedelta(days=1)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: ``{"t": "<time>", "v": <JSON number>}`` exactly (no escapes, no other keys); anything else
#: goes through ``json.loads``.
_SIMPLE = re.compile(rb'\s*\{\s*"t"\s*:\s*"([0-9T:.+\-Z ]{1,40})"\s*,\s*"v"\s*:\s*'
                     rb'(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)\s*\}\s*')


@dataclass
class Batch:
    """Valid readings of a batch of messages, and what was wrong with the others."""

    ids: list[str] = field(default_factory=list)
    t_us: list[int] = field(default_factory=list)  # microseconds since 1970 UTC
    v: list[float] = field(default_factory=list)
    invalid: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)  # a few invalid messages, for the log

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return (np.asarray(self.ids, dtype=object), np.asarray(self.t_us, dtype=np.int64),
                np.asarray(self.v, dtype=np.float64))

    def _bad(self, reason: str, topic: str, payload: bytes) -> None:
        self.invalid[reason] += 1
        if len(self.examples) < 5:
            self.examples.append(f"{reason}: {topic} {payload[:120]!r}")


def _time_us(value: object) -> int | None:
    """Microseconds since 1970 of an ISO 8601 time with a UTC offset, else None."""
    if not isinstance(value, str) or len(value) > 40:
        return None
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    if t.tzinfo is None:
        return None
    delta = t - EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_messages(messages: Iterable[tuple[str, bytes]], known: Mapping[str, object], *,
                   now: dt.datetime | None = None, retention_days: int = 3650) -> Batch:
    """Check each ``(topic, payload)``; valid readings of known sensors go in the batch."""
    now = now or dt.datetime.now(dt.UTC)
    latest = _time_us(now.isoformat()) + int(MAX_AHEAD.total_seconds() * 1e6)
    earliest = _time_us(now.isoformat()) - retention_days * 86_400_000_000
    batch = Batch()
    cut = len(TOPIC_PREFIX)
    for topic, payload in messages:
        if not topic.startswith(TOPIC_PREFIX) or "/" in topic[cut:]:
            batch._bad("bad_topic", topic, payload)
            continue
        sid = topic[cut:]
        if sid not in known:
            batch._bad("unknown_sensor", topic, payload)
            continue
        simple = _SIMPLE.fullmatch(payload)
        if simple is not None:  # the usual form, read without the JSON parser (twice as fast)
            t, v = _time_us(simple.group(1).decode()), float(simple.group(2))
        else:
            try:
                body = json.loads(payload)
            except (ValueError, UnicodeDecodeError):
                batch._bad("bad_json", topic, payload)
                continue
            if not isinstance(body, dict):
                batch._bad("bad_json", topic, payload)
                continue
            t, v = _time_us(body.get("t")), body.get("v")
        if t is None or not earliest <= t <= latest:
            batch._bad("bad_time", topic, payload)
            continue
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            batch._bad("not_number", topic, payload)
            continue
        batch.ids.append(sid)
        batch.t_us.append(t)
        batch.v.append(float(v))
    return batch


# -- partitions -------------------------------------------------------------------------------------
def _partition(day: dt.date) -> str:
    return f"reading_p{day:%Y%m%d}"


def ensure_partitions(conn: sa.Connection, days: Iterable[dt.date], known: set[str] | None = None) -> None:
    """The daily partitions of ``days``, made when missing (one process at a time)."""
    wanted = [d for d in sorted(set(days)) if known is None or _partition(d) not in known]
    if not wanted:
        return
    present = set(partitions(conn))
    missing = [d for d in wanted if _partition(d) not in present]
    if missing:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('twin.live.partitions.' || current_schema()))"))
        present = set(partitions(conn))
        for d in missing:
            if _partition(d) not in present:
                conn.execute(sa.text(
                    f"CREATE TABLE {_partition(d)} PARTITION OF reading "
                    f"FOR VALUES FROM ('{d.isoformat()} 00:00+00') TO ('{(d + dt.timedelta(days=1)).isoformat()} 00:00+00')"))
    if known is not None:
        known.update(_partition(d) for d in wanted)


def partitions(conn: sa.Connection) -> list[str]:
    """The reading partitions of this twin, oldest first."""
    return conn.execute(sa.text(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass('reading') ORDER BY c.relname")).scalars().all()


def drop_old_partitions(engine: sa.Engine, retention_days: int, *, now: dt.datetime | None = None) -> list[str]:
    """Drop the daily partitions wholly older than ``retention_days``; returns their names."""
    today = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).date()
    oldest_kept = today - dt.timedelta(days=retention_days)
    dropped = []
    with engine.begin() as conn:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('twin.live.partitions.' || current_schema()))"))
        for name in partitions(conn):
            try:
                day = dt.datetime.strptime(name.removeprefix("reading_p"), "%Y%m%d").date()
            except ValueError:
                continue
            if day < oldest_kept:
                conn.execute(sa.text(f'DROP TABLE "{name}"'))
                dropped.append(name)
    return dropped


# -- storing ----------------------------------------------------------------------------------------
def _iso(t_us: np.ndarray) -> np.ndarray:
    return np.char.add(np.datetime_as_string(t_us.astype("datetime64[us]"), unit="us"), "+00")


def store_readings(conn: sa.Connection, ids: np.ndarray, t_us: np.ndarray, v: np.ndarray,
                   known: set[str] | None = None) -> dict[str, tuple[str, float]]:
    """Store a batch (ids checked already) on ``conn``, inside the caller's transaction, and move
    each sensor's last reading; returns the last reading of each sensor of the batch."""
    if not len(ids):
        return {}
    days = np.unique(t_us.astype("datetime64[us]").astype("datetime64[D]"))
    ensure_partitions(conn, (d.item() for d in days), known)
    iso = _iso(t_us)
    text = "".join(f"{i}\t{t}\t{x!r}\n" for i, t, x in zip(ids.tolist(), iso.tolist(), v.tolist(), strict=True))
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS reading_in (sensor_id text, t timestamptz, v float8) "
                    "ON COMMIT DELETE ROWS")
        with cur.copy("COPY reading_in (sensor_id, t, v) FROM STDIN") as copy:
            copy.write(text)
        cur.execute("INSERT INTO reading (sensor_id, t, v) SELECT sensor_id, t, v FROM reading_in "
                    "ON CONFLICT DO NOTHING")
    # the last reading of each sensor: the batch's latest (sort by sensor, then time)
    order = np.lexsort((t_us, ids.astype(str)))
    s_ids = ids[order]
    last = np.flatnonzero(np.append(s_ids[1:] != s_ids[:-1], True))
    pick = order[last]
    conn.execute(sa.text(
        "UPDATE sensor s SET last_t = x.t, last_v = x.v "
        "FROM unnest(CAST(:i AS text[]), CAST(:t AS timestamptz[]), CAST(:v AS float8[])) AS x(id, t, v) "
        "WHERE s.id = x.id AND (s.last_t IS NULL OR x.t >= s.last_t)"),
        {"i": ids[pick].tolist(), "t": iso[pick].tolist(), "v": v[pick].tolist()})
    return {i: (t, x) for i, t, x in zip(ids[pick].tolist(), iso[pick].tolist(), v[pick].tolist(), strict=True)}


def series(engine: sa.Engine, sensor_id: str, *, since: dt.datetime | None = None,
           until: dt.datetime | None = None, max_points: int = 2000) -> dict:
    """A sensor's readings between two times (the last hour by default) for a chart: every
    reading, or the mean of equal time buckets when there are more than ``max_points``."""
    until = until or dt.datetime.now(dt.UTC)
    since = since or until - dt.timedelta(hours=1)
    if since >= until:
        raise InputError("since must be before until", zh="since 须早于 until")
    if not 2 <= max_points <= 100_000:
        raise InputError("max_points is between 2 and 100000", zh="max_points 取 2 到 100000")
    with engine.connect() as conn:
        sensor = conn.execute(sa.text("SELECT id, kind, unit FROM sensor WHERE id = :i"), {"i": sensor_id}).first()
        if sensor is None:
            raise NotFound(f"no sensor {sensor_id!r}", zh=f"没有传感器 {sensor_id!r}")
        p = {"i": sensor_id, "a": since, "b": until, "n": max_points}
        n = conn.execute(sa.text("SELECT count(*) FROM reading WHERE sensor_id = :i AND t >= :a AND t < :b"), p).scalar()
        if n <= max_points:
            rows = conn.execute(sa.text("SELECT t, v FROM reading WHERE sensor_id = :i AND t >= :a AND t < :b "
                                        "ORDER BY t"), p).all()
        else:
            rows = conn.execute(sa.text(
                "SELECT date_bin((CAST(:b AS timestamptz) - CAST(:a AS timestamptz)) / :n, t, CAST(:a AS timestamptz)) AS tb, "
                "avg(v) FROM reading WHERE sensor_id = :i AND t >= :a AND t < :b GROUP BY tb ORDER BY tb"), p).all()
    return {"sensor": sensor.id, "kind": sensor.kind, "unit": sensor.unit, "count": int(n),
            "aggregated": n > max_points, "t": [r[0].isoformat() for r in rows], "v": [float(r[1]) for r in rows]}


def day_of(t_us: int) -> dt.date:
    """The UTC day of a time in microseconds since 1970."""
    return (EPOCH + dt.timedelta(microseconds=int(t_us))).date()


def as_datetime(values: Sequence[int]) -> list[dt.datetime]:
    """Aware UTC datetimes of microseconds since 1970."""
    return [EPOCH + dt.timedelta(microseconds=int(t)) for t in values]
