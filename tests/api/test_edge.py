"""The server's edge: sign-in before the body, body limits per kind of route, security headers,
Host and proxy headers, credentials kept out of the access log. Against a real server process
where it matters (memory, time), in process otherwise."""

from __future__ import annotations

import logging
import socket
import time
from urllib.parse import urlsplit

import httpx
import psutil
import pytest

from api.middleware import redact_query
from tests.api.conftest import Api, LiveServer, sign_in

BIG = 30_000_000


def _raw_post(url: str, path: str, length: int, send_bytes: int, headers: str = "") -> tuple[str, float]:
    """POST announcing ``length`` bytes, sending ``send_bytes`` of them; the status line and the seconds."""
    parts = urlsplit(url)
    t0 = time.perf_counter()
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as s:
        s.sendall((f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                   f"Content-Length: {length}\r\n{headers}\r\n").encode())
        chunk = b" " * 65536
        sent = 0
        try:
            while sent < send_bytes:
                s.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass  # the server answered and closed: what we want
        data = b""
        while b"\r\n" not in data:
            more = s.recv(4096)
            if not more:
                break
            data += more
    return data.split(b"\r\n", 1)[0].decode(), time.perf_counter() - t0


@pytest.mark.parametrize("path", ["/view/transform", "/processes/hazards/execution"])
def test_a_big_body_without_a_token_is_refused_at_once(live_server: LiveServer, path: str) -> None:
    server = psutil.Process(live_server.process.pid)
    before = server.memory_info().rss
    status, seconds = _raw_post(live_server.url, path, BIG, BIG)
    after = server.memory_info().rss
    assert " 401 " in status + " ", status
    assert seconds < 1.0, seconds
    assert after - before < 20e6, (before, after)


def test_a_big_json_body_with_a_token_is_413_before_it_is_read(live_server: LiveServer) -> None:
    with httpx.Client(base_url=live_server.url) as client:
        auth = sign_in(client, "viewer")["Authorization"]
    status, seconds = _raw_post(live_server.url, "/processes/hazards/execution", BIG, 0,
                                headers=f"Authorization: {auth}\r\n")
    assert " 413 " in status + " ", status
    assert seconds < 1.0


def test_json_routes_have_the_small_limit_and_uploads_the_large_one(api: Api) -> None:
    body = b'{"inputs": {"at": [0, 0]}, "pad": "' + b"x" * 2_100_000 + b'"}'
    r = api.post("/processes/hazards/execution", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "TOO_LARGE"
    # 3 MB of CSV to the upload route passes the body limit (the survey check then rejects it).
    csv = b"point_id,x,y\n" + b"P,1,2\n" * 500_000
    r = api.post("/proposals/tables", "editor", files={"points": ("p.csv", csv, "text/csv"),
                                                      "segments": ("s.csv", csv, "text/csv")})
    assert r.status_code != 413, r.text


def test_security_headers_on_every_answer(api: Api) -> None:
    for r in (api.client.get("/healthz"), api.client.get("/"), api.get("/collections"),
              api.client.get("/collections"), api.client.get("/viewer/js/main.js")):
        h = r.headers
        assert "frame-ancestors 'none'" in h["content-security-policy"], r.url
        assert "script-src 'self'" in h["content-security-policy"]
        assert h["x-content-type-options"] == "nosniff"
        assert h["referrer-policy"] == "no-referrer"


def test_the_token_is_not_stored(api: Api) -> None:
    r = api.client.post("/token", data={"username": "viewer", "password": "viewer-password"})
    assert r.status_code == 200
    assert "no-store" in r.headers["cache-control"]


def test_host_must_be_one_the_server_answers_to(api: Api, live_server: LiveServer) -> None:
    r = api.get("/collections", headers={"Host": "evil.example"})
    assert r.status_code == 400 and r.json()["code"] == "BAD_HOST"
    # A real server ignores X-Forwarded-* from a client that is not a trusted proxy.
    with httpx.Client(base_url=live_server.url) as client:
        headers = sign_in(client, "viewer")
        r = client.get("/collections", headers={**headers, "X-Forwarded-Host": "evil.example",
                                                "X-Forwarded-Proto": "https"})
    assert r.status_code == 200
    assert "evil.example" not in r.text and "https://" not in r.text


def test_credentials_are_redacted_from_the_access_log(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    token = api.headers["viewer"]["Authorization"].split()[1]
    with caplog.at_level(logging.INFO, logger="pipetwin.access"):
        api.client.get(f"/collections?access_token={token}&f=json")
        api.client.get(f"/collections?x={token}")
    logged = " ".join(str(getattr(r, "query", "")) for r in caplog.records)
    assert token not in logged and "***" in logged


@pytest.mark.parametrize(("query", "redacted"), [
    ("token=abc&f=json", "token=***&f=json"),
    ("API_KEY=ptk_123", "API_KEY=***"),
    ("q=ptk_secret", "q=***"),
    ("limit=10", "limit=10"),
])
def test_redact_query(query: str, redacted: str) -> None:
    assert redact_query(query) == redacted
