"""`twin ingest gis`: GIS and CAD datasets through the survey pipeline into the real PostGIS.

Every fixture is written here from the small survey (tests/data/small) with pyogrio (GDAL) or
ezdxf; the reference is the same survey read from its CSV tables by the survey reader.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import ezdxf
import numpy as np
import pandas as pd
import pytest
import shapely
import sqlalchemy as sa
from pyogrio.raw import write
from typer.testing import CliRunner

from ingest.cli import app as ingest_app
from ingest.gis import SNAP_M, ingest_gis, parse_columns, read_gis
from ingest.prepare import prepare
from ingest.tables import read_survey
from tests.conftest import SMALL
from twin.crs import transformer, twin_crs
from twin.errors import InputError
from twin.settings import TwinSettings

MM = 1e-3
#: Point and segment fields written to the layers (survey names, as contractors' GIS keeps them).
POINT_FIELDS = {"point_id": "物探点号", "utility": "管线类型", "feature": "特征", "appurtenance": "附属物",
                "ground_z": "地面高程", "depth": "埋深", "remarks": "备注"}
SEGMENT_FIELDS = {"from_id": "起点号", "to_id": "终点号", "utility": "管线类型", "from_depth": "起点埋深",
                  "to_depth": "终点埋深", "size": "管径", "material": "材质", "road": "道路名称"}


# ----------------------------------------------------------------------------- the reference
@pytest.fixture(scope="module")
def ref(twin_settings: TwinSettings) -> dict:
    """The small survey from its CSV tables: the tables and the prepared features."""
    tables = read_survey(SMALL / "points.csv", SMALL / "segments.csv")
    prepared = prepare(tables, twin_settings, twin_crs(twin_settings.crs))
    nodes = prepared.nodes.set_index("id")
    segments = prepared.segments.set_index("id")
    return {"points": tables.points, "segments": tables.segments, "nodes": nodes, "segs": segments}


def _node_xy(ref: dict, ids) -> np.ndarray:
    n = ref["nodes"].loc[list(ids)]
    return np.column_stack([n["easting"].to_numpy(float), n["northing"].to_numpy(float)])


def _point_layer(ref: dict, names: dict[str, str] = POINT_FIELDS, *, z: bool = False):
    p = ref["points"]
    xy = _node_xy(ref, p["point_id"])
    coords = np.column_stack([xy, p["ground_z"].astype(float)]) if z else xy
    fields = [p[c].to_numpy(dtype=object) for c in names]
    return shapely.to_wkb(shapely.points(coords)), fields, list(names.values())


def _line_layer(ref: dict, names: dict[str, str] = SEGMENT_FIELDS, *, z: bool = False):
    s, segs = ref["segments"], ref["segs"]
    start, end = _node_xy(ref, s["from_id"]), _node_xy(ref, s["to_id"])
    if z:
        ids = s["from_id"] + "-" + s["to_id"]
        start = np.column_stack([start, segs.loc[ids, "from_z"].to_numpy(float)])
        end = np.column_stack([end, segs.loc[ids, "to_z"].to_numpy(float)])
    lines = shapely.linestrings(np.stack([start, end], axis=1))
    fields = [s[c].to_numpy(dtype=object) for c in names]
    return shapely.to_wkb(lines), fields, list(names.values())


def _write_pair(path: Path, ref: dict, driver: str, *, crs: str = "EPSG:4548", encoding: str | None = None,
                points: str = "管点", lines: str = "管线", **kw) -> None:
    g, f, n = _point_layer(ref)
    opts = {"encoding": encoding} if encoding else {}
    write(str(path), g, f, n, layer=points, driver=driver, geometry_type="Point", crs=crs, **opts, **kw)
    g, f, n = _line_layer(ref)
    target = path if driver != "ESRI Shapefile" else path.with_name(f"{lines}.shp")
    write(str(target), g, f, n, layer=lines, driver=driver, geometry_type="LineString", crs=crs,
          append=driver in ("GPKG", "OpenFileGDB"), **opts, **kw)


# ----------------------------------------------------------------------------- the twin side
def _twin_state(engine: sa.Engine, scope: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    with engine.connect() as conn:
        nodes = pd.read_sql(sa.text(
            "SELECT id, ST_X(geom) AS e, ST_Y(geom) AS n, ground_z, utility, appurtenance "
            "FROM current_node WHERE scope = :s ORDER BY id"), conn, params={"s": scope})
        segs = pd.read_sql(sa.text(
            "SELECT id, from_node, to_node, utility, diameter_mm, material, road, from_z, to_z, "
            "ST_NPoints(geom) AS npoints FROM current_segment WHERE scope = :s ORDER BY id"),
            conn, params={"s": scope})
    return nodes.set_index("id"), segs.set_index("id")


def _assert_same_network(engine: sa.Engine, scope: str, ref: dict, *, attributes: bool = True) -> None:
    """The scope holds the small survey: counts, positions and heights within 1 mm, attributes."""
    nodes, segs = _twin_state(engine, scope)
    want_n, want_s = ref["nodes"], ref["segs"]
    assert sorted(nodes.index) == sorted(want_n.index)
    assert sorted(segs.index) == sorted(want_s.index)
    want_n = want_n.loc[nodes.index]
    np.testing.assert_allclose(nodes["e"], want_n["easting"].astype(float), atol=MM, rtol=0)
    np.testing.assert_allclose(nodes["n"], want_n["northing"].astype(float), atol=MM, rtol=0)
    np.testing.assert_allclose(nodes["ground_z"], want_n["ground_z"].astype(float), atol=MM, rtol=0)
    want_s = want_s.loc[segs.index]
    np.testing.assert_allclose(segs["from_z"], want_s["from_z"].astype(float), atol=MM, rtol=0)
    np.testing.assert_allclose(segs["to_z"], want_s["to_z"].astype(float), atol=MM, rtol=0)
    assert segs["diameter_mm"].fillna(-1).tolist() == want_s["diameter_mm"].fillna(-1).tolist()
    assert segs["utility"].tolist() == want_s["utility"].tolist()
    if attributes:
        assert segs["material"].tolist() == want_s["material"].tolist()
        assert segs["road"].tolist() == want_s["road"].tolist()
        assert nodes["appurtenance"].fillna("").tolist() == want_n["appurtenance"].fillna("").tolist()


def _applied(report) -> None:
    assert report.status == "applied", [i.as_dict() for i in report.errors]
    assert report.error_count == 0


# ----------------------------------------------------------------------------- formats
def _zip(folder: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w") as z:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                z.write(f, f.relative_to(folder.parent))
    return out


@pytest.mark.parametrize("fmt", ["gpkg", "shp-gbk", "shp-gbk-no-cpg", "shp-zip", "filegdb-zip"])
def test_point_and_line_layers_round_trip(fmt, ref, twin_settings, twin_engine, tmp_path) -> None:
    if fmt == "gpkg":
        source = tmp_path / "net.gpkg"
        _write_pair(source, ref, "GPKG")
    elif fmt.startswith("shp"):
        source = tmp_path / "shp"
        source.mkdir()
        _write_pair(source / "管点.shp", ref, "ESRI Shapefile", encoding="GBK")
        assert (source / "管线.cpg").read_text().strip().upper() == "GBK"
        assert "东昌路".encode("gbk") in (source / "管线.dbf").read_bytes()  # really GBK on disk
        if fmt == "shp-zip":
            source = _zip(source, tmp_path / "shp.zip")
        if fmt == "shp-gbk-no-cpg":  # as old systems write them: GBK is recognised all the same
            for cpg in source.glob("*.cpg"):
                cpg.unlink()
    else:
        _write_pair(tmp_path / "net.gdb", ref, "OpenFileGDB")
        source = _zip(tmp_path / "net.gdb", tmp_path / "net.gdb.zip")
    # One scope for every format: each import must leave the same network.
    report = ingest_gis(twin_settings, source, scope="gis")
    _applied(report)
    counts = report.counts
    assert (counts["nodes"], counts["segments"]) == (len(ref["nodes"]), len(ref["segs"]))
    assert (counts["valves"], counts["sources"], counts["customers"]) == (2, 1, 1)
    assert counts["gis"]["points_read"] == len(ref["nodes"])
    _assert_same_network(twin_engine, "gis", ref)


def _write_dxf(path: Path, ref: dict) -> None:
    """The small survey as a CAD drawing: 3D polylines on a layer per utility, labelled as
    `twin export --format dxf` labels them (size, material, H depth)."""
    doc = ezdxf.new()
    msp = doc.modelspace()
    s, segs = ref["segments"], ref["segs"]
    for row in s.itertuples():
        seg = segs.loc[f"{row.from_id}-{row.to_id}"]
        layer = row.utility
        if layer not in doc.layers:
            doc.layers.add(layer)
        a = (seg["x1"], seg["y1"], seg["from_z"])
        b = (seg["x2"], seg["y2"], seg["to_z"])
        msp.add_polyline3d([a, b], dxfattribs={"layer": layer})
        middle = ((a[0] + b[0]) / 2 + 0.3, (a[1] + b[1]) / 2 + 0.3)
        depths = row.from_depth if row.from_depth == row.to_depth else f"{row.from_depth}-{row.to_depth}"
        msp.add_text(f"{row.size} {row.material} H{depths}",
                     dxfattribs={"layer": layer, "insert": middle, "height": 0.5})
    doc.saveas(path)


def _line_source(fmt: str, ref: dict, tmp_path: Path, twin_settings: TwinSettings) -> tuple[Path, dict]:
    """A lines-only source (3D lines with depths) and the ingest's options."""
    names = {"utility": "管线类型", "size": "管径", "material": "材质", "from_depth": "起点埋深",
             "to_depth": "终点埋深", "road": "道路名称"}
    g, f, n = _line_layer(ref, names, z=True)
    if fmt == "dxf":
        path = tmp_path / "管线图.dxf"
        _write_dxf(path, ref)
        return path, {}
    if fmt == "geojson-4326":  # WGS84 lon/lat: transformed back to the twin's CRS
        to_geo = transformer(twin_settings.crs, "EPSG:4326")

        def lonlat(xyz: np.ndarray) -> np.ndarray:
            return np.column_stack([*to_geo.transform(xyz[:, 0], xyz[:, 1]), xyz[:, 2]])

        geo = shapely.transform(shapely.from_wkb(g), lonlat, include_z=True)
        path = tmp_path / "管线.geojson"
        write(str(path), shapely.to_wkb(geo), f, n, driver="GeoJSON", crs="EPSG:4326",
              geometry_type="LineString Z", COORDINATE_PRECISION=11)
        return path, {}
    # CSV with WKT and pinyin field names, mapped with --columns; no CRS in the file.
    path = tmp_path / "lines.csv"
    pinyin = ["GXLX", "GJ", "CZ", "QDMS", "ZDMS", "DLMC"]
    frame = pd.DataFrame(dict(zip(pinyin, f, strict=True)))
    frame.insert(0, "WKT", shapely.to_wkt(shapely.from_wkb(g), rounding_precision=6, output_dimension=3))
    frame.to_csv(path, index=False, encoding="utf-8")
    return path, {"columns": ",".join(f"{a}={b}" for a, b in zip(pinyin, n, strict=True)),
                  "crs": twin_settings.crs, "points": None}  # found to hold lines only


