"""Worker processes that share the connections fairly: one listening socket each (SO_REUSEPORT).

uvicorn's own workers share one listening socket, and an asyncio worker that wakes to a burst
of new connections accepts all of them at once: with 50 viewers connecting after the morning
meeting, one worker took 91 % of the requests on its core while the other sat idle (py-spy,
``bench/api.py --profile``). Here each worker listens on a socket of its own, bound to the same
address with ``SO_REUSEPORT``, and the kernel spreads new connections over the sockets by their
address hash. Linux lets only sockets of the same user join the group, so no other account on
the host can take connections from the server.

The supervision (health pings, a dead worker replaced, SIGHUP restart) is uvicorn's; a
replacement takes over the socket of the worker it replaces.
"""

from __future__ import annotations

import socket

from uvicorn import Config
from uvicorn.supervisors.multiprocess import Multiprocess, Process

__all__ = ["serve_balanced"]


def _reuseport_sockets(config: Config, n: int) -> list[socket.socket]:
    """``n`` sockets bound to the config's address (its port, or one free port for port 0)."""
    family = socket.AF_INET6 if config.host and ":" in config.host else socket.AF_INET
    port = config.port
    sockets = []
    for _ in range(n):
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((config.host, port))
        port = sock.getsockname()[1]
        sock.set_inheritable(True)
        sockets.append(sock)
    return sockets


class _Balanced(Multiprocess):
    """uvicorn's supervisor, with worker ``i`` serving ``self.own[i]`` only."""

    def __init__(self, config: Config, sockets: list[socket.socket]) -> None:
        super().__init__(config, sockets)
        self.own = sockets

    def _spawn(self, idx: int) -> Process:
        process = Process(self.config, [self.own[idx]])
        process.start()
        return process

    def init_processes(self) -> None:
        self.processes = [self._spawn(i) for i in range(len(self.own))]

    def restart_all(self) -> None:
        for idx, old in enumerate(list(self.processes)):
            if self.should_exit.is_set():
                return
            new = self._spawn(idx)
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new.kill()
                new.join()
                return  # keep the old workers
            old.terminate()
            old.join()
            self.processes[idx] = new

    def keep_subprocess_alive(self) -> None:
        # uvicorn's own check, one worker at a time, so that a replacement gets its socket
        for idx in range(len(self.processes)):
            if self.should_exit.is_set():
                return
            self.sockets = [self.own[idx]]
            processes, self.processes = self.processes, [self.processes[idx]]
            try:
                super().keep_subprocess_alive()
            finally:
                processes[idx] = self.processes[0]
                self.processes = processes


def serve_balanced(config: Config) -> None:
    """Run ``config``'s app (an import string) in ``config.workers`` processes, each on its own
    ``SO_REUSEPORT`` socket."""
    sockets = _reuseport_sockets(config, config.workers)
    try:
        _Balanced(config, sockets).run()
    finally:
        for sock in sockets:
            sock.close()
