"""`twin serve --workers 2`: each worker listens on a socket of its own (SO_REUSEPORT), so that
the connections of many viewers are spread over the workers, and a worker that dies is replaced
on its own socket (connections the kernel sends there are still answered)."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections import Counter

import psutil
import pytest

from tests.api.conftest import LiveServer, start_server

CONNECTIONS = 24


@pytest.fixture(scope="module")
def two_workers(api_twin, tmp_path_factory) -> LiveServer:
    server = start_server(api_twin, tmp_path_factory.mktemp("workers") / "server.log", workers=2)
    # start_server returns when one worker answers; the other may still be starting
    _wait_for_workers(server, 2, exclude=set())
    yield server
    server.stop()


def _wait_for_workers(server: LiveServer, n: int, exclude: set[int], timeout_s: float = 120) -> set[int]:
    """The pids of ``n`` listening workers, none in ``exclude`` (fails after ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        now = {p.pid for p in _workers(server)}
        if len(now) == n and not now & exclude:
            return now
        time.sleep(0.3)
    pytest.fail(f"not {n} workers listening within {timeout_s:g} s (excluding {exclude}): {now}; "
                f"{server.log.read_text()[-1500:]}")


def _workers(server: LiveServer) -> list[psutil.Process]:
    """The worker processes (uvicorn's children that serve; not multiprocessing's helpers)."""
    port = int(server.url.rsplit(":", 1)[1])
    out = []
    for child in psutil.Process(server.process.pid).children(recursive=True):
        try:
            if any(c.laddr.port == port and c.status == psutil.CONN_LISTEN
                   for c in child.net_connections(kind="tcp")):
                out.append(child)
        except psutil.NoSuchProcess:
            pass
    return out


def _spread(server: LiveServer) -> Counter:
    """Opens CONNECTIONS keep-alive connections, asks /healthz on each, and counts the connections
    each worker holds (by the server side of each connection)."""
    host, port = "127.0.0.1", int(server.url.rsplit(":", 1)[1])
    socks = []
    try:
        for _ in range(CONNECTIONS):
            s = socket.create_connection((host, port), timeout=20)
            s.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            assert s.recv(64).startswith(b"HTTP/1.1 200"), "a connection got no answer"
            socks.append(s)
        mine = {s.getsockname()[1] for s in socks}
        held = Counter()
        for worker in _workers(server):
            held[worker.pid] = sum(1 for c in worker.net_connections(kind="tcp")
                                   if c.raddr and c.raddr.port in mine and c.laddr.port == port)
        return held
    finally:
        for s in socks:
            s.close()


def test_connections_are_spread_over_the_workers(two_workers):
    held = _spread(two_workers)
    assert len(held) == 2, held
    assert sum(held.values()) == CONNECTIONS, held
    # the kernel hashes addresses: with 24 connections both workers get some (all on one: 1e-7)
    assert min(held.values()) >= 1, held


def test_a_dead_worker_is_replaced_on_its_own_socket(two_workers):
    victim = min(_wait_for_workers(two_workers, 2, exclude=set()))
    os.kill(victim, signal.SIGKILL)
    _wait_for_workers(two_workers, 2, exclude={victim})  # replaced
    held = _spread(two_workers)  # every connection answered: none waits on an orphan socket
    assert len(held) == 2 and min(held.values()) >= 1, held
