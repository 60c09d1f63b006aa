"""A real client: CesiumJS in headless Chromium loads the tileset and picks a pipe by its id.

CesiumJS (npm ``cesium``) and the tileset are served from a loopback HTTP server; Debian's
chromium runs headless through Playwright (``executable_path``; no browser download, no
network), WebGL through SwiftShader. Screenshots go to ``test-artifacts/tiles/``.
"""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from pyproj import Transformer

from tests.tiles.conftest import ROOT, tileset_tiles
from tests.tiles.gltf_reader import read_glb
from twin.db import open_twin

CESIUM = ROOT / "node_modules" / "cesium" / "Build" / "Cesium"
ARTIFACTS = ROOT / "test-artifacts" / "tiles"

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><link rel="icon" href="data:,">
<script>window.CESIUM_BASE_URL = '/cesium/';</script>
<script src="/cesium/Cesium.js"></script>
<link rel="stylesheet" href="/cesium/Widgets/widgets.css">
<style>html, body, #map { margin: 0; width: 100%; height: 100%; overflow: hidden; }</style>
</head><body><div id="map"></div>
<script>
window.state = {failed: [], loaded: 0, ready: false};
(async () => {
  const widget = new Cesium.CesiumWidget('map', {baseLayer: false, skyBox: false, skyAtmosphere: false});
  const scene = widget.scene;
  scene.globe.show = false;  // the pipes are underground
  scene.backgroundColor = Cesium.Color.fromCssColorString('#20242a');
  const tileset = await Cesium.Cesium3DTileset.fromUrl('/tiles/tileset.json');
  tileset.tileFailed.addEventListener((e) => state.failed.push(`${e.url}: ${e.message}`));
  tileset.tileLoad.addEventListener(() => { state.loaded += 1; });
  scene.primitives.add(tileset);
  widget.camera.viewBoundingSphere(tileset.boundingSphere,
                                   new Cesium.HeadingPitchRange(0.3, -0.8, tileset.boundingSphere.radius * 2.2));
  window.widget = widget;
  window.tileset = tileset;
  state.ready = true;
})().catch((e) => { window.state.fatal = String(e && e.stack || e); });

window.contentTiles = () => {
  let ready = 0, total = 0;
  const walk = (tile) => {
    if (tile.hasRenderableContent) { total += 1; if (tile.contentReady) ready += 1; }
    tile.children.forEach(walk);
  };
  walk(window.tileset.root);
  return {ready, total};
};

window.pickAt = (x, y, z) => {
  const target = new Cesium.Cartesian3(x, y, z);
  widget.camera.lookAt(target, new Cesium.HeadingPitchRange(0.0, -1.3, 14.0));
};

window.pickCentre = () => {
  const canvas = widget.scene.canvas;
  const picked = widget.scene.pick(new Cesium.Cartesian2(canvas.clientWidth / 2, canvas.clientHeight / 2));
  if (!(picked instanceof Cesium.Cesium3DTileFeature)) return null;
  return {id: picked.getProperty('id'), utility: picked.getProperty('utility'),
          size: picked.getProperty('size'), names: picked.getPropertyIds()};
};
</script></body></html>
"""


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves /cesium/ from node_modules, /tiles/ from the tileset folder and the test page."""

    tiles_dir: Path = Path()

    def translate_path(self, path: str) -> str:
        path = path.split("?", 1)[0].split("#", 1)[0]
        if path.startswith("/cesium/"):
            return str(CESIUM / path.removeprefix("/cesium/"))
        if path.startswith("/tiles/"):
            return str(self.tiles_dir / path.removeprefix("/tiles/"))
        return "/nonexistent"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path in ("/", "/index.html"):
            body = PAGE.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        super().do_GET()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server(demo_tiles):
    tiles_dir, _ = demo_tiles
    handler = type("Handler", (_Handler,), {"tiles_dir": tiles_dir})
    handler.extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                              ".glb": "model/gltf-binary", ".json": "application/json",
                              ".js": "text/javascript", ".wasm": "application/wasm"}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _target_pipe(settings):
    """A large pipe with nothing else within 3 m of its middle: (id, utility, ECEF of its top)."""
    engine = open_twin(settings)
    with engine.connect() as conn:
        row = conn.execute(sa.text("""
            WITH mid AS (SELECT id, utility, diameter_mm,
                                ST_LineInterpolatePoint(geom, 0.5) AS p FROM current_segment
                          WHERE shape = 'circular' AND diameter_mm >= 600)
            SELECT id, utility, ST_X(p), ST_Y(p), ST_Z(p) + diameter_mm / 2000.0 FROM mid
             WHERE NOT EXISTS (SELECT 1 FROM current_segment o WHERE o.id <> mid.id
                                 AND ST_DWithin(ST_Force2D(o.geom), ST_Force2D(mid.p), 3))
               AND NOT EXISTS (SELECT 1 FROM current_node n WHERE ST_DWithin(ST_Force2D(n.geom), ST_Force2D(mid.p), 3))
             ORDER BY diameter_mm DESC, id LIMIT 1""")).one()
    engine.dispose()
    to_ecef = Transformer.from_crs("EPSG:4548", "EPSG:4978", always_xy=True)
    ecef = to_ecef.transform(row[2], row[3], row[4] + settings.geoid_offset_m)
    return row[0], row[1], ecef


def test_cesium_loads_every_tile_and_picks_a_pipe(demo_twin, demo_tiles, server, browser):
    tiles_dir, _ = demo_tiles
    tileset = json.loads((tiles_dir / "tileset.json").read_text())
    n_content = sum(1 for t, _ in tileset_tiles(tileset) if "content" in t)
    # The contents CesiumJS decodes are light tiles (quantized, meshopt-compressed).
    for path in tiles_dir.glob("t/**/*.glb"):
        assert set(read_glb(path).json["extensionsRequired"]) == {"KHR_mesh_quantization",
                                                                  "EXT_meshopt_compression"}
    pipe_id, utility, target = _target_pipe(demo_twin)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    # The session's browser (tests/conftest.py), a page of its own.
    page = browser.new_page(viewport={"width": 1024, "height": 768})
    try:
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server + "/")
        page.wait_for_function("window.state.ready || window.state.fatal", timeout=60_000)
        assert page.evaluate("window.state.fatal") is None
        # City view: the coarse tiles load; then everything, refining all the way down.
        page.wait_for_function("window.tileset.tilesLoaded", timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "cesium-overview.png"))
        page.evaluate("window.tileset.maximumScreenSpaceError = 0.0")
        page.wait_for_function("(() => { const c = window.contentTiles(); "
                               "return window.tileset.tilesLoaded && c.ready === c.total; })()",
                               timeout=90_000)
        counts = page.evaluate("window.contentTiles()")
        assert counts == {"ready": n_content, "total": n_content}
        page.evaluate("window.tileset.maximumScreenSpaceError = 16")
        # Close up on the pipe and pick the feature in the middle of the screen.
        page.evaluate("([x, y, z]) => window.pickAt(x, y, z)", list(target))
        page.wait_for_timeout(300)
        page.wait_for_function("window.tileset.tilesLoaded", timeout=60_000)
        picked = page.evaluate("window.pickCentre()")
        page.screenshot(path=str(ARTIFACTS / "cesium-pick.png"))
        state = page.evaluate("window.state")
    finally:
        page.close()
    assert state["failed"] == [] and state["loaded"] >= n_content
    assert errors == []
    assert picked is not None, "no feature under the screen's centre"
    assert picked["id"] == pipe_id and picked["utility"] == utility
    assert {"id", "utility", "size", "material", "depth_m", "built", "owner", "status"} <= set(picked["names"])
