"""Exchange benchmark: GeoPackage export of a large twin against ogr2ogr, and its import.

Run with ``.venv/bin/python bench/exchange.py [--schema S | --scale K]``. It

1. uses the twin in ``--schema`` (default ``bench_analysis``, the ~1.07M-segment district of
   ``bench/analysis.py``; it must be migrated to the current revision), or with ``--scale K``
   generates and ingests a district of that scale into ``bench_exchange`` first (not timed),
2. times :func:`exchange.export.export_network` to GeoPackage (the call behind ``twin export``
   and ``POST /exports``): COPY to Arrow, WKB from PostGIS, pyogrio ``write_arrow``,
3. in the same run times the reference: ``ogr2ogr -f GPKG`` copying the same columns of the same
   two views (``current_node``, ``current_segment``) out of PostGIS,
4. times :func:`ingest.gis.ingest_gis` importing the exported GeoPackage into a fresh schema
   (``bench_exchange_in``; the export's catalogue field names mapped to the survey's),
   ``--repeat N`` times (median and spread; each import into a schema dropped first), with its
   stages (read, check, load),
5. prints the figures and appends them to ``bench/RESULTS.md`` (``--no-record``: not).

``--import-only`` skips the export and its reference and imports the GeoPackage ``--gpkg`` wrote
earlier (the machine is shared: compare import changes back to back on one file).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyogrio
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.machine import machine  # noqa: E402
from exchange.export import export_network  # noqa: E402
from exchange.network import exported_columns  # noqa: E402
from ingest.gis import ingest_gis  # noqa: E402
from ingest.pipeline import ingest_survey  # noqa: E402
from ingest.sample import generate_district  # noqa: E402
from twin.db import make_engine, open_twin  # noqa: E402
from twin.pgcluster import database_url  # noqa: E402
from twin.settings import get_settings  # noqa: E402

#: The export's field names (the catalogue's) -> the survey tables' names the import reads.
IMPORT_COLUMNS = {"id": "point_id", "from_node": "from_id", "to_node": "to_id", "size_text": "size",
                  "depth_m": "depth", "from_depth_m": "from_depth", "to_depth_m": "to_depth",
                  "well_depth_m": "well_depth", "pressure_mpa": "pressure"}


def _drop(schema: str) -> None:
    engine = make_engine(get_settings(db_schema=schema), admin=True)
    with engine.begin() as conn:
        conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
    engine.dispose()


def _prepare(args: argparse.Namespace, tmp: Path) -> str:
    if args.scale is None:
        return args.schema
    schema = "bench_exchange"
    _drop(schema)
    generate_district(tmp / "survey", scale=args.scale, seed=0)
    report = ingest_survey(tmp / "survey" / "points.csv", tmp / "survey" / "segments.csv",
                           get_settings(db_schema=schema))
    assert report.status == "applied", report.status
    return schema


def _ogr2ogr(schema: str, out: Path) -> float:
    """The reference: GDAL copies the same columns of the same views into a GeoPackage."""
    url = sa.engine.make_url(database_url(get_settings(), admin=True))
    pg = (f"PG:host={url.host} port={url.port} dbname={url.database} user={url.username} "
          f"active_schema={schema}")
    if url.password:
        pg += f" password={url.password}"
    t0 = time.perf_counter()
    for i, (kind, layer) in enumerate((("node", "points"), ("segment", "segments"))):
        cols = ", ".join(c.name for c in exported_columns(kind))
        subprocess.run(["ogr2ogr", "-f", "GPKG", *(["-update"] if i else []), str(out), pg,
                        "-sql", f"SELECT {cols}, geom FROM {schema}.current_{kind}", "-nln", layer,
                        "-gt", "65536"], check=True)
    return time.perf_counter() - t0


def _export(args: argparse.Namespace, tmp: Path, gpkg: Path) -> tuple[str, int, float, float]:
    """The export and its reference, timed: (schema, segments, export s, ogr2ogr s)."""
    schema = _prepare(args, tmp)
    engine = open_twin(get_settings(db_schema=schema))
    with engine.connect() as conn:
        n_seg = conn.execute(sa.text("SELECT count(*) FROM current_segment")).scalar_one()
    print(f"twin {schema}: {n_seg:,} segments", flush=True)
    t0 = time.perf_counter()
    report = export_network(engine, gpkg, "gpkg")
    ours = time.perf_counter() - t0
    engine.dispose()
    print(f"twin export gpkg: {ours:.1f} s, {n_seg / ours:,.0f} segments/s {report.counts}", flush=True)
    ref = _ogr2ogr(schema, tmp / "ogr.gpkg")
    print(f"ogr2ogr -f GPKG:  {ref:.1f} s, {n_seg / ref:,.0f} segments/s", flush=True)
    return schema, n_seg, ours, ref


def _import(gpkg: Path, n_seg: int, repeat: int) -> tuple[list[float], dict[str, float]]:
    """``twin ingest gis`` of the GeoPackage into a fresh schema, ``repeat`` times: the wall
    times and the median run's stages."""
    target = get_settings(db_schema="bench_exchange_in")
    times, stages = [], []
    for _ in range(repeat):
        _drop(target.db_schema)
        t0 = time.perf_counter()
        back = ingest_gis(target, gpkg, columns=IMPORT_COLUMNS)
        times.append(time.perf_counter() - t0)
        stages.append({k: round(v, 1) for k, v in back.seconds.items()})
        print(f"ingest gis of that GeoPackage: {back.status}, {times[-1]:.1f} s, "
              f"{n_seg / times[-1]:,.0f} segments/s (target >= 20,000) {stages[-1]}", flush=True)
        _drop(target.db_schema)
    mid = statistics.median(times)
    print(f"import median {mid:.1f} s = {n_seg / mid:,.0f} segments/s over {repeat} run(s), "
          f"spread {min(times):.1f}-{max(times):.1f} s", flush=True)
    return times, stages[sorted(range(repeat), key=times.__getitem__)[repeat // 2]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--schema", default="bench_analysis")
    ap.add_argument("--scale", type=float, default=None, help="generate a district of this scale")
    ap.add_argument("--no-import", action="store_true", help="skip the import of the GeoPackage")
    ap.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    ap.add_argument("--repeat", type=int, default=1, help="import the GeoPackage this many times")
    ap.add_argument("--gpkg", type=Path, default=None, help="keep the exported GeoPackage here")
    ap.add_argument("--import-only", action="store_true",
                    help="no export: import the GeoPackage --gpkg (written by an earlier run)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-exchange-") as t:
        tmp = Path(t)
        gpkg = args.gpkg or tmp / "twin.gpkg"
        schema, ours, ref, ratio = args.schema, None, None, None
        if args.import_only:
            if args.gpkg is None or not args.gpkg.is_file():
                ap.error("--import-only needs --gpkg naming an exported GeoPackage")
            n_seg = pyogrio.read_info(gpkg, layer="segments")["features"]
            print(f"{gpkg}: {n_seg:,} segments", flush=True)
        else:
            schema, n_seg, ours, ref = _export(args, tmp, gpkg)
            ratio = ref / ours
            print(f"ratio (export speed / ogr2ogr speed): {ratio:.2f} (target >= 0.5)", flush=True)
        imported = None
        if not args.no_import:
            imported, stages = _import(gpkg, n_seg, max(1, args.repeat))
    if not args.no_record:
        gdal = subprocess.run(["ogr2ogr", "--version"], capture_output=True, text=True).stdout.strip()
        lines = [
            f"\n## Exchange (`bench/exchange.py`, {dt.date.today().isoformat()})\n\n",
            f"- machine: {machine()}; twin `{schema}`: {n_seg:,} segments\n",
        ]
        if ours is not None:
            lines += [
                f"- `twin export --format gpkg`: {ours:.1f} s = {n_seg / ours:,.0f} segments/s\n",
                f"- reference `ogr2ogr -f GPKG` of the same views and columns ({gdal}): {ref:.1f} s = "
                f"{n_seg / ref:,.0f} segments/s\n",
                f"- ratio {ratio:.2f} (target >= 0.5)\n",
            ]
        if imported:
            mid = statistics.median(imported)
            lines.append(f"- `twin ingest gis` of the exported GeoPackage: median {mid:.1f} s = "
                         f"{n_seg / mid:,.0f} segments/s over {len(imported)} run(s) "
                         f"({min(imported):.1f}-{max(imported):.1f} s; stages s {stages}) "
                         "(target >= 20,000)\n")
        with (ROOT / "bench" / "RESULTS.md").open("a", encoding="utf-8") as f:
            f.writelines(lines)


if __name__ == "__main__":
    main()
