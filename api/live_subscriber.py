"""The server's subscriber: MQTT readings stored by exactly one server process.

:class:`live.subscriber.Subscriber` keeps a persistent MQTT session under one stable client
id, so nothing the broker keeps at QoS 1 is lost while it is away. With several server workers
(``TWIN_WORKERS``), each would connect under that id and throw the others off; so the workers
elect one: the process holding the PostgreSQL advisory lock ``pipetwin.subscriber.<schema>``
(taken on a connection of its own) runs the subscriber, the others try again every
:data:`RETRY_S` and take over when that process (or its connection) goes away.

Nothing here stops the server: when no broker is configured (no ``TWIN_MQTT_URL`` and the
private broker not running) the host looks again every :data:`RETRY_S`; a broker that is down is
waited for by the subscriber itself (paho reconnects); errors are logged.
"""

from __future__ import annotations

import logging
import threading

import sqlalchemy as sa

from live.subscriber import Subscriber, configured
from twin.settings import TwinSettings

__all__ = ["SubscriberHost", "RETRY_S"]

log = logging.getLogger("pipetwin.api")

#: Seconds between looks for a broker, for the lock, and at the lock's connection.
RETRY_S = 5.0


class SubscriberHost:
    """Run the subscriber in this process while it holds the election lock (see the module)."""

    def __init__(self, settings: TwinSettings, engine: sa.Engine, *, retry_s: float = RETRY_S) -> None:
        self.settings, self.engine, self.retry_s = settings, engine, retry_s
        self.subscriber: Subscriber | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._said: str | None = None

    def start(self) -> SubscriberHost:
        """Start looking for a broker in the background (unless ``TWIN_LIVE_SUBSCRIBER`` is false)."""
        if not self.settings.live_subscriber:
            return self
        self._thread = threading.Thread(target=self._run, name="twin-live-host", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def running(self) -> bool:
        """Whether this process runs the subscriber now."""
        return self.subscriber is not None

    def _say(self, level: int, message: str) -> None:
        """Log a state once, not on every retry."""
        if message != self._said:
            log.log(level, message)
            self._said = message

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if configured(self.settings):
                    self._hold_lock_and_run()
                else:
                    self._say(logging.INFO, "live readings: no MQTT broker (TWIN_MQTT_URL unset and the "
                              "private broker not running: twin broker start); looking again every "
                              f"{self.retry_s:.0f} s")
            except Exception as exc:  # noqa: BLE001 - never let the server's thread die
                self._say(logging.WARNING, f"live readings: the subscriber failed ({exc}); trying again")
            self._stop.wait(self.retry_s)

    def _hold_lock_and_run(self) -> None:
        raw = self.engine.raw_connection()
        conn = raw.driver_connection
        raw.detach()  # the lock lives as long as this connection: not the pool's
        try:
            conn.autocommit = True
            got = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))",
                               (f"pipetwin.subscriber.{self.settings.db_schema}",)).fetchone()[0]
            if not got:
                self._say(logging.INFO, "live readings: another server process runs the subscriber")
                return
            self.subscriber = Subscriber(self.settings, self.engine).start()
            self._say(logging.INFO, "live readings: this process runs the subscriber")
            try:
                # While the lock's connection answers, the lock is ours.
                while not self._stop.wait(self.retry_s):
                    conn.execute("SELECT 1")
            finally:
                self.subscriber.stop()
                self.subscriber = None
        finally:
            conn.close()