@pytest.mark.parametrize("fmt", ["geojson-4326", "csv-wkt", "dxf"])
def test_lines_alone_build_their_nodes(fmt, ref, twin_settings, twin_engine, tmp_path) -> None:
    source, options = _line_source(fmt, ref, tmp_path, twin_settings)
    report = ingest_gis(twin_settings, source, scope=f"lines-{fmt}", **{"points": "", **options})
    _applied(report)
    gis = report.counts["gis"]
    assert gis["nodes_built"] == len(ref["nodes"]) and gis["lines_read"] == len(ref["segs"])
    assert gis["assumed_cover"] == 0  # every end has its depth (DXF: from the label)
    nodes, segs = _twin_state(twin_engine, f"lines-{fmt}")
    assert len(nodes) == len(ref["nodes"]) and len(segs) == len(ref["segs"])
    # Each twin segment is a reference segment: same ends (1 mm), heights (1 mm) and size.
    want = ref["segs"]
    key = want["x1"].round(2).astype(str) + "," + want["y1"].round(2).astype(str) + ">" + \
        want["x2"].round(2).astype(str) + "," + want["y2"].round(2).astype(str)
    want = want.assign(key=key.to_numpy()).set_index("key")
    a = nodes.loc[segs["from_node"]].reset_index(drop=True)
    b = nodes.loc[segs["to_node"]].reset_index(drop=True)
    got_key = (a["e"].round(2).astype(str) + "," + a["n"].round(2).astype(str) + ">"
               + b["e"].round(2).astype(str) + "," + b["n"].round(2).astype(str)).to_numpy()
    match = want.loc[got_key]
    np.testing.assert_allclose(a["e"], match["x1"], atol=MM, rtol=0)
    np.testing.assert_allclose(b["n"], match["y2"], atol=MM, rtol=0)
    np.testing.assert_allclose(segs["from_z"], match["from_z"], atol=MM, rtol=0)
    np.testing.assert_allclose(segs["to_z"], match["to_z"], atol=MM, rtol=0)
    assert segs["diameter_mm"].fillna(-1).tolist() == match["diameter_mm"].fillna(-1).tolist()
    assert segs["utility"].tolist() == match["utility"].tolist()
    if fmt == "dxf":
        assert segs["material"].tolist() == match["material"].tolist()
    # The ground at each node: the pipe's top (invert) plus the depth, as surveyed.
    ground = ref["nodes"].set_index(ref["nodes"]["easting"].round(2).astype(str) + ","
                                    + ref["nodes"]["northing"].round(2).astype(str))["ground_z"]
    got = ground.loc[(a["e"].round(2).astype(str) + "," + a["n"].round(2).astype(str)).to_numpy()]
    np.testing.assert_allclose(a["ground_z"], got.astype(float), atol=MM, rtol=0)


