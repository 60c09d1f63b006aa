"""Web viewer benchmark: time to the first frame with pipes on screen, and the tile bytes of the
initial view, on the demo district and on the one-million-segment district.

Run with ``.venv/bin/python bench/viewer.py [--runs N] [--no-1m] [--no-record]``. For each
district it

1. starts ``twin serve`` on a free loopback port (the demo district in schema ``bench_viewer``,
   made and tiled on first use; the 1M district is ``bench_tiles`` with the tileset
   ``bench/tiles.py`` wrote to ``bench/out/tiles/tileset``, skipped when either is missing),
2. opens the viewer in Debian's headless chromium and signs in through its form, as a person
   does, each run in a fresh browser context (cold cache),
3. reads the page's own clock (``performance.now()``) from the sign-in click: tileset.json read,
   the first tile loaded, the viewer's frame with the first tile, and the first pipes on screen
   (the browser's next frame after it, seen by a probe outside the viewer's code: software WebGL
   draws a frame after its events, while the page waits); and sums the ``/tiles/`` responses
   until the initial view has loaded (bytes on the wire, gzip as served, and decoded),
4. prints the figures (median of the runs) and appends them to ``bench/RESULTS.md``.

``--reference REV`` (default ``HEAD``) measures the viewer's scripts and style sheet as of git
revision REV in the same run, loads interleaved with the current ones (the browser is handed
REV's ``viewer/js/*.js`` and ``viewer.css`` for the same server): the same-run reference of a
change to the viewer. ``--reference ''`` skips it.

The browser renders WebGL in software (SwiftShader) on the same two cores as the server, so
frame times are those of a machine without a GPU: an upper bound for a desktop browser.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import machine  # noqa: E402
from bench.server import Server  # noqa: E402
from twin.db import make_engine, open_twin  # noqa: E402
from twin.settings import TwinSettings, get_settings  # noqa: E402

DEMO_SCHEMA = "bench_viewer"
BIG_SCHEMA = "bench_tiles"
BIG_TILES = ROOT / "bench" / "out" / "tiles" / "tileset"
USER, PASSWORD = "bench-viewer", "bench-viewer-password"
TARGET_FIRST_PIPES_S = 3.0
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--disable-quic", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
        "--ignore-gpu-blocklist"]
VIEWPORT = {"width": 1280, "height": 800}


def _segments(engine: sa.Engine, schema: str) -> int:
    with engine.connect() as conn:
        if not conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": f"{schema}.segment"}).scalar():
            return 0
        return int(conn.execute(sa.text(f'SELECT count(*) FROM "{schema}".current_segment')).scalar())


def _ensure_user(settings: TwinSettings) -> None:
    """The benchmark's sign-in (a viewer), added once; migrations brought up to date first."""
    from api.auth import add_user

    engine = open_twin(settings)
    with engine.begin() as conn:
        if not conn.execute(sa.text("SELECT 1 FROM app_user WHERE name = :n"), {"n": USER}).first():
            add_user(conn, USER, "viewer", PASSWORD, by="bench")
    engine.dispose()


def demo_district() -> tuple[TwinSettings, int]:
    """The demo district in its own schema, with its tileset (made on first use)."""
    out = ROOT / "bench" / "out" / "viewer"
    settings = get_settings(db_schema=DEMO_SCHEMA, tiles_dir=out / "tiles")
    engine = make_engine(settings)
    n = _segments(engine, DEMO_SCHEMA)
    engine.dispose()
    if not n or not (out / "tiles" / "tileset.json").is_file():
        from ingest.pipeline import ingest_survey
        from ingest.sample import generate_district
        from tiles.build import build_tileset

        print("making the demo district (not timed) ...", flush=True)
        generate_district(out / "survey", scale=1, seed=0)
        report = ingest_survey(out / "survey" / "points.csv", out / "survey" / "segments.csv", settings)
        if report.status != "applied":
            raise SystemExit(f"the demo district did not load: {report}")
        build_tileset(settings, full=True, workers=2)
        engine = make_engine(settings)
        n = _segments(engine, DEMO_SCHEMA)
        engine.dispose()
    _ensure_user(settings)
    return settings, n


def big_district() -> tuple[TwinSettings, int] | None:
    """The 1M district of bench/tiles.py, if it was built."""
    if not (BIG_TILES / "tileset.json").is_file():
        return None
    settings = get_settings(db_schema=BIG_SCHEMA, tiles_dir=BIG_TILES)
    engine = make_engine(settings)
    n = _segments(engine, BIG_SCHEMA)
    engine.dispose()
    if not n:
        return None
    _ensure_user(settings)
    return settings, n


def viewer_files(rev: str) -> dict[str, bytes]:
    """The viewer's scripts and style sheet at git revision ``rev``, by URL path."""
    names = subprocess.run(["git", "ls-tree", "--name-only", rev, "viewer/js/", "viewer/viewer.css"], cwd=ROOT,
                           check=True, capture_output=True, text=True).stdout.split()
    return {"/" + n: subprocess.run(["git", "show", f"{rev}:{n}"], cwd=ROOT, check=True, capture_output=True).stdout
            for n in names}


