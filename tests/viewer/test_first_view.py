"""The first picture after the sign-in (issue 22, 定位 Orientation), in zh-CN at 1280×800.

- The first tile's pipes are on screen within a bound generous for CI (software WebGL on shared
  cores): measured from the sign-in click to the browser's next frame after the viewer's frame
  with the first tile (software WebGL draws a frame after its events, while the page waits).
- They are the tiles' pipes: the map's pixels change where the tileset is hidden.
- None of what held it back in software WebGL happens: no shader of image-based lighting is
  compiled (the BRDF table is made in JavaScript, the tileset's sky map is off: seconds of
  shader compilation and GPU integration each), and the translucent ground's shader (the largest
  of the scene) is compiled only after the first pipes were drawn; the ground and FXAA are on
  once the view is ready.

The times go to ``test-artifacts/viewer/first-view.json``, the map in the first pipes' frame to
``first-view.png``.
"""

from __future__ import annotations

import base64
import json
import time

from tests.api.conftest import LiveServer, password
from tests.viewer.conftest import ARTIFACTS, Watch

SIZE = {"width": 1280, "height": 800}
TIMEOUT_MS = 90_000
#: Sign-in click to the first pipes on screen. Measured 3 to 6 s on the 2-core machine at load
#: average 0 to 10 (it was 17 to 37 s before the BRDF table and the sky map were dropped).
FIRST_PIPES_BOUND_S = 30.0

#: Before the page's scripts: which shaders the page compiles, and when (performance.now()), by a
#: name in their source; and the first animation frame after the viewer's first-pipes frame.
PROBE_JS = """(() => {
  const marks = { brdf: 'integrateBrdf', skyMap: 'getCubeMapDirection', skyFilter: 'u_radianceTexture',
                  harmonics: 'computeShBasis', ground: 'u_initialColor' };
  window.__shaders = [];
  for (const C of [WebGLRenderingContext, WebGL2RenderingContext]) {
    const source = C.prototype.shaderSource;
    C.prototype.shaderSource = function (shader, text) {
      for (const [name, mark] of Object.entries(marks)) {
        if (text.includes(mark)) window.__shaders.push({ name, at: performance.now() });
      }
      return source.call(this, shader, text);
    };
  }
  let picture = null;
  const probe = () => {
    const v = window.twinViewer;
    if (v && v.world.scene && !picture) {
      // the viewer's first frame with a tile, as drawn (read in the frame, before it is shown)
      picture = v.world.scene.postRender.addEventListener(() => {
        if (!v.timing.firstTileVisible || window.__firstPipesPicture) return;
        window.__firstPipesPicture = v.world.scene.canvas.toDataURL('image/png');
        picture();
      });
    }
    if (v && v.timing.firstPipesFrame && !window.__firstPipesShown) window.__firstPipesShown = performance.now();
    else requestAnimationFrame(probe);
  };
  requestAnimationFrame(probe);
})();"""

#: How many pixels of the map the tileset draws: the map read back right after a render with the
#: tileset shown and hidden, each once two frames in a row are the same (everything else, the
#: overview lines included, stays; the ground is off meanwhile, its terrain may still be loading).
TILESET_PIXELS_JS = """async () => {
  const world = window.twinViewer.world;
  const scene = world.scene;
  scene.globe.show = false;
  const read = () => new Promise((resolve) => {
    const h = scene.postRender.addEventListener(() => {
      h();
      resolve(scene.context.readPixels({ x: 0, y: 0, width: scene.drawingBufferWidth, height: scene.drawingBufferHeight }));
    });
    scene.requestRender();
  });
  const differ = (a, b) => {
    let n = 0;
    for (let i = 0; i < a.length; i += 4) {
      if (Math.max(Math.abs(a[i] - b[i]), Math.abs(a[i + 1] - b[i + 1]), Math.abs(a[i + 2] - b[i + 2])) > 40) n += 1;
    }
    return n;
  };
  const still = async () => { // until two frames in a row are the same (entities are built over frames)
    let last = await read();
    for (let i = 0; i < 20; i += 1) {
      const now = await read();
      if (!differ(last, now)) return now;
      last = now;
    }
    return last;
  };
  const shown = await still();
  world.tileset.show = false;
  const hidden = await still();
  world.tileset.show = true;
  scene.globe.show = true;
  return { drawn: differ(shown, hidden), pixels: shown.length / 4 };
}"""


def test_first_pipes_on_screen_soon_after_sign_in(browser, viewer_server: LiveServer) -> None:
    context = browser.new_context(viewport=SIZE, locale="zh-CN")
    context.add_init_script(PROBE_JS)
    page = context.new_page()
    watch = Watch(viewer_server.url)
    watch.attach(page)
    page.goto(viewer_server.url + "/")
    page.wait_for_selector("#signin-form", state="visible")
    page.fill("#signin-user", "viewer")
    page.fill("#signin-password", password("viewer"))
    clicked = page.evaluate("performance.now()")
    page.click("#signin-form button[type=submit]")
    page.wait_for_function("window.__firstPipesShown", timeout=TIMEOUT_MS)
    shown_s = (page.evaluate("window.__firstPipesShown") - clicked) / 1000
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    picture = page.evaluate("window.__firstPipesPicture")  # the map's canvas in the first pipes' frame
    (ARTIFACTS / "first-view.png").write_bytes(base64.b64decode(picture.split(",", 1)[1]))
    timing = page.evaluate("window.twinViewer.timing")
    page.wait_for_function("window.twinViewer.ready && window.twinViewer.tilesLoaded()", timeout=TIMEOUT_MS)
    shaders = page.evaluate("window.__shaders")
    after = {k: round((v - clicked) / 1000, 2) for k, v in timing.items() if isinstance(v, int | float) and v >= clicked}
    (ARTIFACTS / "first-view.json").write_text(json.dumps(
        {"viewport": SIZE, "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "first_pipes_shown_s": round(shown_s, 2),
         "after_sign_in_s": after, "shaders": [{**s, "at": round((s["at"] - clicked) / 1000, 2)} for s in shaders]},
        indent=2))

    assert 0 < shown_s < FIRST_PIPES_BOUND_S, (shown_s, after)
    assert timing["firstTileVisible"] <= timing["firstPipesFrame"] <= timing["firstPipesShown"], timing
    # no image-based lighting compiled; the ground's shader only after the first pipes, and used
    names = [s["name"] for s in shaders]
    assert not {"brdf", "skyMap", "skyFilter", "harmonics"} & set(names), shaders
    page.wait_for_function("window.twinViewer.world.scene.globe.show", timeout=TIMEOUT_MS)
    page.wait_for_function("window.__shaders.some((s) => s.name === 'ground')", timeout=TIMEOUT_MS)
    ground = [s["at"] for s in page.evaluate("window.__shaders") if s["name"] == "ground"]
    assert ground and min(ground) > timing["firstPipesFrame"], (ground, timing)
    assert page.evaluate("window.twinViewer.world.scene.postProcessStages.fxaa.enabled")
    # the first view's pipes are the tiles' (hundreds of pixels of a 1280×~750 map at the district)
    pixels = page.evaluate(TILESET_PIXELS_JS)
    assert pixels["drawn"] > 300, pixels
    problems = watch.problems()
    assert problems == [], problems
    context.close()
