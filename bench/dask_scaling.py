"""Tile builds and whole-network scans on Dask: 1 and 2 workers against the single-machine run.

Run with ``.venv/bin/python bench/dask_scaling.py [--schema bench_analysis]`` on a loaded
district (the 1M district of ``bench/analysis.py`` by default). It

1. builds the full tileset with the local process pool (the same-run reference, one worker
   per core), then on a LocalCluster of 1 and of 2 worker processes (``build_tileset(...,
   cluster=client)``; the cluster is started and its workers have imported the code before the
   clock starts), and checks that every content is byte for byte the reference's (naming the
   contents that differ; ``--keep DIR`` keeps both tilesets to compare them);
2. scans the network in one process (``scan_network``, clearance forked beside collision: the
   reference) and by partitions on the same clusters, and checks the counts agree;
3. prints the figures and appends them to ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from analysis.scan import scan_network  # noqa: E402
from bench.machine import machine  # noqa: E402
from tiles.build import build_tileset  # noqa: E402
from twin.dask import dask_client  # noqa: E402
from twin.db import open_twin  # noqa: E402
from twin.settings import get_settings  # noqa: E402


def _warm(_: int) -> bool:
    """Run on each worker before timing: the code's imports (a second or more per process)."""
    import analysis.scan  # noqa: F401, PLC0415
    import tiles.build  # noqa: F401, PLC0415

    return True


def _digest(folder: Path) -> dict[str, str]:
    """Each content's SHA-256, by its path in the tileset."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((folder / "t").rglob("*.glb"))}


def _differ(got: dict[str, str], ref: dict[str, str]) -> list[str]:
    """Contents that differ from the reference's, are missing or are extra."""
    return sorted(k for k in set(got) | set(ref) if got.get(k) != ref.get(k))


def _counts(r: dict) -> tuple:
    return (r["segments"], r["pieces"], r["candidate_pairs"], tuple(sorted(r["verdicts"].items())),
            tuple(sorted(r["collision"]["counts"].items())), tuple(sorted(r["clearance"]["counts"].items())))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--schema", default="bench_analysis")
    ap.add_argument("--workers", default="1,2", help="Dask worker counts to time (comma-separated)")
    ap.add_argument("--skip-tiles", action="store_true")
    ap.add_argument("--skip-scan", action="store_true")
    ap.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    ap.add_argument("--keep", help="copy the tilesets into this folder (to compare contents that differ)")
    args = ap.parse_args()
    settings = get_settings(db_schema=args.schema)
    engine = open_twin(settings)
    counts = [int(n) for n in args.workers.split(",")]
    lines: list[str] = []
    load = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="dask_scaling_"))
    try:
        if not args.skip_tiles:
            t = time.perf_counter()
            ref = build_tileset(settings, out_dir=tmp / "local", full=True, cluster=False)
            ref_s, ref_digest = time.perf_counter() - t, _digest(tmp / "local")
            lines.append(f"- tile build, local process pool ({os.cpu_count()} workers, the reference): "
                         f"**{ref_s:.1f} s** ({ref['segments'] / ref_s:,.0f} segments/s), {ref['tiles']:,} tiles, "
                         f"stages {ref['stages']}")
            print(lines[-1], flush=True)
            if args.keep:
                shutil.copytree(tmp / "local", Path(args.keep) / "local", dirs_exist_ok=True)
            shutil.rmtree(tmp / "local")
        scan_ref = None
        if not args.skip_scan:
            scan_ref = scan_network(engine, settings=settings, limit=1000, cluster=False)
            lines.append(f"- scan in one process (clearance forked beside collision, the reference): "
                         f"**{scan_ref['timings_s']['total']:.1f} s** {scan_ref['timings_s']}; "
                         f"{scan_ref['segments']:,} segments, {scan_ref['candidate_pairs']:,} candidate pairs")
            print(lines[-1], flush=True)
        for n in counts:
            t = time.perf_counter()
            with dask_client(settings, workers=n) as client:
                client.gather(client.map(_warm, range(n), pure=False))
                started = time.perf_counter() - t
                if not args.skip_tiles:
                    t = time.perf_counter()
                    rep = build_tileset(settings, out_dir=tmp / f"dask{n}", full=True, cluster=client)
                    s = time.perf_counter() - t
                    differ = _differ(_digest(tmp / f"dask{n}"), ref_digest)
                    same = not differ
                    if differ:
                        print(f"  {len(differ)} contents differ, e.g. {differ[:10]}", flush=True)
                        if args.keep:
                            print(f"  kept in {args.keep}", flush=True)
                            shutil.copytree(tmp / f"dask{n}", Path(args.keep) / f"dask{n}", dirs_exist_ok=True)
                    lines.append(f"- tile build on Dask, {n} worker{'s' if n > 1 else ''}: **{s:.1f} s** "
                                 f"(x{ref_s / s:.2f} of the reference; cluster started and warmed in "
                                 f"{started:.1f} s, not counted), stages {rep['stages']}; contents byte for "
                                 f"byte the reference's: {same}")
                    print(lines[-1], flush=True)
                    shutil.rmtree(tmp / f"dask{n}")
                if scan_ref is not None:
                    r = scan_network(engine, settings=settings, limit=1000, cluster=client)
                    lines.append(f"- scan on Dask, {n} worker{'s' if n > 1 else ''}, {r['partitions']} partitions: "
                                 f"**{r['timings_s']['total']:.1f} s** (x{scan_ref['timings_s']['total'] / r['timings_s']['total']:.2f} "
                                 f"of the reference) {r['timings_s']}; same counts as the reference: "
                                 f"{_counts(r) == _counts(scan_ref)}")
                    print(lines[-1], flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        engine.dispose()
    head = [f"## Dask scaling (`bench/dask_scaling.py`, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)",
            f"- machine: {machine()}; load average at the start {load:.1f} (other sessions on the same cores)",
            f"- district: schema `{args.schema}`"]
    text = "\n".join([*head, *lines]) + "\n"
    print(text)
    if not args.no_record:
        with (ROOT / "bench" / "RESULTS.md").open("a", encoding="utf-8") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
