"""3D Tiles benchmark: a district of >= 1M segments, full build and incremental rebuild.

Run with ``.venv/bin/python bench/tiles.py [--scale S]``. It

1. writes the sample district at benchmark scale and ingests it into the schema
   ``bench_tiles`` (not timed; skipped with ``--reuse`` when the schema is already loaded),
2. runs ``twin tiles build --full`` in a child process: segments per second, tiles, triangles,
   bytes per segment, peak memory (proportional set size of the build and its workers, sampled),
3. changes the material of the 100 segments nearest the district's centre (one SQL UPDATE) and
   times ``twin tiles build`` (incremental) end to end, process start included (then puts the
   material back),
4. same-run reference (unless ``--no-reference``): the same full build with the tile writer of
   git ``HEAD`` (a copy of the working tree's packages in a temporary folder with
   ``tiles/{glb,content,mesh,style,tiling}.py`` as committed: the uncompressed float writer),
   and both tilesets' "first view",
5. prints the figures and appends them to ``bench/RESULTS.md``.

The first view is the coarsest level, what CesiumJS requests at the viewer's opening camera
(bench/viewer.py measured 27 requests, 22 MiB on the wire, on the old tileset): here the tiles
with a feature drawn from 20 km, summed as files and gzip-compressed (and, as recorded before
2026-12-04, those whose features all are: ``trunk_only``; git HEAD's tilesets before the bounded
coarsest level drew every tile holding a trunk main from 20 km).
``--schema bench_analysis --reuse`` runs it on the loaded 1M district of the analysis bench.

``--sample N`` measures only the meshing of N tiles (CPU per feature of ``build_content``, the
work of the build's mesh stage without the database, the workers and the files): it reads the
schema as a full build does (nothing is written to it), picks N tiles at random (seed 1), and
meshes them alternately with git HEAD's tiles package (imported as ``tiles_head`` from a
temporary folder) and the working tree's, the best of ``--repeat`` rounds each; nothing is
recorded. ``--schema bench_analysis --sample 60`` is the figure of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import importlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tiles.build as tb  # noqa: E402
from bench.machine import machine  # noqa: E402
from tiles.content import build_content  # noqa: E402
from twin.db import make_engine  # noqa: E402
from twin.settings import get_settings  # noqa: E402

BIN = Path(sys.executable).parent
SCHEMA = "bench_tiles"
BENCHMARK_SCALE = 25.0
TARGET_SEGMENTS_PER_S = 40_000
TARGET_INCREMENTAL_S = 3.0
TARGET_BYTES_PER_SEGMENT = 350
TARGET_FIRST_VIEW_MIB = 5.0


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "TWIN_DB_SCHEMA": SCHEMA, **(extra or {})}


def first_view(tileset: Path) -> dict:
    """What the opening camera loads: the tiles drawn from 20 km, those with a feature drawn at the
    coarsest level (``drawn_level`` 0; the importance level in tilesets built before it was kept):
    count, MiB, gzip MiB; ``trunk_only``: the same for the tiles whose features are all drawn at
    the coarsest level (the figure recorded before 2026-12-04)."""
    with np.load(tileset / "manifest-features.npz", allow_pickle=False) as z:
        level = z["drawn_level"] if "drawn_level" in z.files else z["level"]
        tile, keys = z["tile"], z["tile_keys"]
    top = np.full(len(keys), -1)
    np.maximum.at(top, tile, level)
    least = np.full(len(keys), 99)
    np.minimum.at(least, tile, level)

    def measure(chosen: np.ndarray) -> dict:
        data = [(tileset / "t" / f"{keys[i]}.glb").read_bytes() for i in chosen]
        return {"tiles": len(data), "mib": round(sum(map(len, data)) / 2**20, 2),
                "gzip_mib": round(sum(len(gzip.compress(d, 6)) for d in data) / 2**20, 2)}

    return {**measure(np.flatnonzero(least == 0)), "trunk_only": measure(np.flatnonzero(top == 0))}


REFERENCE_FILES = tuple(f"tiles/{name}.py" for name in (
    "__init__", "build", "cli", "content", "glb", "mesh", "placement", "source", "style", "tiling"))
PACKAGES = ("twin", "ingest", "analysis", "tiles", "exchange", "live", "documents", "api")


def _reference_build(out: Path, engine: sa.Engine) -> dict:
    """The full build with git HEAD's tiles package (in a copy of the packages), then its
    incremental rebuild after the same 100 edits."""
    with tempfile.TemporaryDirectory(prefix="tiles-ref-") as tmp:
        for pkg in PACKAGES:
            shutil.copytree(ROOT / pkg, Path(tmp) / pkg, ignore=shutil.ignore_patterns("__pycache__"))
        for name in REFERENCE_FILES:
            old = subprocess.run(["git", "show", f"HEAD:{name}"], cwd=ROOT, check=True, capture_output=True).stdout
            (Path(tmp) / name).write_bytes(old)
        code = "import sys; from twin.cli import main; sys.exit(main())"
        command = [sys.executable, "-c", code]
        env = _env({"PYTHONPATH": tmp, "TWIN_DATA_DIR": os.environ.get("TWIN_DATA_DIR", str(ROOT / ".twin"))})
        seconds, report, peak = _run_measured([*command, "tiles", "build", "--full", "--json", "--out", str(out)],
                                              cwd=tmp, env=env)
        inc_s, inc, _ = _incremental(engine, command, out, cwd=tmp, env=env)
    return {**report, "process_seconds": round(seconds, 2), "peak_pss_mib": round(peak / 2**20),
            "incremental_process_seconds": round(inc_s, 2), "incremental": inc}


def _run_measured(args: list[str], cwd: str | None = None, env: dict[str, str] | None = None
                  ) -> tuple[float, dict, int]:
    """Run a command; (seconds, its JSON output, peak PSS of it and its children in bytes). The
    JSON gets ``process_cpu_seconds``: CPU of the command and its workers (not the database's)."""
    peak = 0
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = threading.Event()
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env or _env(), text=True,
                            cwd=cwd)

    def sample() -> None:
        nonlocal peak
        try:
            root = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            return
        while not done.is_set():
            total = 0
            try:
                for p in [root, *root.children(recursive=True)]:
                    try:
                        total += p.memory_full_info().pss
                    except (psutil.NoSuchProcess, psutil.AccessDenied):
                        pass
            except psutil.NoSuchProcess:
                break
            peak = max(peak, total)
            done.wait(0.25)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    out, err = proc.communicate()
    seconds = time.perf_counter() - started
    done.set()
    thread.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{err[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return seconds, {**json.loads(out), "process_cpu_seconds": round(cpu, 2)}, peak


def _schema_segments(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        exists = conn.execute(sa.text("SELECT to_regclass(:t)"), {"t": f"{SCHEMA}.segment"}).scalar()
        if not exists:
            return 0
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {SCHEMA}.current_segment")).scalar())


def _ingest(engine: sa.Engine, twin: str, out: Path, scale: float) -> None:
    survey = out / "survey"
    print(f"writing the sample district (scale {scale:g}) to {survey} ...", flush=True)
    subprocess.run([twin, "sample", "--out", str(survey), "--scale", str(scale), "--json"],
                   check=True, stdout=subprocess.DEVNULL, env=_env())
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
    print(f"ingesting it into schema {SCHEMA} (not timed) ...", flush=True)
    t0 = time.perf_counter()
    subprocess.run([twin, "ingest", "survey", "--points", str(survey / "points.csv"), "--segments",
                    str(survey / "segments.csv"), "--json"], check=True, stdout=subprocess.DEVNULL, env=_env())
    print(f"  ingest {time.perf_counter() - t0:.1f} s", flush=True)


def _incremental(engine: sa.Engine, twin: list[str], tiles: Path, cwd: str | None = None,
                 env: dict[str, str] | None = None) -> tuple[float, dict, int]:
    """Change the material of the 100 segments nearest the centre, time the rebuild (``twin``:
    the command), put it back (and bring the tileset up to date again, not timed)."""
    mark = f" (bench {int(time.time())})"
    with engine.begin() as conn:
        cx, cy = conn.execute(sa.text(
            "SELECT (ST_XMin(e) + ST_XMax(e)) / 2, (ST_YMin(e) + ST_YMax(e)) / 2 "
            "FROM (SELECT ST_Extent(geom) AS e FROM current_segment) x")).one()
        changed = conn.execute(sa.text(f"""
            UPDATE {SCHEMA}.segment SET material = material || :mark
             WHERE id IN (SELECT id FROM {SCHEMA}.current_segment
                           ORDER BY geom <-> ST_SetSRID(ST_MakePoint(:x, :y), ST_SRID(geom)) LIMIT 100)
               AND retired_at IS NULL
            RETURNING id""").bindparams(x=cx, y=cy, mark=mark)).scalars().all()
    try:
        inc_s, inc, _ = _run_measured([*twin, "tiles", "build", "--json", "--out", str(tiles)], cwd=cwd, env=env)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE {SCHEMA}.segment SET material = left(material, -length(:mark)) "
                                 "WHERE id = ANY(:ids) AND retired_at IS NULL AND material LIKE '%' || :mark"),
                         {"mark": mark, "ids": list(changed)})
    _run_measured([*twin, "tiles", "build", "--json", "--out", str(tiles)], cwd=cwd, env=env)
    return inc_s, inc, len(changed)


SAMPLE_FILES = ("__init__", "content", "glb", "mesh", "placement", "source", "style", "tiling")


def _sample_tiles(settings: object, count: int) -> dict:
    """``count`` tiles' rows (segments, nodes) as a full build hands them to its workers."""
    taken: dict = {}

    def capture(seg_rows, node_rows, seg_tile, node_tile, build, tile_keys, frame, out, workers, step):
        pick = np.sort(np.random.default_rng(1).choice(np.asarray(build), min(count, len(build)), replace=False))
        taken["tiles"] = [(seg_rows.iloc[np.flatnonzero(seg_tile == t)], node_rows.iloc[np.flatnonzero(node_tile == t)])
                          for t in pick]
        taken.update(frame=frame, of=len(build))
        raise _Captured

    original = tb._mesh_tiles
    tb._mesh_tiles = capture
    try:
        with tempfile.TemporaryDirectory(prefix="tiles-sample-") as tmp:
            tb.build_tileset(settings, tmp, full=True, cluster=False)
    except _Captured:
        pass
    finally:
        tb._mesh_tiles = original
    return taken


class _Captured(Exception):
    pass


def sample(count: int, repeat: int) -> None:
    """Mesh ``count`` sample tiles with git HEAD's tiles package and the working tree's, alternately."""
    t0 = time.perf_counter()
    taken = _sample_tiles(get_settings(db_schema=SCHEMA), count)
    tiles, frame = taken["tiles"], taken["frame"]
    features = sum(len(s) + len(n) for s, n in tiles)
    print(f"{len(tiles)} of {taken['of']:,} tiles, {features:,} features, read in {time.perf_counter() - t0:.1f} s")
    with tempfile.TemporaryDirectory(prefix="tiles-head-") as tmp:
        (Path(tmp) / "tiles_head").mkdir()
        for name in SAMPLE_FILES:
            old = subprocess.run(["git", "show", f"HEAD:tiles/{name}.py"], cwd=ROOT, check=True,
                                 capture_output=True, text=True).stdout
            (Path(tmp) / "tiles_head" / f"{name}.py").write_text(
                old.replace("from tiles.", "from tiles_head.").replace("import tiles.", "import tiles_head."))
        sys.path.insert(0, tmp)
        head = importlib.import_module("tiles_head.content").build_content
        sys.path.remove(tmp)
    best = {"HEAD": float("inf"), "working tree": float("inf")}
    size = {}
    for _ in range(repeat):
        for name, build in (("HEAD", head), ("working tree", build_content)):
            cpu = time.process_time()
            out = [build(s, n, frame) for s, n in tiles]
            best[name] = min(best[name], time.process_time() - cpu)
            size[name] = (sum(len(c.glb) for c in out), sum(c.triangles for c in out))
    for name, cpu in best.items():
        print(f"{name}: {cpu:.3f} CPU s = {cpu / features * 1e6:.2f} us per feature; {size[name][0]:,} bytes, "
              f"{size[name][1]:,} triangles")
    print(f"working tree / HEAD: x{best['working tree'] / best['HEAD']:.2f} the CPU; load average "
          f"{os.getloadavg()[0]:.1f}")


def main() -> None:
    global SCHEMA
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=BENCHMARK_SCALE, help="sample scale (25: ~1.06M segments)")
    ap.add_argument("--schema", default=SCHEMA, help="twin schema (default bench_tiles)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out" / "tiles")
    ap.add_argument("--reuse", action="store_true", help="keep the schema if it is loaded")
    ap.add_argument("--no-reference", action="store_true", help="skip the same-run build by git HEAD's code")
    ap.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    ap.add_argument("--sample", type=int, default=0, help="only mesh this many sample tiles, HEAD against now")
    ap.add_argument("--repeat", type=int, default=5, help="rounds of --sample (the best counts)")
    args = ap.parse_args()
    SCHEMA = args.schema
    if args.sample:
        sample(args.sample, args.repeat)
        return
    twin = str(BIN / "twin")
    engine = make_engine(get_settings(db_schema=SCHEMA), admin=True)  # it drops the schema

    loaded = _schema_segments(engine) if args.reuse else 0
    if not loaded:
        _ingest(engine, twin, args.out, args.scale)
        loaded = _schema_segments(engine)

    tiles = args.out / "tileset"
    print(f"full build of {loaded:,} segments into {tiles} ...", flush=True)
    full_s, full, peak = _run_measured([twin, "tiles", "build", "--full", "--json", "--out", str(tiles)])
    rate = full["segments"] / full["seconds"]
    view = first_view(tiles)
    print(json.dumps({"full": full, "first_view": view}), flush=True)
    inc_s, inc, n_changed = _incremental(engine, [twin], tiles)
    print(json.dumps({"incremental_s": inc_s, "incremental": inc}), flush=True)
    ref = None
    if not args.no_reference:
        print("same-run reference: the full and incremental builds by git HEAD's code ...", flush=True)
        ref = _reference_build(args.out / "tileset-head", engine)
        ref["first_view"] = first_view(args.out / "tileset-head")
        print(json.dumps({"reference": ref}), flush=True)
    engine.dispose()

    figures = {
        "segments": full["segments"], "nodes": full["nodes"], "tiles": full["tiles"],
        "triangles": full["triangles"], "bytes": full["bytes"],
        "full_seconds": full["seconds"], "full_process_seconds": round(full_s, 2),
        "segments_per_s": round(rate), "bytes_per_segment": round(full["bytes"] / max(full["segments"], 1)),
        "peak_pss_mib": round(peak / 2**20), "stages": full["stages"], "cpu_stages": full.get("cpu_stages"),
        "first_view": view,
        "changed": n_changed, "incremental_seconds": inc["seconds"],
        "incremental_process_seconds": round(inc_s, 2), "incremental_written": inc["tiles_written"],
        "incremental_kept": inc["tiles_kept"], "incremental_stages": inc["stages"],
        "incremental_cpu_stages": inc.get("cpu_stages"),
        "reference": ref and {k: ref[k] for k in ("seconds", "process_seconds", "bytes", "triangles", "tiles",
                                                   "stages", "first_view", "peak_pss_mib",
                                                   "incremental_process_seconds", "process_cpu_seconds")},
    }
    print(json.dumps(figures, indent=2))
    ok = {"rate": rate >= TARGET_SEGMENTS_PER_S, "inc": inc_s <= TARGET_INCREMENTAL_S,
          "bytes": figures["bytes_per_segment"] <= TARGET_BYTES_PER_SEGMENT,
          "view": view["gzip_mib"] <= TARGET_FIRST_VIEW_MIB}
    print(f"full build: {rate:,.0f} segments/s; {figures['bytes_per_segment']} bytes/segment; first view "
          f"{view['tiles']} tiles {view['gzip_mib']} MiB gzip; incremental after {n_changed} changes: "
          f"{inc_s:.2f} s end to end; targets met: {ok}")
    if not args.no_record:
        _record(args, full, full_s, rate, figures, inc, inc_s, n_changed, ref, ok)


