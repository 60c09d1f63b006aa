"""Live events of one server process: PostgreSQL ``NOTIFY twin_live`` fanned out to SSE streams.

The subscriber (:mod:`live.subscriber`, in whichever process holds the broker) stores readings
or raises an alarm and sends ``NOTIFY twin_live, '<json>'`` (:mod:`live.events`: ``{"type":
"readings" | "alarm" | "burst", "schema": ..., ...}``). Every server process has one
:class:`LiveHub`: a thread holding one connection that LISTENs on the channel (opened with the
first stream, so a server nobody watches live holds none), keeps the events of its own twin
(``schema``) and hands each to the asyncio queue of every open stream as an SSE event named by
its ``type``.

- A stream's queue is bounded (:data:`QUEUE_SIZE`): a client that does not read fast enough
  is dropped (its stream ends with an ``event: dropped``; the viewer reconnects), never the
  server.
- A user has at most :data:`STREAMS_PER_USER` streams at once, the process
  :data:`STREAMS_TOTAL` (:class:`twin.errors.TooBusy`, 429, beyond).
- A lost database connection is opened again in the background (1 s, then up to 30 s
  between tries); streams stay open meanwhile and resume when it is back.
- uvicorn waits for open responses before it shuts down, and a live stream never ends by
  itself: in the server's main thread the hub chains SIGINT and SIGTERM to end its streams
  first (:meth:`LiveHub.end_streams_on_exit`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import sqlalchemy as sa

from live.events import CHANNEL
from twin.errors import TooBusy

__all__ = ["CHANNEL", "LiveHub", "Stream", "sse_event", "sse_events", "QUEUE_SIZE", "STREAMS_PER_USER", "STREAMS_TOTAL"]

log = logging.getLogger("pipetwin.api")

#: Events a stream may have waiting before its client counts as too slow and is dropped.
QUEUE_SIZE = 1000
#: Live streams one user may hold open at once (a few tabs), and the process in all.
STREAMS_PER_USER = 4
STREAMS_TOTAL = 200
#: Seconds between heartbeats (an SSE comment) on a quiet stream: proxies keep it open.
HEARTBEAT_S = 15.0
#: A stream ends after this long (s); the client opens a new one with its current token, so a
#: stream never outlives the sign-in that opened it by more than this.
MAX_STREAM_S = 600.0
#: How often (s) the listening thread looks up from the connection to see if it should stop.
_POLL_S = 0.5


@dataclass(eq=False)
class Stream:
    """One client's live stream: its user and the queue of payloads waiting for it."""

    user: str
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE + 1))
    dropped: bool = False

    def put(self, payload: str | None) -> None:
        """Called in the stream's event loop: queue a payload, or drop a client that lags."""
        if self.dropped:
            return
        if self.queue.qsize() >= QUEUE_SIZE:
            self.dropped = True
            payload = None
        self.queue.put_nowait(payload)


