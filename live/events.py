"""Live events for every server process: PostgreSQL ``NOTIFY twin_live, '<json>'``.

The subscriber (and alarm transitions) send one event per stored alarm, per reading batch
(the last value of each sensor in it) and per suspected burst; a server's Server-Sent Events
endpoint ``LISTEN``s on :data:`CHANNEL`, so every worker sees every event whichever worker
stored it. An event is sent inside the transaction that stores what it tells, so it is
delivered at commit, or not at all. Events are JSON objects with a ``type``:

* ``{"type": "readings", "schema": s, "sensors": {id: {"t": iso, "v": number}}}`` (split to
  stay under PostgreSQL's 8000-byte payload limit);
* ``{"type": "alarm", "schema": s, "alarm": {...}}`` (raised, acknowledged or closed: see
  :func:`live.alarms.list_alarms` for the fields);
* ``{"type": "burst", "schema": s, "burst": {...}}`` (see :func:`live.alarms.suspected_burst`).

``schema`` is the twin's schema, so a listener of one twin ignores another's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import sqlalchemy as sa

from twin.jsonable import plain

__all__ = ["CHANNEL", "notify", "notify_readings", "MAX_PAYLOAD"]

CHANNEL = "twin_live"
#: PostgreSQL refuses NOTIFY payloads of 8000 bytes or more.
MAX_PAYLOAD = 7900


def _schema(conn: sa.Connection) -> str:
    return str(conn.execute(sa.text("SELECT current_schema()")).scalar())


def notify(conn: sa.Connection, kind: str, key: str, body: object, *, schema: str | None = None) -> None:
    """Send ``{"type": kind, "schema": ..., key: body}`` on :data:`CHANNEL` (at commit)."""
    payload = json.dumps({"type": kind, "schema": schema or _schema(conn), key: plain(body)},
                         ensure_ascii=False, default=str)
    if len(payload.encode()) > MAX_PAYLOAD:
        payload = json.dumps({"type": kind, "schema": schema or _schema(conn), "truncated": True,
                              key: {k: v for k, v in plain(body).items() if isinstance(v, str | int | float)}
                              if isinstance(body, Mapping) else None}, ensure_ascii=False, default=str)
    conn.execute(sa.text("SELECT pg_notify(:c, :p)"), {"c": CHANNEL, "p": payload})


def notify_readings(conn: sa.Connection, last: Mapping[str, tuple[str, float]], *,
                    schema: str | None = None) -> int:
    """Send the last reading of each sensor, in as few events as fit; returns how many."""
    schema = schema or _schema(conn)
    head = len(json.dumps({"type": "readings", "schema": schema, "sensors": {}}))
    chunk: dict[str, dict] = {}
    size, sent = head, 0
    for sid, (t, v) in last.items():
        item = {"t": t, "v": v}
        n = len(json.dumps({sid: item})) + 1
        if chunk and size + n > MAX_PAYLOAD:
            notify(conn, "readings", "sensors", chunk, schema=schema)
            chunk, size, sent = {}, head, sent + 1
        chunk[sid] = item
        size += n
    if chunk:
        notify(conn, "readings", "sensors", chunk, schema=schema)
        sent += 1
    return sent