def _serve_files(context, files: dict[str, bytes]) -> None:
    def handle(route) -> None:
        body = files.get(httpx.URL(route.request.url).path)
        if body is None:
            route.continue_()
        else:
            kind = "text/css" if route.request.url.endswith(".css") else "text/javascript"
            route.fulfill(status=200, body=body, headers={"Content-Type": kind, "Cache-Control": "no-cache"})
    context.route("**/viewer/**", handle)


#: The first pipes on screen, seen from outside the viewer's code (the same for the reference viewer):
#: the first animation frame after the viewer's frame with the first tile (``timing.firstPipesFrame``).
#: Software WebGL draws a frame's commands after its events while the page waits, so the next frame
#: starts when the pipes are on screen.
SHOWN_PROBE_JS = """(() => { const probe = () => {
  const t = window.twinViewer && window.twinViewer.timing;
  if (t && t.firstPipesFrame && !window.__firstPipesShown) window.__firstPipesShown = performance.now();
  else requestAnimationFrame(probe);
}; requestAnimationFrame(probe); })();"""


def measure(browser, server: Server, runs: int, files: dict[str, bytes] | None = None) -> dict:
    """Open the viewer and sign in through its form, ``runs`` times with a cold cache: the page's
    timings after the sign-in click, and the tile bytes (``files``: the viewer's scripts to hand the
    browser instead of the server's, by URL path)."""
    def load(page, since: float) -> dict:
        page.wait_for_function("window.__firstPipesShown", timeout=180_000)
        page.wait_for_function("window.twinViewer.tilesLoaded()", timeout=180_000)
        t = page.evaluate("window.twinViewer.timing")
        shown = page.evaluate("window.__firstPipesShown")
        # When the last tile of the first view had arrived (resource timing): network vs rendering.
        fetched = page.evaluate("(t) => Math.max(0, ...performance.getEntriesByType('resource')"
                                ".filter(e => e.name.includes('/tiles/') && e.startTime < t).map(e => e.responseEnd))",
                                t["firstPipesFrame"])
        after = lambda ms: max(0.0, (ms or 0) - since) / 1000  # noqa: E731
        return {"cesium_s": t["start"] / 1000, "tileset_json_s": after(t["tilesetReady"]),
                "tiles_fetched_s": after(fetched), "first_tile_loaded_s": after(t["firstTileLoad"]),
                "first_pipes_frame_s": after(t["firstPipesFrame"]), "first_pipes_s": after(shown),
                # the overview lines' first frame (none before they were drawn at once)
                "overview_s": after(t.get("overviewFrame")),
                "all_tiles_s": after(page.evaluate("performance.now()"))}

    samples = []
    warm = None
    for run in range(runs):
        context = browser.new_context(viewport=VIEWPORT)
        context.add_init_script(SHOWN_PROBE_JS)
        if files:
            _serve_files(context, files)
        page = context.new_page()
        tiles: list = []
        errors: list[str] = []
        page.on("response", lambda r, tiles=tiles: tiles.append(r) if "/tiles/" in r.url else None)
        page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
        page.goto(server.url + "/")
        page.wait_for_selector("#signin-form", state="visible")
        form_s = page.evaluate("performance.now()") / 1000
        page.fill("#signin-user", USER)
        page.fill("#signin-password", PASSWORD)
        since = page.evaluate("performance.now()")
        page.click("#signin-form button[type=submit]")
        sample = load(page, since) | {"sign_in_form_s": form_s}
        wire = sum(r.request.sizes()["responseBodySize"] for r in tiles)
        decoded = sum(len(r.body()) for r in tiles if r.status == 200)
        failed = page.evaluate("window.twinViewer.failedTiles()")
        if run == runs - 1:
            page.reload()  # a second visit, signed in: CesiumJS and the tiles from the browser's cache
            again = len(tiles)
            warm = load(page, 0.0)["first_pipes_s"]  # from opening the page
            warm_requests = len(tiles) - again  # tile requests that reached the server
        context.close()
        if errors or failed:
            raise SystemExit(f"the page reported errors: {errors} {failed}")
        samples.append({**sample, "tile_requests": len(tiles), "tile_bytes_wire": wire, "tile_bytes": decoded})
    out = {k: round(statistics.median(s[k] for s in samples), 3 if k.endswith("_s") else 0) for k in samples[0]}
    return out | {"runs": runs, "first_pipes_all_s": [round(s["first_pipes_s"], 2) for s in samples],
                  "warm_first_pipes_s": round(warm, 3), "warm_tile_requests": warm_requests}


def _merge(acc: dict | None, one: dict) -> dict:
    """Samples of single-run measurements, gathered for the median."""
    acc = acc or {"samples": []}
    acc["samples"].append(one)
    return acc


