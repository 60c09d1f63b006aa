"""Proposals given as CJJ 61 point and segment tables: the same checks and centrelines as an
import, read back exactly by the GeoJSON proposal reader, and checked against the small survey."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from analysis.ground import GroundModel
from analysis.proposal import check_proposal
from analysis.proposal_input import read_proposal
from ingest.prepare import prepare
from ingest.proposal_tables import tables_to_geojson
from ingest.sample import POINT_HEADERS, SEGMENT_HEADERS
from ingest.tables import read_survey
from twin.crs import twin_crs
from twin.errors import InputError
from twin.settings import get_settings

SETTINGS = get_settings()
# The small survey's main JS1-JS2 runs along N 4035000 from E 410000 to E 410040 (DN300, 1.4 m to
# its top, ground about 35.19 at E 410020: centre about 33.64).
E, N = 410020.0, 4035000.0

#: Proposed points: id, utility, X (northing), Y (easting), ground.
POINTS = [
    ("G1", "RQ", N - 5, E, 35.20),         # a gas main crossing JS1-JS2 square at E 410020,
    ("G2", "RQ", N + 5, E, 35.18),         # clear of the drain at N - 10 and the cables at N + 10
    ("G3", "RQ", N + 5, E + 15, 35.16),
    ("Y1", "YS", N - 30, E - 15, 35.30),   # a storm drain (depths to the invert)
    ("Y2", "YS", N - 30, E + 25, 35.25),
    ("D1", "DL", N - 40, E - 15, 35.30),   # a power duct bank 600X400 (depths to its top)
    ("D2", "DL", N - 40, E + 25, 35.25),
]
#: Proposed segments: from, to, utility, depths, size, material, pressure.
SEGMENTS = [
    ("G1", "G2", "RQ", "1.45", "1.43", "DN200", "PE", "0.2"),
    ("G2", "G3", "RQ", "1.43", "1.20", "DN200", "PE", "0.2"),
    ("Y1", "Y2", "YS", "2.50", "2.60", "DN600", "砼", ""),
    ("D1", "D2", "DL", "0.80", "0.80", "600X400", "", "10"),
]


def write_tables(folder: Path, points=POINTS, segments=SEGMENTS) -> tuple[Path, Path]:
    """The proposal's point and segment tables as CSV in ``folder``."""
    p, s = folder / "points.csv", folder / "segments.csv"
    with p.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(POINT_HEADERS)
        for pid, utility, x, y, ground in points:
            row = dict.fromkeys(POINT_HEADERS, "")
            row.update({"物探点号": pid, "管线类型": utility, "特征": "直线点", "X": f"{x:.3f}", "Y": f"{y:.3f}",
                        "地面高程": f"{ground:.3f}"})
            w.writerow(row.values())
    with s.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(SEGMENT_HEADERS)
        for a, b, utility, d1, d2, size, material, pressure in segments:
            row = dict.fromkeys(SEGMENT_HEADERS, "")
            row.update({"起点号": a, "终点号": b, "管线类型": utility, "起点埋深": d1, "终点埋深": d2,
                        "管径/断面": size, "材质": material, "压力/电压": pressure, "权属单位": "设计院",
                        "道路名称": "东昌路"})
            w.writerow(row.values())
    return p, s