# ----------------------------------------------------------------------------- snapping, errors
def test_snapping_reports_what_it_moved(ref, twin_settings, tmp_path) -> None:
    g, f, n = _line_layer(ref, {"utility": "管线类型", "size": "管径", "from_depth": "起点埋深",
                                "to_depth": "终点埋深"}, z=True)
    lines = shapely.from_wkb(g)
    coords = shapely.get_coordinates(lines, include_z=True)
    shift = np.zeros_like(coords)
    shift[2, 0], shift[3, 1] = 0.03, -0.02  # both ends of line 1 moved: 3 cm east, 2 cm south
    lines = shapely.linestrings((coords + shift).reshape(-1, 2, 3))
    path = tmp_path / "snap.gpkg"
    write(str(path), shapely.to_wkb(lines), f, n, layer="lines", driver="GPKG",
          geometry_type="LineString Z", crs="EPSG:4548")
    report = ingest_gis(twin_settings, path, points="none", dry_run=True)
    assert report.status == "checked", [i.as_dict() for i in report.errors]
    gis = report.counts["gis"]
    assert gis["nodes_built"] == len(ref["nodes"]) and gis["snap_m"] == SNAP_M
    assert gis["ends_snapped"] >= 1 and gis["max_snap_m"] == pytest.approx(0.03, abs=1e-6)
    # A tolerance below the moves keeps the ends apart: more nodes, nothing snapped that far.
    tight = ingest_gis(twin_settings, path, points="none", dry_run=True, snap_m=0.01)
    assert tight.counts["gis"]["nodes_built"] == len(ref["nodes"]) + 2
    assert tight.counts["gis"]["max_snap_m"] == 0.0


