"""`twin export` against independent readers: GDAL's ogrinfo (Debian's build, not pyogrio's),
ezdxf's audit, wntr, and the ingest itself (CJJ 61 tables re-imported into an empty twin).

One demo district per module; every expectation comes from SQL on the twin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import ezdxf
import numpy as np
import pandas as pd
import pyogrio
import pytest
import shapely
import sqlalchemy as sa
import wntr

from analysis.segments import build_model
from exchange.export import export_network
from exchange.gis import shapefile_names
from ingest.pipeline import ingest_survey
from ingest.sample import generate_district
from ingest.tables import read_survey
from tests.conftest import drop_schema
from twin.db import open_twin
from twin.domain import UTILITIES
from twin.errors import InputError
from twin.schema import columns
from twin.store import retire

TWIN = str(Path(sys.executable).with_name("twin"))
KINDS = ("node", "segment", "valve", "source", "customer")


@pytest.fixture(scope="module")
def demo(twin_settings, twin_engine, tmp_path_factory) -> sa.Engine:
    folder = tmp_path_factory.mktemp("demo")
    generate_district(folder, scale=1, seed=3)
    report = ingest_survey(folder / "points.csv", folder / "segments.csv", twin_settings)
    assert report.status == "applied", report
    return twin_engine


def sql(engine: sa.Engine, text: str, **params) -> list:
    with engine.connect() as conn:
        return conn.execute(sa.text(text), params).all()


def ogrinfo(path: Path, *args: str, layer: str | None = None) -> str:
    r = subprocess.run(["ogrinfo", "-ro", *args, str(path), *([layer] if layer else [])],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout


def read(path: Path, layer: str) -> pd.DataFrame:
    """A layer as a frame of its fields and a ``geometry`` column of shapely geometries."""
    meta, table = pyogrio.read_arrow(path, layer=layer)
    frame = table.to_pandas()
    name = meta["geometry_name"] or "wkb_geometry"
    frame["geometry"] = shapely.from_wkb(frame.pop(name).to_numpy())
    return frame


def feature_counts(summary: str) -> dict[str, int]:
    out, layer = {}, None
    for line in summary.splitlines():
        if line.startswith("Layer name:"):
            layer = line.split(":", 1)[1].strip()
        elif line.startswith("Feature Count:"):
            out[layer] = int(line.split(":", 1)[1])
    return out


@pytest.mark.parametrize("fmt", ["gpkg", "shp", "geojson"])
def test_gis_exports_are_read_by_ogrinfo(demo: sa.Engine, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / ("net.gpkg" if fmt == "gpkg" else fmt)
    report = export_network(demo, out, fmt)
    ((points,),) = sql(demo, "SELECT count(*) FROM current_node")
    ((segments,),) = sql(demo, "SELECT count(*) FROM current_segment")
    assert report.counts == {"points": points, "segments": segments}
    paths = [out] if fmt == "gpkg" else [out / f"points.{fmt}", out / f"segments.{fmt}"]
    counts: dict[str, int] = {}
    for path in paths:
        summary = ogrinfo(path, "-so", "-al")
        counts.update(feature_counts(summary))
        assert "3D Point" in summary or "3D Line String" in summary
    assert counts == {"points": points, "segments": segments}
    if fmt == "shp":
        for layer in ("points", "segments"):
            assert (out / f"{layer}.cpg").read_text() == "GBK"
            fields = pyogrio.read_info(out / f"{layer}.shp", encoding="GBK")["fields"]
            assert all(len(f.encode()) <= 10 for f in fields)
        # Chinese text through the GBK code page, read by Debian's GDAL
        ((sid, owner, road),) = sql(demo, "SELECT id, owner, road FROM current_segment "
                                    "WHERE owner IS NOT NULL ORDER BY id LIMIT 1")
        text = ogrinfo(out / "segments.shp", "-where", f"id = '{sid}'", layer="segments")
        assert f"owner (String) = {owner}" in text and f"road (String) = {road}" in text
    if fmt == "geojson":  # RFC 7946: CRS84 longitude, latitude, height
        doc = json.loads((out / "points.geojson").read_text(encoding="utf-8"))
        got = {f["properties"]["id"]: f["geometry"]["coordinates"] for f in doc["features"][:20]}
        rows = sql(demo, "SELECT id, ST_X(ST_Transform(geom, 4326)), ST_Y(ST_Transform(geom, 4326)), "
                   "ST_Z(geom) FROM current_node WHERE id = ANY(:i)", i=list(got))
        for pid, lon, lat, z in rows:
            assert got[pid] == pytest.approx([lon, lat, z], abs=1e-6)


def test_geopackage_round_trips(demo: sa.Engine, tmp_path: Path) -> None:
    out = tmp_path / "net.gpkg"
    export_network(demo, out, "gpkg")
    summary = ogrinfo(out, "-so", layer="segments")
    assert "EPSG\",4548" in summary.replace(" ", "")
    for kind, layer in (("node", "points"), ("segment", "segments")):
        got = read(out, layer).set_index("id").sort_index()
        names = [c.name for c in columns(kind, exported=True)]
        assert list(got.columns[:-1]) == names  # the catalogue's exported columns, in order
        cols = [c for c in names if c != "valid_from"]
        rows = sql(demo, f"SELECT id, {', '.join(cols)}, ST_AsBinary(geom) FROM current_{kind} ORDER BY id")
        want = pd.DataFrame([r[1:-1] for r in rows], columns=cols, index=[r[0] for r in rows])
        assert list(got.index) == list(want.index)
        for c in cols:
            a, b = got[c].to_numpy(dtype=object), want[c].to_numpy(dtype=object)
            same = [(x == y) or (pd.isna(x) and pd.isna(y)) for x, y in zip(a, b, strict=True)]
            assert all(same), (kind, c)
        geoms = shapely.from_wkb([bytes(r[-1]) for r in rows])
        assert shapely.equals_exact(got['geometry'].to_numpy(), geoms, tolerance=0, normalize=False).all()
        assert shapely.has_z(got['geometry'].to_numpy()).all()
        types = dict(line.split(": ", 1) for line in ogrinfo(out, "-so", layer=layer).splitlines()
                     if ": " in line and line.split(":")[0] in names)
        for c in columns(kind, exported=True):
            expect = {"string": "String", "number": "Real", "integer": "Integer",
                      "boolean": "Integer(Boolean)"}[c.type]
            assert types[c.name].startswith(expect), (c.name, types[c.name])


def test_selection_by_utility_box_and_time(demo: sa.Engine, tmp_path: Path) -> None:
    ((x0, y0, x1, y1),) = sql(demo, "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                              "(SELECT ST_Extent(geom) e FROM current_segment) s")
    box = (x0 + 0.31 * (x1 - x0), y0 + 0.27 * (y1 - y0), x0 + 0.63 * (x1 - x0), y0 + 0.58 * (y1 - y0))
    bbox = ",".join(str(v) for v in box)
    report = export_network(demo, tmp_path / "ws.gpkg", "gpkg", utility="WS", bbox=bbox)
    expected = {i for (i,) in sql(
        demo, "SELECT id FROM current_segment WHERE subtype = 'WS' AND ST_Intersects(geom, "
        "ST_MakeEnvelope(:a, :b, :c, :d, 4548))", a=box[0], b=box[1], c=box[2], d=box[3])}
    segs = read(tmp_path / "ws.gpkg", "segments")
    points = read(tmp_path / "ws.gpkg", "points")
    assert expected and set(segs["id"]) == expected and report.counts["segments"] == len(expected)
    # every segment comes with both of its points
    assert set(segs["from_node"]) | set(segs["to_node"]) <= set(points["id"])
    # the network as it was: a pipe retired after `at` is still in
    ((sid,),) = sql(demo, "SELECT id FROM current_segment WHERE utility = 'TX' ORDER BY id LIMIT 1")
    ((before,),) = sql(demo, "SELECT now()")
    with demo.begin() as conn:
        retire(conn, "tests", "segment", sid, "test")
    old = export_network(demo, tmp_path / "old.gpkg", "gpkg", utility="TX", at=before.isoformat())
    new = export_network(demo, tmp_path / "new.gpkg", "gpkg", utility="TX")
    assert old.counts["segments"] == new.counts["segments"] + 1
    assert sid in set(read(tmp_path / "old.gpkg", "segments")["id"])
    assert sid not in set(read(tmp_path / "new.gpkg", "segments")["id"])
    for bad in ({"utility": "ZZ"}, {"bbox": "1,2,3"}, {"at": "yesterday"}):
        with pytest.raises(InputError):
            export_network(demo, tmp_path / "x.gpkg", "gpkg", **bad)
    with pytest.raises(InputError):
        export_network(demo, tmp_path / "x.inp", "inp", utility="RQ")
    (tmp_path / "a-file").write_text("")
    with pytest.raises(InputError, match="not a folder"):
        export_network(demo, tmp_path / "a-file", "shp")


def test_dxf_drawing(demo: sa.Engine, tmp_path: Path) -> None:
    out = tmp_path / "net.dxf"
    export_network(demo, out, "dxf")
    doc = ezdxf.readfile(out)
    auditor = doc.audit()
    assert not auditor.has_errors, [str(e) for e in auditor.errors]
    msp = doc.modelspace()
    per_utility = dict(sql(demo, "SELECT utility, count(*) FROM current_segment GROUP BY 1"))
    nodes = dict(sql(demo, "SELECT utility, count(*) FROM current_node GROUP BY 1"))
    for code, n in per_utility.items():
        layer = doc.layers.get(f"{code}_{UTILITIES[code].name_zh}")
        assert layer.rgb == UTILITIES[code].rgb  # the CJJ 61 colour
        lines = msp.query(f'POLYLINE[layer=="{layer.dxf.name}"]')
        assert len(lines) == n and all(p.is_3d_polyline for p in lines)
        assert len(msp.query(f'INSERT[layer=="{layer.dxf.name}"]')) == nodes[code]
    # a label with size, material and depth on a known pipe, at its middle
    ((size, material, depth, mx, my),) = sql(
        demo, "SELECT size_text, material, from_depth_m, ST_X(ST_LineInterpolatePoint(geom, 0.5)), "
        "ST_Y(ST_LineInterpolatePoint(geom, 0.5)) FROM current_segment WHERE utility = 'JS' "
        "AND from_depth_m = to_depth_m ORDER BY id LIMIT 1")
    texts = [t for t in msp.query("TEXT") if t.dxf.text == f"{size} {material} H{depth:.2f}"]
    assert any(abs(t.dxf.align_point.x - mx) < 0.01 and abs(t.dxf.align_point.y - my) < 0.01
               for t in texts)
    assert {b.dxf.name for b in msp.query("INSERT")} >= {"阀门", "检查井"}
    summary = ogrinfo(out, "-so", "-al")  # GDAL reads the drawing too
    assert feature_counts(summary)["entities"] >= sum(per_utility.values())


def test_cjj61_tables_reimport_as_the_same_network(demo: sa.Engine, twin_settings, tmp_path: Path
                                                   ) -> None:
    report = export_network(demo, tmp_path / "cjj", "cjj61")
    assert [Path(f).name for f in report.files] == ["points.csv", "segments.csv"]
    fresh = twin_settings.model_copy(update={"db_schema": twin_settings.db_schema + "_rt"})
    drop_schema(fresh)
    try:
        back = ingest_survey(tmp_path / "cjj" / "points.csv", tmp_path / "cjj" / "segments.csv", fresh)
        assert back.status == "applied" and not back.error_count, back
        engine = open_twin(fresh)
        try:
            for kind in KINDS:
                cols = [c.name for c in columns(kind) if not c.versioning]
                q = f"SELECT {', '.join(cols)}, ST_AsEWKB(geom) FROM current_{kind} ORDER BY id"
                assert sql(engine, q) == sql(demo, q), kind
        finally:
            engine.dispose()
    finally:
        drop_schema(fresh)
    # the XLSX workbooks read as the same tables
    export_network(demo, tmp_path / "xlsx", "cjj61", xlsx=True)
    csv = read_survey(tmp_path / "cjj" / "points.csv", tmp_path / "cjj" / "segments.csv")
    xlsx = read_survey(tmp_path / "xlsx" / "points.xlsx", tmp_path / "xlsx" / "segments.xlsx")
    for a, b in ((csv.points, xlsx.points), (csv.segments, xlsx.segments)):
        assert list(a.columns) == list(b.columns)
        for c in a.columns.drop("_row", errors="ignore"):
            x = [_cell(v) for v in a[c]]
            y = [_cell(v) for v in b[c]]
            assert x == y, c


def _cell(v: object) -> object:
    """A cell as text, numbers normalised (CSV gives '1.40', XLSX 1.4)."""
    if v is None or pd.isna(v):
        return None
    try:
        f = float(v)
        return None if np.isnan(f) else f
    except (TypeError, ValueError):
        return str(v)


def same_partition(a: pd.Series, b: pd.Series) -> bool:
    pairs = pd.DataFrame({"a": a.to_numpy(), "b": b.reindex(a.index).to_numpy()}).drop_duplicates()
    return len(pairs) == pairs["a"].nunique() == pairs["b"].nunique()


def test_epanet_model_and_valve_segments(demo: sa.Engine, tmp_path: Path) -> None:
    out = tmp_path / "water.inp"
    report = export_network(demo, out, "inp")
    wn = wntr.network.WaterNetworkModel(str(out))
    rows = sql(demo, "SELECT id, length_m, diameter_mm FROM current_segment "
               "WHERE utility = 'JS' AND status = 'active' ORDER BY id")
    assert sorted(wn.pipe_name_list) == [r[0] for r in rows]
    for sid, length, diameter in rows[:40]:
        pipe = wn.get_link(sid)
        assert pipe.length == pytest.approx(length, rel=1e-6)
        assert pipe.diameter == pytest.approx(diameter / 1000, rel=1e-6)
    sources = dict(sql(demo, "SELECT node_id, kind FROM current_source WHERE utility = 'JS'"))
    assert set(wn.reservoir_name_list) | set(wn.tank_name_list) == set(sources)
    ground = dict(sql(demo, "SELECT id, ground_z FROM current_node WHERE id = ANY(:i)",
                      i=wn.junction_name_list[:40]))
    for nid, z in ground.items():
        assert wn.get_node(nid).elevation == pytest.approx(z, abs=1e-6)
    layer = pd.read_csv(tmp_path / "water.valves.csv", index_col=0, dtype=str)
    assert report.counts["valves"] == len(layer) > 0
    node_seg, link_seg, _ = wntr.metrics.topographic.valve_segments(wn.to_graph(), layer.copy())
    model = build_model(demo, ["JS"])  # the twin's own shutoff segments
    twin_links = pd.Series(model.link_seg, index=model.links["id"].to_numpy())
    twin_nodes = pd.Series(model.node_seg, index=model.nodes["id"].to_numpy())
    assert set(twin_links.index) == set(link_seg.index)
    # the inp holds the points of the active pipes; the twin's model every water point (a point
    # on no active pipe is a segment of its own there)
    assert set(node_seg.index) <= set(twin_nodes.index)
    twin_all = pd.concat([twin_links, twin_nodes[node_seg.index]]).set_axis(
        [*("L" + twin_links.index), *("N" + node_seg.index)])
    wntr_all = pd.concat([link_seg, node_seg]).set_axis([*("L" + link_seg.index), *("N" + node_seg.index)])
    assert same_partition(twin_all, wntr_all)


def test_cli_export(twin_settings, demo: sa.Engine, tmp_path: Path) -> None:
    env = {**os.environ, "TWIN_DB_SCHEMA": twin_settings.db_schema, "TWIN_USER": "exporter"}
    since = datetime.now(UTC)
    r = subprocess.run([TWIN, "export", str(tmp_path / "js.gpkg"), "--format", "gpkg", "--utility", "JS",
                        "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    ((n,),) = sql(demo, "SELECT count(*) FROM current_segment WHERE utility = 'JS'")
    assert doc["counts"]["segments"] == n and doc["selection"]["utility"] == "JS"
    assert feature_counts(ogrinfo(tmp_path / "js.gpkg", "-so", "-al"))["segments"] == n
    audit = sql(demo, "SELECT user_name, action, params FROM audit_log WHERE at >= :t", t=since)
    assert any(u == "exporter" and a == "export" and p["format"] == "gpkg" for u, a, p in audit)
    with pytest.raises(InputError, match="kml"):  # the command prints it as `error [INPUT] ...`
        export_network(demo, tmp_path / "x", "kml")


def test_shapefile_names_are_short_unique_and_stable() -> None:
    for kind in KINDS:
        names = ["id", *(c.name for c in columns(kind, exported=True))]
        short = shapefile_names(names)
        assert len(set(short.values())) == len(names)
        assert all(len(s.encode()) <= 10 for s in short.values())
        assert shapefile_names(names) == short
    assert shapefile_names(["pressure_mpa", "pressure_mpb"]) == {
        "pressure_mpa": "pres_mpa", "pressure_mpb": "pres_mpb"}
    assert shapefile_names(["abcdefghijk", "abcdefghijz"]) == {
        "abcdefghijk": "abcdefghij", "abcdefghijz": "abcdefghi1"}