def test_round_trip_gives_the_prepared_centrelines(tmp_path):
    points, segments = write_tables(tmp_path)
    doc = tables_to_geojson(points, segments, SETTINGS)
    assert doc["type"] == "FeatureCollection" and doc["crs"]["properties"]["name"].endswith("EPSG::4548")

    prepared = prepare(read_survey(points, segments), SETTINGS, twin_crs(SETTINGS.crs), check_long=False)
    want = prepared.segments.set_index("id")
    props = {f["properties"]["id"]: f["properties"] for f in doc["features"]}
    assert list(props) == list(want.index) == ["G1-G2", "G2-G3", "Y1-Y2", "D1-D2"]
    assert props["G1-G2"] == {"id": "G1-G2", "utility": "RQ", "diameter_mm": 200.0, "size": "DN200",
                              "z_reference": "centre", "material": "PE", "road": "东昌路", "owner": "设计院",
                              "pressure_mpa": 0.2}
    assert (props["D1-D2"]["width_mm"], props["D1-D2"]["height_mm"], props["D1-D2"]["voltage_kv"]) == (600, 400, 10)
    # survey X is northing: the gas main runs north along E 410020
    assert doc["features"][0]["geometry"]["coordinates"][0][:2] == [E, N - 5]

    # no database: the heights are z, the ground only fills in depths
    flat = GroundModel(np.array([[E - 100, N - 100], [E + 100, N - 100], [E - 100, N + 100]], float), np.full(3, 35.2))
    net = read_proposal(doc, SETTINGS, ground=flat)
    got = net.segments.set_index("id").loc[want.index]
    assert got.index.tolist() == net.segments["id"].tolist()  # vertices in the same order
    np.testing.assert_allclose(net.vertices[net.offsets[:-1]], want[["x1", "y1", "from_z"]].to_numpy(float),
                               atol=1e-3)
    np.testing.assert_allclose(net.vertices[net.offsets[1:] - 1], want[["x2", "y2", "to_z"]].to_numpy(float),
                               atol=1e-3)
    np.testing.assert_allclose(got[["from_z", "to_z"]].to_numpy(float), want[["from_z", "to_z"]].to_numpy(float),
                               atol=1e-3)
    np.testing.assert_allclose(got["length_m"].to_numpy(float), want["length_m"].to_numpy(float), atol=1e-3)
    assert got["utility"].tolist() == ["RQ", "RQ", "PS", "DL"] and got["shape"].tolist()[-1] == "rect"
    # the invert-referenced drain sits above its invert, the duct below its top
    y = want.loc["Y1-Y2"]
    assert y["from_z"] == pytest.approx(35.30 - 2.50 + 0.3, abs=1e-9)
    assert want.loc["D1-D2", "from_z"] == pytest.approx(35.30 - 0.80 - 0.2, abs=1e-9)


@pytest.mark.parametrize(("points", "segments", "code"), [
    # an end point missing from the point table
    (POINTS, [("G1", "G9", "RQ", "1.4", "1.4", "DN200", "PE", "")], "E202"),
    # a size nobody can read
    (POINTS, [("G1", "G2", "RQ", "1.4", "1.4", "big", "PE", "")], "E305"),
    # a depth that puts the pipe in the air
    (POINTS, [("G1", "G2", "RQ", "-0.5", "1.4", "DN200", "PE", "")], "E302"),
])
def test_a_table_with_an_error_is_refused_with_its_check_code(tmp_path, points, segments, code):
    p, s = write_tables(tmp_path, points, segments)
    with pytest.raises(InputError, match=code) as info:
        tables_to_geojson(p, s, SETTINGS)
    assert info.value.code == code and "row 2" in info.value.message


def test_unreadable_tables_and_bad_axis_order_are_input_errors(tmp_path):
    p, s = write_tables(tmp_path)
    with pytest.raises(InputError, match="axis order"):
        tables_to_geojson(p, s, SETTINGS, axis_order="xy")
    with pytest.raises(InputError):
        tables_to_geojson(p, tmp_path / "missing.csv", SETTINGS)
    s.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(InputError):
        tables_to_geojson(p, s, SETTINGS)


# --------------------------------------------------------------------------- against the twin

@pytest.fixture(scope="module")
def small_twin(twin_settings, twin_engine):
    from ingest.pipeline import ingest_survey
    from tests.conftest import SMALL

    report = ingest_survey(SMALL / "points.csv", SMALL / "segments.csv", twin_settings, scope="small")
    assert report.status == "applied"
    return twin_engine


def test_tables_proposal_collides_with_the_main_it_crosses(small_twin, twin_settings, tmp_path):
    p, s = write_tables(tmp_path, POINTS[:3], SEGMENTS[:2])
    doc = tables_to_geojson(p, s, twin_settings)
    report = check_proposal(small_twin, doc, twin_settings, name="gas from tables")
    hard = [f for f in report.findings if f.kind == "collision"]
    assert [sorted(f.ids) for f in hard] == [["G1-G2", "JS1-JS2"]]
    # gas centre 35.19 - 1.44 - 0.10 = 33.65 at the crossing, the main's 33.64: centres 1 cm apart,
    # the solids (radii 0.10 + 0.15) overlap by about 0.24 m
    assert hard[0].shortfall_m == pytest.approx(0.24, abs=0.01)
