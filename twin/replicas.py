"""Reads on hot standbys, writes on the primary: engines, health and read-your-writes by LSN.

:class:`ReadRouter` holds one engine per read replica (``TWIN_READ_DATABASE_URLS``, or the
private cluster's local standby, see :func:`twin.pgcluster.read_urls`) beside the primary's.

* **Choice**: round robin over the replicas that are up.
* **Read-your-writes**: after a user's write, :meth:`ReadRouter.note_write` keeps the primary's
  ``pg_current_wal_insert_lsn()`` for that user (a bounded map, per process). That user's reads
  go to a replica only once its ``pg_last_wal_replay_lsn()`` (cached for a few milliseconds)
  has reached it; the router waits up to ``wait_s`` for one, then reads from the primary.
* **Failure**: a connection error on a replica marks it down for ``down_s`` seconds (no reads
  are sent there meanwhile) and flags the read under way (:class:`ReadAttempt`), which the
  server then runs again on the primary (:class:`api.reads.ReadRouting`).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy import event

from twin.db import SERVER_POOL_SIZE, make_engine
from twin.pgcluster import read_urls
from twin.settings import TwinSettings

__all__ = ["ReadRouter", "ReadAttempt", "read_attempt", "Replica", "replica_engines"]

log = logging.getLogger(__name__)

_WRITE_LSN = sa.text("SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint")
#: SQLSTATEs of a server going away: admin shutdown, crash shutdown, cannot connect now.
_GONE = ("57P01", "57P02", "57P03")
_REPLAY_LSN = sa.text("SELECT (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint")


@dataclass
class ReadAttempt:
    """One request's read: the replica it used and whether that replica failed under it.
    ``primary_only`` sends every read of the attempt to the primary (the retry)."""

    primary_only: bool = False
    replica: Replica | None = None
    failed: bool = False


_attempt: ContextVar[ReadAttempt | None] = ContextVar("twin_read_attempt", default=None)


@contextmanager
def read_attempt(primary_only: bool = False) -> Iterator[ReadAttempt]:
    """Track the reads run inside (threads started from here inherit it)."""
    attempt = ReadAttempt(primary_only=primary_only)
    token = _attempt.set(attempt)
    try:
        yield attempt
    finally:
        _attempt.reset(token)


@dataclass(eq=False)
class Replica:
    """One read replica: its engine, when it may be tried again, its last replay LSN seen."""

    name: str
    engine: sa.Engine
    down_until: float = 0.0
    replay_lsn: int = -1
    replay_at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def up(self, now: float) -> bool:
        return now >= self.down_until


def replica_engines(settings: TwinSettings, **engine_args: object) -> list[tuple[str, sa.Engine]]:
    """An engine per read replica (name without password, engine), made like the primary's."""
    out = []
    for url in read_urls(settings):
        engine = make_engine(settings.model_copy(update={"database_url": url}), **engine_args)
        out.append((engine.url.render_as_string(hide_password=True), engine))
    return out