class LiveHub:
    """LISTEN on :data:`CHANNEL` in one thread and fan the payloads out to the open streams."""

    def __init__(self, engine: sa.Engine, schema: str, *, per_user: int = STREAMS_PER_USER,
                 total: int = STREAMS_TOTAL) -> None:
        self.engine, self.schema, self.per_user, self.total = engine, schema, per_user, total
        self._lock = threading.Lock()
        self._streams: set[Stream] = set()
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None
        self._signals_chained = False
        self.delivered = 0

    # -- streams ---------------------------------------------------------------------------------
    def open(self, user: str) -> Stream:
        """A new stream of ``user`` in the running event loop; TooBusy over the limits."""
        with self._lock:
            mine = Counter(s.user for s in self._streams)[user]
            if mine >= self.per_user:
                raise TooBusy(f"{user} already has {self.per_user} live streams open; "
                              "close a tab", retry_after=5,
                              zh=f"{user} 同时打开的实时连接已达 {self.per_user} 个；请关闭一个标签页")
            if len(self._streams) >= self.total:
                raise TooBusy(f"the server already serves {self.total} live streams; try again later",
                              retry_after=30,
                              zh=f"服务器已在提供 {self.total} 个实时连接；请稍后再试")
            stream = Stream(user, asyncio.get_running_loop())
            self._streams.add(stream)
            if self._thread is None or not self._thread.is_alive():
                self._stop.clear()
                self._thread = threading.Thread(target=self._listen, name="twin-live-listen", daemon=True)
                self._thread.start()
                self.end_streams_on_exit()
        return stream

    def close(self, stream: Stream) -> None:
        with self._lock:
            self._streams.discard(stream)

    def streams(self) -> int:
        with self._lock:
            return len(self._streams)

    def wait_listening(self, timeout: float) -> bool:
        """Whether the thread LISTENs (for tests and benchmarks: events before that are missed)."""
        return self._listening.wait(timeout)

    def stop(self) -> None:
        """End the listening thread and every stream (the server shuts down)."""
        self._stop.set()
        self.end_streams()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def end_streams(self) -> None:
        """End every open stream (its client sees ``event: dropped`` and may reconnect)."""
        with self._lock:
            streams, self._streams = list(self._streams), set()
        for s in streams:
            _call(s, None)

    def end_streams_on_exit(self) -> None:
        """On SIGINT or SIGTERM end the streams, then do what the signal did before (uvicorn's
        shutdown). Only in the main thread (uvicorn's); the in-process test client has none."""
        if self._signals_chained or threading.current_thread() is not threading.main_thread():
            return
        self._signals_chained = True
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)

            def handler(signum, frame, previous=previous) -> None:
                # A thread of its own: the handler may interrupt this thread inside the lock.
                threading.Thread(target=self.end_streams, name="twin-live-end", daemon=True).start()
                if callable(previous):
                    previous(signum, frame)

            signal.signal(sig, handler)

    # -- the listening thread --------------------------------------------------------------------
    def _listen(self) -> None:
        delay = 1.0
        while not self._stop.is_set():
            try:
                self._listen_once()
                delay = 1.0
            except Exception as exc:  # noqa: BLE001 - any failure: log it and connect again
                self._listening.clear()
                log.warning("live events: the database connection failed (%s); again in %.0f s", exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)

    def _listen_once(self) -> None:
        raw = self.engine.raw_connection()
        conn = raw.driver_connection
        raw.detach()  # held for as long as the server runs: not the pool's any more
        try:
            conn.autocommit = True
            conn.execute(f"LISTEN {CHANNEL}")
            self._listening.set()
            while not self._stop.is_set():
                for note in conn.notifies(timeout=_POLL_S):
                    event = sse_event(note.payload, self.schema)
                    if event:
                        self._fan_out(event)
                    if self._stop.is_set():
                        break
        finally:
            self._listening.clear()
            conn.close()

    def _fan_out(self, payload: str) -> None:
        with self._lock:
            streams = list(self._streams)
        for s in streams:
            _call(s, payload)
        self.delivered += 1


def _call(stream: Stream, payload: str | None) -> None:
    try:
        stream.loop.call_soon_threadsafe(stream.put, payload)
    except RuntimeError:  # its loop has closed: the stream is gone
        pass


def sse_event(payload: str, schema: str) -> str | None:
    """The SSE event of a NOTIFY payload of twin ``schema``: its ``type`` names the event;
    None for another twin's event or a payload that is not a JSON object.

    >>> sse_event('{"type": "alarm", "schema": "twin", "alarm": {"id": 1}}', "twin")
    'event: alarm\\ndata: {"type": "alarm", "schema": "twin", "alarm": {"id": 1}}\\n\\n'
    >>> sse_event('{"type": "alarm", "schema": "other"}', "twin") is None
    True
    """
    try:
        doc = json.loads(payload)
        kind, where = doc.get("type"), doc.get("schema")
    except (ValueError, AttributeError):
        log.warning("live events: a payload that is not a JSON object was ignored")
        return None
    if where != schema:
        return None
    name = kind if isinstance(kind, str) and kind.isidentifier() else "message"
    return f"event: {name}\ndata: {payload}\n\n"


async def sse_events(hub: LiveHub, stream: Stream, *, heartbeat_s: float = HEARTBEAT_S,
                     max_s: float = MAX_STREAM_S) -> AsyncIterator[str]:
    """The text of an SSE stream: a hello, then events, heartbeats, and an end the client sees."""
    end = time.monotonic() + max_s
    try:
        yield f"retry: 2000\nevent: hello\ndata: {json.dumps({'user': stream.user})}\n\n"
        while (left := end - time.monotonic()) > 0:
            try:
                payload = await asyncio.wait_for(stream.queue.get(), min(heartbeat_s, left))
            except TimeoutError:
                yield ": heartbeat\n\n"
                continue
            if payload is None:
                yield 'event: dropped\ndata: {"reason": "too slow or server stopping"}\n\n'
                return
            yield payload
        yield 'event: renew\ndata: {"reason": "open a new stream with the current token"}\n\n'
    finally:
        hub.close(stream)
