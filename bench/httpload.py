"""A light HTTP/1.1 keep-alive client for load benchmarks: one connection per simulated client.

httpx costs the load generator several CPU milliseconds per request; on a 2-core machine that
shares its cores with both servers and PostgreSQL, it takes a large part of the CPU the servers
compete for and narrows every ratio between them. This client parses only what a benchmark
needs (status, Content-Length or chunked body) on asyncio streams.
"""

from __future__ import annotations

import asyncio
import json
from urllib.parse import urlsplit

__all__ = ["Connection", "TransportError"]


class TransportError(Exception):
    """The connection failed or the answer was not HTTP/1.1 as expected."""


class Connection:
    """One keep-alive connection to ``base_url`` (http only); reconnects when the server closes."""

    def __init__(self, base_url: str) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
            self.reader = self.writer = None

    async def request(self, method: str, path: str, body: dict | None = None,
                      headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """Send one request and read its whole answer: (status, body)."""
        data = json.dumps(body).encode() if body is not None else b""
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Accept: */*"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(data)}"]
        raw = ("\r\n".join(head) + "\r\n\r\n").encode() + data
        for attempt in (0, 1):  # a keep-alive connection the server closed: open a new one once
            try:
                if self.writer is None:
                    await self._open()
                self.writer.write(raw)
                return await self._answer()
            except (OSError, asyncio.IncompleteReadError, TransportError) as exc:
                await self.close()
                if attempt:
                    raise TransportError(type(exc).__name__) from exc
        raise AssertionError("unreachable")

    async def _answer(self) -> tuple[int, bytes]:
        reader = self.reader
        status_line = await reader.readline()
        if not status_line:
            raise TransportError("connection closed")
        status = int(status_line.split(b" ", 2)[1])
        length, chunked, close = None, False, False
        while True:
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                close = True
        if chunked:
            parts = []
            while True:
                size = int((await reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await reader.readline()
                    break
                parts.append(await reader.readexactly(size))
                await reader.readline()
            body = b"".join(parts)
        else:
            body = await reader.readexactly(length) if length else b""
        if close:
            await self.close()
        return status, body
