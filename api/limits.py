"""How much work the server does at once: synchronous analyses and table readings.

Every analysis run in a request (``POST /processes/{id}/execution`` without
``Prefer: respond-async``, a proposal's submission or re-check, its shape for the viewer) and
every table read in a request (``POST /proposals/tables``, an upload's size check, an
as-built's data checks) takes a slot of :class:`WorkLimits` for as long as it runs:

- each user has ``TWIN_ANALYSES_PER_USER`` slots, the server process ``TWIN_ANALYSES_GLOBAL``;
- a whole-network ("heavy") analysis also counts against ``TWIN_HEAVY_PER_USER``, as jobs do.

A request finding no free slot waits up to :data:`WAIT_S` for one (a shutoff takes
milliseconds: a burst of them queues rather than fails), then is refused with
:class:`twin.errors.TooBusy` (429 with ``Retry-After``). Only as many requests wait as there
are slots, per user and in all; the others are refused at once, so refused work never holds
the server's threads. A heavy run over its own limit is refused at once too: it would not
finish within the wait. The slots are per server process (``TWIN_WORKERS`` processes have as
many sets); checking one costs a lock and a few counters.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import anyio.to_thread
from fastapi import Request

from twin.errors import Overloaded, TooBusy
from twin.settings import TwinSettings

__all__ = ["WorkLimits", "work_limits", "WAIT_S", "RETRY_AFTER_S", "HeavyPool", "request_threads"]

#: How long (s) a request waits for a free slot before it is refused.
WAIT_S = 1.0
#: The ``Retry-After`` (s) of a refusal: about one proposal check.
RETRY_AFTER_S = 2


class WorkLimits:
    """Slots for synchronous work: per user, in all, and for a user's heavy analyses."""

    def __init__(self, per_user: int, total: int, heavy_per_user: int, *, wait_s: float = WAIT_S) -> None:
        self.per_user, self.total, self.heavy_per_user, self.wait_s = per_user, total, heavy_per_user, wait_s
        self._cond = threading.Condition()
        self._running: Counter[str] = Counter()
        self._heavy: Counter[str] = Counter()
        self._waiting: Counter[str] = Counter()

    @classmethod
    def from_settings(cls, settings: TwinSettings) -> WorkLimits:
        """The limits a deployment sets (TWIN_ANALYSES_PER_USER, TWIN_ANALYSES_GLOBAL, TWIN_HEAVY_PER_USER)."""
        return cls(settings.analyses_per_user, settings.analyses_global, settings.heavy_per_user)

    @contextmanager
    def slot(self, owner: str, *, heavy: bool = False) -> Iterator[None]:
        """Hold a slot of ``owner`` while the block runs; TooBusy when none comes free in time."""
        with self._cond:
            self._admit(owner, heavy)
            self._running[owner] += 1
            self._heavy[owner] += int(heavy)
        try:
            yield
        finally:
            with self._cond:
                self._running[owner] -= 1
                self._heavy[owner] -= int(heavy)
                self._running += Counter()  # drops users at zero: the counters stay small
                self._heavy += Counter()
                self._cond.notify_all()

    def running(self) -> int:
        """Slots taken now, for all users."""
        with self._cond:
            return sum(self._running.values())

    def _admit(self, owner: str, heavy: bool) -> None:
        """Return once ``owner`` may start (the lock held), waiting a moment if need be; else TooBusy."""
        self._heavy_check(owner, heavy)
        busy = self._busy(owner)
        if busy is None:
            return
        if self._waiting[owner] >= self.per_user or sum(self._waiting.values()) >= self.total:
            raise self._refusal(*busy)
        deadline = time.monotonic() + self.wait_s
        self._waiting[owner] += 1
        try:
            while busy is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._refusal(*busy)
                self._cond.wait(left)
                self._heavy_check(owner, heavy)
                busy = self._busy(owner)
        finally:
            self._waiting[owner] -= 1
            self._waiting += Counter()

    def _heavy_check(self, owner: str, heavy: bool) -> None:
        """Refuse at once a heavy run over the user's heavy limit: it would not finish within the wait."""
        if heavy and self._heavy[owner] >= self.heavy_per_user:
            raise self._refusal(f"{owner} already runs {self.heavy_per_user} heavy analyses; wait for one to "
                                "finish (or run it as a job: Prefer: respond-async)",
                                f"{owner} 已在运行 {self.heavy_per_user} 个大型分析；请等其中一个完成"
                                "（或作为作业提交：Prefer: respond-async）")

    def _busy(self, owner: str) -> tuple[str, str] | None:
        """Why ``owner`` cannot start now (in English and Chinese), or None."""
        if self._running[owner] >= self.per_user:
            return (f"{owner} already runs {self.per_user} analyses or table readings at once "
                    "(TWIN_ANALYSES_PER_USER); wait for one to finish",
                    f"{owner} 已同时运行 {self.per_user} 个分析或表格读取（TWIN_ANALYSES_PER_USER）；"
                    "请等其中一个完成")
        if sum(self._running.values()) >= self.total:
            return (f"the server already runs {self.total} analyses or table readings at once "
                    "(TWIN_ANALYSES_GLOBAL); try again in a moment",
                    f"服务器已同时运行 {self.total} 个分析或表格读取（TWIN_ANALYSES_GLOBAL）；请稍后再试")
        return None

    @staticmethod
    def _refusal(message: str, zh: str) -> TooBusy:
        return TooBusy(message, retry_after=RETRY_AFTER_S, zh=zh)