def _median(acc: dict) -> dict:
    samples = acc["samples"]
    keys = [k for k in samples[0] if isinstance(samples[0][k], int | float)]
    out = {k: round(statistics.median(s[k] for s in samples), 3) for k in keys}
    return out | {"runs": len(samples), "first_pipes_all_s": [round(s["first_pipes_s"], 2) for s in samples]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="page loads per district (median reported)")
    ap.add_argument("--no-1m", action="store_true", help="only the demo district")
    ap.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    ap.add_argument("--reference", default="HEAD", help="git revision of the viewer measured alongside ('' for none)")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    districts = [("demo district", *demo_district())]
    big = None if args.no_1m else big_district()
    if big is not None:
        districts.append(("1M district", *big))
    results = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            for name, settings, n in districts:
                server = Server(settings)
                reference = viewer_files(args.reference) if args.reference else None
                try:
                    figures, before = {}, None
                    for _ in range(args.runs):  # interleaved: both under the same load
                        if reference:
                            before = _merge(before, measure(browser, server, 1, reference))
                        figures = _merge(figures or None, measure(browser, server, 1))
                    figures, before = _median(figures), _median(before) if before else None
                finally:
                    server.stop()
                results.append((name, n, figures))
                if before:
                    print(f"{name}: viewer as of {args.reference}: first pipes {before['first_pipes_s']:.2f} s "
                          f"(runs {before['first_pipes_all_s']}), first tile loaded {before['first_tile_loaded_s']:.2f} s, "
                          f"every tile of the view {before['all_tiles_s']:.2f} s", flush=True)
                    print(json.dumps(before), flush=True)
                    figures["reference"] = {"rev": args.reference, **before}
                ok = figures["first_pipes_s"] < TARGET_FIRST_PIPES_S
                print(f"{name} ({n:,} segments): first pipes on screen {figures['first_pipes_s']:.2f} s "
                      f"(target {TARGET_FIRST_PIPES_S:g} s: {'met' if ok else 'NOT met'}); "
                      f"{figures['tile_requests']} tile requests, {figures['tile_bytes_wire'] / 2**20:.2f} MiB on the "
                      f"wire ({figures['tile_bytes'] / 2**20:.2f} MiB decoded)", flush=True)
                print(json.dumps(figures), flush=True)
        finally:
            browser.close()
    if big is None and not args.no_1m:
        print(f"no 1M district: {BIG_TILES}/tileset.json or schema {BIG_SCHEMA} missing (run bench/tiles.py)")
    if args.no_record:
        return
    lines = [f"\n### viewer, {dt.date.today().isoformat()}", f"- machine: {machine()}",
             f"- headless Debian chromium, WebGL in software (SwiftShader), viewport {VIEWPORT['width']}x"
             f"{VIEWPORT['height']}, signed in through the form, cold cache; median of {args.runs} loads; "
             "times from the sign-in click"]
    for name, n, f in results:
        ok = f["first_pipes_s"] < TARGET_FIRST_PIPES_S
        lines.append(
            f"- {name}, {n:,} segments: first pipes on screen **{f['first_pipes_s']:.2f} s** "
            f"(runs {f['first_pipes_all_s']}; the sign-in form shown {f['sign_in_form_s']:.2f} s after opening the "
            f"page; after the click: tileset.json {f['tileset_json_s']:.2f} s, first view's tiles fetched "
            f"{f['tiles_fetched_s']:.2f} s, first tile loaded {f['first_tile_loaded_s']:.2f} s, its frame issued "
            f"{f['first_pipes_frame_s']:.2f} s, overview lines {f['overview_s']:.2f} s, every tile of the view "
            f"{f['all_tiles_s']:.2f} s; second visit, signed in, warm cache, from opening the page "
            f"{f['warm_first_pipes_s']:.2f} s with {f['warm_tile_requests']:.0f} tile requests); initial view "
            f"{f['tile_requests']:.0f} tile requests, **{f['tile_bytes_wire'] / 2**20:.2f} MiB** on the wire "
            f"({f['tile_bytes'] / 2**20:.2f} MiB decoded); target {TARGET_FIRST_PIPES_S:g} s "
            f"{'met' if ok else '**not met**'}")
        if "reference" in f:
            r = f["reference"]
            lines.append(f"  - same run, the viewer as of {r['rev']}: first pipes {r['first_pipes_s']:.2f} s (runs "
                         f"{r['first_pipes_all_s']}), tileset.json {r['tileset_json_s']:.2f} s, first tile loaded "
                         f"{r['first_tile_loaded_s']:.2f} s, its frame issued {r['first_pipes_frame_s']:.2f} s, every tile "
                         f"of the view {r['all_tiles_s']:.2f} s")
    if big is None and not args.no_1m:
        lines.append("- 1M district: not measured (no tileset in bench/out/tiles/tileset or no schema bench_tiles)")
    results_md = ROOT / "bench" / "RESULTS.md"
    text = results_md.read_text(encoding="utf-8")
    if "## Web viewer (`bench/viewer.py`)" not in text:
        text += ("\n## Web viewer (`bench/viewer.py`)\nTarget: the first pipes on screen under 3 s on loopback, "
                 "from the sign-in; and the tile bytes of the initial view.\n")
    results_md.write_text(text + "\n".join(lines) + "\n", encoding="utf-8")
    print(f"appended to {results_md}")


if __name__ == "__main__":
    main()