def test_2d_lines_without_depths_are_refused(ref, twin_settings, tmp_path) -> None:
    path = tmp_path / "flat.gpkg"
    g, f, n = _point_layer(ref, {k: v for k, v in POINT_FIELDS.items() if k != "depth"})
    write(str(path), g, f, n, layer="管点", driver="GPKG", geometry_type="Point", crs="EPSG:4548")
    g, f, n = _line_layer(ref, {"from_id": "起点号", "to_id": "终点号", "size": "管径"})
    write(str(path), g, f, n, layer="管线", driver="GPKG", geometry_type="LineString", crs="EPSG:4548",
          append=True)
    report = ingest_gis(twin_settings, path, dry_run=True)
    assert report.status == "rejected" and [i.code for i in report.errors] == ["F001"]
    assert "2D lines" in report.errors[0].message and "起点埋深" in report.errors[0].message
    alone = ingest_gis(twin_settings, path, points="", dry_run=True)
    assert alone.status == "rejected" and "起点高程" in alone.errors[0].message


def _batches(engine: sa.Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return (conn.execute(sa.text("SELECT count(*) FROM batch")).scalar(),
                conn.execute(sa.text("SELECT count(*) FROM current_segment")).scalar())


def test_dry_run_and_a_bad_source_write_nothing(ref, twin_settings, twin_engine, tmp_path) -> None:
    before = _batches(twin_engine)
    good = tmp_path / "good.gpkg"
    _write_pair(good, ref, "GPKG")
    report = ingest_gis(twin_settings, good, scope="dry", dry_run=True)
    assert report.status == "checked" and report.counts["segments"] == len(ref["segs"])
    assert _batches(twin_engine) == before
    # One line with an unreadable size sinks the whole batch: nothing lands.
    bad = tmp_path / "bad.gpkg"
    g, f, n = _point_layer(ref)
    write(str(bad), g, f, n, layer="管点", driver="GPKG", geometry_type="Point", crs="EPSG:4548")
    g, f, n = _line_layer(ref)
    f[n.index("管径")] = f[n.index("管径")].copy()
    f[n.index("管径")][3] = "大管"
    write(str(bad), g, f, n, layer="管线", driver="GPKG", geometry_type="LineString", crs="EPSG:4548",
          append=True)
    report = ingest_gis(twin_settings, bad, scope="bad")
    assert report.status == "rejected" and set(report.issue_counts) == {"E305"}
    assert report.errors[0].file == "bad.gpkg:管线" and report.errors[0].row == 4
    # Not a dataset at all, a missing layer, a CRS that is none.
    junk = tmp_path / "junk.gpkg"
    junk.write_bytes(b"not a geopackage" * 10)
    report = ingest_gis(twin_settings, junk)
    assert report.status == "rejected" and report.errors[0].code == "F003"
    with pytest.raises(InputError, match="no layer 'pipes'"):
        read_gis(good, segments="pipes")
    with pytest.raises(InputError, match="not a coordinate reference system"):
        ingest_gis(twin_settings, good, crs="EPSG:99999999")
    assert _batches(twin_engine) == before


def test_columns_option() -> None:
    assert parse_columns("GJ=管径, QDH=起点号,ZDH=to_id") == {"gj": "size", "qdh": "from_id", "zdh": "to_id"}
    assert parse_columns('{"CZ": "材质"}') == {"cz": "material"}
    assert parse_columns(None) == {}
    for bad in ("GJ", "GJ=nonsense", "=管径"):
        with pytest.raises(InputError):
            parse_columns(bad)


def test_command_line(ref, twin_settings, tmp_path) -> None:
    path = tmp_path / "net.gpkg"
    _write_pair(path, ref, "GPKG", points="JS_point", lines="JS_line")
    env = {"TWIN_DB_SCHEMA": twin_settings.db_schema}
    run = CliRunner().invoke
    res = run(ingest_app, ["gis", str(path), "--points", "JS_point", "--segments", "JS_line", "--dry-run",
                           "--json"], env=env)
    assert res.exit_code == 0, res.output[-2000:]
    report = json.loads(res.stdout)
    assert report["status"] == "checked" and report["counts"]["segments"] == len(ref["segs"])
    # Bad options are errors for twin.cli.main to print (error [CODE] message, exit 2).
    res = run(ingest_app, ["gis", str(path), "--crs", "nonsense"], env=env)
    assert isinstance(res.exception, InputError) and "nonsense" in res.exception.message
    res = run(ingest_app, ["gis", str(tmp_path / "missing.gpkg"), "--json"], env=env)
    assert res.exit_code == 1 and json.loads(res.stdout)["errors"][0]["code"] == "F003"


def test_the_twins_own_field_names_need_no_columns(ref, twin_settings, tmp_path) -> None:
    """Catalogue names as `twin export` writes them, cut to 10 bytes in a Shapefile."""
    p, s = ref["points"], ref["segments"]
    nodes = ref["nodes"].loc[p["point_id"]]
    point_fields = {"id": p["point_id"], "utility": nodes["utility"], "subtype": nodes["subtype"],
                    "appurtenan": p["appurtenance"], "ground_z": p["ground_z"], "depth_m": p["depth"]}
    g, _f, _n = _point_layer(ref)
    folder = tmp_path / "export"
    folder.mkdir()
    write(str(folder / "node.shp"), g, [v.to_numpy(dtype=object) for v in point_fields.values()],
          list(point_fields), driver="ESRI Shapefile", geometry_type="Point", crs="EPSG:4548", encoding="GBK")
    segs = ref["segs"].loc[s["from_id"] + "-" + s["to_id"]]
    line_fields = {"from_node": s["from_id"], "to_node": s["to_id"], "utility": segs["utility"],
                   "subtype": segs["subtype"], "size_text": s["size"], "from_dep_m": s["from_depth"],
                   "to_depth_m": s["to_depth"], "material": s["material"]}
    g, _f, _n = _line_layer(ref)
    write(str(folder / "segment.shp"), g, [v.to_numpy(dtype=object) for v in line_fields.values()],
          list(line_fields), driver="ESRI Shapefile", geometry_type="LineString", crs="EPSG:4548",
          encoding="GBK")
    report = ingest_gis(twin_settings, folder, dry_run=True)
    assert report.status == "checked", [i.as_dict() for i in report.errors]
    counts = report.counts
    assert (counts["nodes"], counts["segments"], counts["valves"], counts["sources"]) == (11, 8, 2, 1)
    tables = read_gis(folder)
    assert tables.segments["utility"].tolist() == segs["subtype"].fillna(segs["utility"]).tolist()