def _met(flag: bool) -> str:
    return "met" if flag else "**not met**"


def _record(args: argparse.Namespace, full: dict, full_s: float, rate: float, figures: dict, inc: dict,
            inc_s: float, n_changed: int, ref: dict | None, ok: dict) -> None:
    view = figures["first_view"]
    section = [
        f"\n### tiles, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC (light tiles, issue 18)",
        f"- machine: {machine()}; load average {os.getloadavg()[0]:.1f} at the end",
        f"- district: schema `{SCHEMA}`, {full['segments']:,} segments, {full['nodes']:,} drawn nodes",
        f"- full build `twin tiles build --full`: {full['seconds']:.1f} s = **{rate:,.0f} segments/s** "
        f"({full_s:.1f} s with process start), {full['tiles']:,} tiles, {full['triangles']:,} triangles, "
        f"{full['bytes'] / 2**20:,.0f} MiB = **{figures['bytes_per_segment']:,} bytes/segment**, "
        f"peak PSS {figures['peak_pss_mib']:,} MiB; stages (s): {full['stages']}; CPU s per stage "
        f"(build process and its workers, not the database): {full.get('cpu_stages')}, "
        f"{full['process_cpu_seconds']} CPU s with process start",
        f"- first view (the {view['tiles']} tiles drawn from 20 km, the coarsest level): {view['mib']} MiB, "
        f"**{view['gzip_mib']} MiB gzip** (trunk-only tiles: {view['trunk_only']})",
        f"- incremental `twin tiles build` after an UPDATE of {n_changed} segments near the centre: "
        f"**{inc_s:.2f} s** end to end ({inc['seconds']:.2f} s in the build), {inc['tiles_written']} tiles "
        f"rewritten, {inc['tiles_kept']:,} kept; stages (s): {inc['stages']}; CPU s: {inc.get('cpu_stages')}, "
        f"{inc['process_cpu_seconds']} CPU s with process start",
    ]
    if ref:
        rv = ref["first_view"]
        ri = ref["incremental"]
        section.append(
            f"- same-run reference, git HEAD's tiles package: full build {ref['seconds']:.1f} s = "
            f"{full['segments'] / ref['seconds']:,.0f} segments/s (x{ref['seconds'] / full['seconds']:.2f} the "
            f"time of this one; {ref['process_cpu_seconds']} CPU s against {full['process_cpu_seconds']}), "
            f"{ref['bytes'] / 2**20:,.0f} MiB = "
            f"{ref['bytes'] / max(full['segments'], 1):,.0f} bytes/segment, {ref['triangles']:,} triangles; "
            f"first view {rv['tiles']} tiles {rv['mib']} MiB, {rv['gzip_mib']} MiB gzip (trunk-only tiles: "
            f"{rv['trunk_only']}); "
            f"stages (s): {ref['stages']}; incremental after the same edits "
            f"{ref['incremental_process_seconds']:.2f} s end to end ({ri['seconds']:.2f} s in the build, "
            f"{ri['tiles_written']} tiles, {ri['process_cpu_seconds']} CPU s against {inc['process_cpu_seconds']}), "
            f"stages (s): {ri['stages']}")
    section.append(
        f"- targets: >= {TARGET_SEGMENTS_PER_S:,} segments/s {_met(ok['rate'])}; <= {TARGET_BYTES_PER_SEGMENT} "
        f"bytes/segment {_met(ok['bytes'])}; first view <= {TARGET_FIRST_VIEW_MIB:g} MiB {_met(ok['view'])}; "
        f"incremental <= {TARGET_INCREMENTAL_S:g} s {_met(ok['inc'])}")
    results = ROOT / "bench" / "RESULTS.md"
    text = results.read_text(encoding="utf-8")
    results.write_text(text + "\n".join(section) + "\n", encoding="utf-8")
    print(f"appended to {results}")


if __name__ == "__main__":
    main()