class ReadRouter:
    """Which engine a read uses; see the module's description."""

    def __init__(self, primary: sa.Engine, replicas: list[tuple[str, sa.Engine]], *,
                 down_s: float = 5.0, lsn_ttl_s: float = 0.005, wait_s: float = 0.03,
                 max_users: int = 10_000) -> None:
        self.primary = primary
        self.replicas = [Replica(name, engine) for name, engine in replicas]
        self.down_s, self.lsn_ttl_s, self.wait_s, self.max_users = down_s, lsn_ttl_s, wait_s, max_users
        self._writes: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()
        self._turn = itertools.count()
        self.retries = 0  # reads run again on the primary after their replica failed
        for replica in self.replicas:
            self._watch(replica)

    @classmethod
    def from_settings(cls, settings: TwinSettings, primary: sa.Engine) -> ReadRouter:
        """The server's router: replicas of ``settings`` with the server's pool and timeout.

        Reads run in autocommit (no BEGIN and ROLLBACK round trips around each one); give
        ``primary`` so too (``engine.execution_options(isolation_level="AUTOCOMMIT")``).
        """
        engines = replica_engines(settings, statement_timeout_s=settings.statement_timeout_s,
                                  parallel_query=False, isolation_level="AUTOCOMMIT",
                                  pool_size=SERVER_POOL_SIZE, max_overflow=SERVER_POOL_SIZE)
        if engines:
            log.info("reads go to %d replica(s): %s", len(engines), ", ".join(n for n, _ in engines))
        return cls(primary, engines)

    def _watch(self, replica: Replica) -> None:
        @event.listens_for(replica.engine, "handle_error")
        def failed(context: sa.engine.ExceptionContext) -> None:
            orig = context.original_exception
            state = getattr(orig, "sqlstate", None) or ""
            if context.is_disconnect or state.startswith("08") or state in _GONE or (
                    not state and isinstance(context.sqlalchemy_exception, sa.exc.OperationalError)):
                self.mark_down(replica, orig)  # refused, closed, shut down: libpq gives no sqlstate
            elif state == "40001":  # cancelled by a conflict with recovery: only this read retries
                self._flag(replica)

    def mark_down(self, replica: Replica, reason: object = None) -> None:
        """Send no reads to ``replica`` for a while; the read under way is to be run again."""
        if replica.up(time.monotonic()):
            log.warning("read replica %s is down for %g s: %s", replica.name, self.down_s,
                        str(reason).strip().splitlines()[0] if reason else "")
        replica.down_until = time.monotonic() + self.down_s
        self._flag(replica)

    @staticmethod
    def _flag(replica: Replica) -> None:
        attempt = _attempt.get()
        if attempt is not None and attempt.replica is replica:
            attempt.failed = True

    # -- read-your-writes ---------------------------------------------------------------------
    def note_write(self, user: str) -> None:
        """Remember the primary's WAL position after ``user``'s write (no-op without replicas)."""
        if not self.replicas:
            return
        with self.primary.connect() as conn:
            lsn = int(conn.execute(_WRITE_LSN).scalar())
        with self._lock:
            self._writes[user] = lsn
            self._writes.move_to_end(user)
            while len(self._writes) > self.max_users:
                self._writes.popitem(last=False)

    def _replayed(self, replica: Replica, now: float) -> int:
        """The replica's replay LSN, asked at most every ``lsn_ttl_s`` (-1: it failed)."""
        if now - replica.replay_at > self.lsn_ttl_s:
            with replica.lock:
                if now - replica.replay_at > self.lsn_ttl_s:
                    try:
                        with replica.engine.connect() as conn:
                            replica.replay_lsn = int(conn.execute(_REPLAY_LSN).scalar() or -1)
                    except sa.exc.SQLAlchemyError:
                        replica.replay_lsn = -1  # handle_error has marked it down
                    replica.replay_at = time.monotonic()
        return replica.replay_lsn

    # -- choice ---------------------------------------------------------------------------------
    def engine_for(self, user: str | None) -> sa.Engine:
        """The engine for a read by ``user``: a replica that is up and has replayed the user's
        last write, else the primary."""
        attempt = _attempt.get()
        if not self.replicas or (attempt is not None and attempt.primary_only):
            return self.primary
        with self._lock:
            needed = self._writes.get(user, -1) if user else -1
        deadline = time.monotonic() + self.wait_s
        while True:
            now = time.monotonic()
            start = next(self._turn)
            ring = [self.replicas[(start + i) % len(self.replicas)] for i in range(len(self.replicas))]
            for replica in ring:
                if replica.up(now) and (needed < 0 or self._replayed(replica, now) >= needed):
                    if attempt is not None:
                        attempt.replica = replica
                    return replica.engine
            if needed < 0 or now >= deadline or not any(r.up(now) for r in ring):
                return self.primary
            time.sleep(0.002)

    def status(self) -> list[dict]:
        """Each replica: name, up, last replay LSN seen (and the retries in :attr:`retries`)."""
        now = time.monotonic()
        return [{"name": r.name, "up": r.up(now), "replay_lsn": r.replay_lsn} for r in self.replicas]

    def dispose(self) -> None:
        for replica in self.replicas:
            replica.engine.dispose()