def work_limits(request: Request) -> WorkLimits:
    """The app's work limits (made in its lifespan)."""
    return request.app.state.work_limits


# -- threads: requests, and heavy work apart --------------------------------------------------------
def request_threads(settings: TwinSettings) -> None:
    """Size the event loop's default thread pool (sync routes, sign-in look-ups) to TWIN_THREADS.

    Called in the app's lifespan, on the loop that serves: anyio keeps one pool per loop. Its
    waiters are served first come, first served.
    """
    anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads


class HeavyPool:
    """Heavy work (whole-network analyses, documents) on threads of its own.

    At most ``threads`` run at once, apart from the request threads, so a page of features never
    waits behind a long analysis. A heavy request waits up to ``deadline_s`` for a thread, in
    order of arrival; then it is refused with :class:`twin.errors.Overloaded` (503 with
    ``Retry-After``) rather than kept waiting for minutes. Made in the app's lifespan.
    """

    def __init__(self, threads: int, deadline_s: float) -> None:
        self.threads, self.deadline_s = threads, deadline_s
        self._slots = anyio.CapacityLimiter(threads)  # who may start: waited for with a deadline
        self._threads = anyio.CapacityLimiter(threads)  # the threads they run on (never waited for)

    @classmethod
    def from_settings(cls, settings: TwinSettings) -> HeavyPool:
        """TWIN_HEAVY_THREADS threads, TWIN_HEAVY_DEADLINE_S of waiting."""
        return cls(settings.heavy_threads, settings.heavy_deadline_s)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on a heavy thread, once one is free within the deadline; Overloaded otherwise."""
        try:
            with anyio.fail_after(self.deadline_s):
                await self._slots.acquire()
        except TimeoutError:
            raise Overloaded(
                f"the server's {self.threads} threads for heavy work (whole-network analyses, "
                f"documents) stayed busy for {self.deadline_s:g} s "
                "(TWIN_HEAVY_DEADLINE_S); retry later, or run it as a job (Prefer: respond-async)",
                retry_after=math.ceil(self.deadline_s),
                zh=f"服务器繁忙：用于大型计算（全网分析、文档）的 {self.threads} 个线程在 {self.deadline_s:g} 秒内"
                "一直占满（TWIN_HEAVY_DEADLINE_S）；请稍后重试，或作为作业提交（Prefer: respond-async）") from None
        try:
            return await anyio.to_thread.run_sync(fn, *args, limiter=self._threads)
        finally:
            self._slots.release()

    def busy(self) -> int:
        """Heavy threads in use now."""
        return int(self._slots.borrowed_tokens)


def heavy_pool(request: Request) -> HeavyPool:
    """The app's heavy pool (made in its lifespan)."""
    return request.app.state.heavy
