"""Fixtures of the viewer tests: the demo district behind a real server, and a browser.

The server is `twin serve` on loopback (as a user runs it) over the demo district with its
tileset; the browser is Debian's chromium driven by Playwright (``executable_path``: no
browser download), WebGL through SwiftShader. Each page records console errors, page
errors and failed or refused requests, so a test can assert there were none.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import LiveServer, make_twin, password, start_server
from tests.conftest import drop_schema
from twin.settings import TwinSettings

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "viewer"


@pytest.fixture(scope="session")
def viewer_twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwinSettings]:
    """The demo district (as `make demo` loads it) with its tileset, one user per role."""
    from tiles.build import build_tileset

    settings = make_twin(f"test_viewer_demo_{os.getpid()}", tmp_path_factory.mktemp("viewer_demo"), data="demo")
    build_tileset(settings, full=True, workers=2)
    yield settings
    drop_schema(settings)


@pytest.fixture(scope="session")
def viewer_server(viewer_twin: TwinSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    server = start_server(viewer_twin, tmp_path_factory.mktemp("viewer_live") / "server.log")
    yield server
    server.stop()


@dataclass
class Watch:
    """What went wrong on a page: console errors, page errors, failed, refused and outside requests."""

    origin: str
    console: list[tuple[str, str]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    allowed: set[tuple[int, str]] = field(default_factory=set)

    def attach(self, page) -> None:
        page.on("request", self._request)
        page.on("console", self._console)
        page.on("pageerror", lambda e: self.console.append((f"page error: {e}", "")))
        page.on("requestfailed", lambda r: self.requests.append(f"{r.method} {r.url}: {r.failure}"))
        page.on("response", self._response)

    def _request(self, request) -> None:
        # Nothing but the server: no Cesium ion, no map tiles or fonts from the internet.
        if not request.url.startswith((self.origin + "/", "data:", "blob:")):
            self.requests.append(f"outside the server: {request.method} {request.url}")

    def _console(self, message) -> None:
        if message.type == "error":
            self.console.append((message.text, (message.location or {}).get("url", "")))

    def _response(self, response) -> None:
        if response.status >= 400 and (response.status, httpx.URL(response.url).path) not in self.allowed:
            self.requests.append(f"{response.status} {response.request.method} {response.url}")

    def allow(self, status: int, path: str) -> None:
        """An error answer the test provokes on purpose (the browser also logs it to the console)."""
        self.allowed.add((status, path))

    def _expected(self, text: str, url: str) -> bool:
        return (text.startswith("Failed to load resource: the server responded with a status of ")
                and any(text.endswith(f"status of {s} ({httpx.codes.get_reason_phrase(s)})")
                        and httpx.URL(url).path == p for s, p in self.allowed))

    def problems(self) -> list[str]:
        return [t for t, u in self.console if not self._expected(t, u)] + self.requests


def api_token(server: LiveServer, role: str) -> str:
    r = httpx.post(server.url + "/token", data={"username": role, "password": password(role)}, timeout=30)
    r.raise_for_status()
    return r.json()["access_token"]


def api_post(server: LiveServer, token: str, path: str, body: dict, **params) -> httpx.Response:
    return httpx.post(server.url + path, json=body, params=params, headers={"Authorization": f"Bearer {token}"},
                      timeout=60)


def sign_in_page(page, server: LiveServer, role: str) -> None:
    """Open the viewer in ``page`` and sign in as the user of ``role`` (its form, as a person)."""
    page.goto(server.url + "/")
    page.fill("#signin-user", role)
    page.fill("#signin-password", password(role))
    page.click("#signin-form button[type=submit]")


#: The colour of a pipe a thematic map has no class for (style.js).
NO_CLASS = "#7f7f7f"
#: Each drawn pipe's colour (fittings and abandoned pipes left out): {id: '#rrggbb'}.
FEATURE_COLOURS_JS = """() => {
  const t = window.twinViewer.world.tileset, seen = {};
  for (const tile of t._selectedTiles) {
    const c = tile.content;
    for (let i = 0; c && i < c.featuresLength; i += 1) {
      const f = c.getFeature(i);
      if (f.getProperty('kind') !== undefined || f.getProperty('status') === 'abandoned') continue;
      seen[String(f.getProperty('id'))] = f.color.toCssHexString().slice(0, 7).toLowerCase();
    }
  }
  return seen;
}"""


def theme_in_the_browser(page, name: str, theme: dict, *, none: str = "无数据") -> None:
    """The class map's classes (and what the pipes without one are) in the legend; one colour per
    class on the drawn features; the chip's × ends it."""
    if not page.evaluate("document.body.classList.contains('layers-open')"):
        page.click("#toggle-layers")
    page.click(f"[data-colour={name}]")
    page.wait_for_function("(n) => window.twinViewer.display.colourBy === n", arg=name, timeout=90_000)
    assert theme["title"]["zh"] in page.inner_text("#chips [data-chip=theme]")
    legend = page.inner_text("[data-role=legend]")
    used = [c for c, n in zip(theme["classes"], theme["counts"], strict=True) if n]
    assert all(c["zh"] in legend for c in used) and none in legend, (legend, used)
    deadline = time.monotonic() + 60
    while True:  # the style reaches the features over the next rendered frames (slow in software)
        by_class: dict[int, set[str]] = {}
        others = set()
        for fid, css in page.evaluate(FEATURE_COLOURS_JS).items():
            if fid in theme["features"]:
                by_class.setdefault(theme["features"][fid], set()).add(css)
            else:
                others.add(css)
        if (by_class and all(len(v) == 1 for v in by_class.values())) or time.monotonic() > deadline:
            break
        page.wait_for_timeout(500)
    assert by_class and all(len(v) == 1 for v in by_class.values()), by_class
    assert others <= {NO_CLASS}, others  # the pipes without a class: grey
    assert len({next(iter(v)) for v in by_class.values()}) == len(by_class)
    page.screenshot(path=str(ARTIFACTS / f"theme-{name}.png"))
    page.click("#chips [data-chip=theme] .chip-close")
    assert page.evaluate("window.twinViewer.display.colourBy") == "utility"
    assert not page.query_selector("#chips [data-chip=theme]")
