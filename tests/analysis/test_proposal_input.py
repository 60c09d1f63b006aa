"""Proposals as GeoJSON: depths and elevations, sizes, CRS handling, excavations, and the
checks run on them against the small survey on the real PostGIS (library and CLI)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from pyproj import Transformer
from typer.testing import CliRunner

from analysis.clash import collisions
from analysis.clearance import clearances
from analysis.cover import cover_depths
from analysis.ground import GroundModel
from analysis.proposal_input import (
    MAX_EXCAVATION_M2,
    MAX_LENGTH_M,
    MAX_PARTS,
    MAX_POSITIONS,
    TOO_LARGE,
    load_existing_near,
    read_proposal,
)
from twin.errors import InputError
from twin.settings import get_settings

SETTINGS = get_settings()
# a flat ground at 35.0 around the small survey's area (E 410000, N 4035000)
FLAT = GroundModel(np.array([[409900, 4034900], [410200, 4034900], [409900, 4035100], [410200, 4035100]], float),
                   np.full(4, 35.0))


def _line(props: dict, coords=((410020, 4034995), (410020, 4035008)), **extra) -> dict:
    return {"type": "Feature", "properties": props, "geometry": {"type": "LineString", "coordinates": coords},
            **extra}


DEPTH_CASES = [
    # properties, expected centre z at the start, shape, size (d | w, h)
    ({"utility": "JS", "diameter_mm": 300, "depth_m": 1.2}, 35.0 - 1.2 - 0.15, "circular", (300,)),
    ({"utility": "JS", "size": "DN300", "depth_m": 1.2}, 35.0 - 1.2 - 0.15, "circular", (300,)),
    ({"utility": "YS", "size": "D600", "depth_m": 2.5}, 35.0 - 2.5 + 0.30, "circular", (600,)),  # to the invert
    ({"utility": "污水", "size": "Φ400", "depth_m": [2.5, 2.6]}, 35.0 - 2.5 + 0.20, "circular", (400,)),
    ({"utility": "DL", "size": "1000X800", "depth_m": 0.7}, 35.0 - 0.7 - 0.40, "rect", (1000, 800)),
    ({"utility": "TX", "width_mm": 400, "height_mm": 300, "depth_m": 0.8}, 35.0 - 0.8 - 0.15, "rect", (400, 300)),
]


@pytest.mark.parametrize("props,z0,shape,size", DEPTH_CASES)
def test_pipe_from_depth(props, z0, shape, size):
    net = read_proposal(_line(props), SETTINGS, ground=FLAT)
    s = net.segments.iloc[0]
    assert s["from_z"] == pytest.approx(z0, abs=1e-9) and s["shape"] == shape
    assert s["status"] == "proposed" and s["id"] == "P1"
    got = (s["diameter_mm"],) if shape == "circular" else (s["width_mm"], s["height_mm"])
    assert got == size
    assert net.vertices.shape == (2, 3) and net.vertices[0, 2] == pytest.approx(z0)
    assert s["length_m"] == pytest.approx(13.0)


@pytest.mark.parametrize("zref,z_centre", [(None, 33.0 - 0.15), ("top", 33.0 - 0.15), ("centre", 33.0),
                                           ("invert", 33.0 + 0.15)])
def test_pipe_from_elevations(zref, z_centre):
    props = {"utility": "RQ", "size": "DN300", "id": "G-7", **({"z_reference": zref} if zref else {})}
    feat = _line(props, coords=[[410020, 4034995, 33.0], [410020, 4035008, 33.0]])
    net = read_proposal({"type": "FeatureCollection", "features": [feat]}, SETTINGS, ground=FLAT)
    assert net.segments["id"].tolist() == ["G-7"]
    assert net.vertices[:, 2] == pytest.approx([z_centre, z_centre])


@pytest.mark.parametrize("props,message", [
    ({"utility": "JS", "depth_m": 1.2}, "missing size"),
    ({"utility": "JS", "size": "big", "depth_m": 1.2}, "cannot read size"),
    ({"size": "DN300", "depth_m": 1.2}, "missing utility"),
    ({"utility": "ZZ", "size": "DN300", "depth_m": 1.2}, "unknown utility"),
    ({"utility": "JS", "size": "DN300"}, "missing height"),
    ({"utility": "JS", "size": "DN300", "depth_m": -1}, "non-negative"),
    ({"utility": "JS", "size": "DN300", "depth_m": 1, "crs": "EPSG:999999"}, "unknown CRS"),
])
def test_bad_pipes_are_input_errors(props, message):
    with pytest.raises(InputError, match=message):
        read_proposal(_line(props), SETTINGS, ground=FLAT)


@pytest.mark.parametrize("doc,message", [
    ({"type": "Point", "coordinates": [1, 2]}, "LineString or a Polygon"),
    ({"type": "FeatureCollection", "features": []}, "no features"),
    ({"features": []}, "FeatureCollection, Feature or geometry"),
    (_line({"utility": "JS"}, coords=[[410020, 4034990]]), "two or more positions"),
])
def test_bad_documents_are_input_errors(doc, message):
    with pytest.raises(InputError, match=message):
        read_proposal(doc, SETTINGS, ground=FLAT)


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_proposal(tmp_path / "nope.geojson", SETTINGS, ground=FLAT)
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match="not GeoJSON"):
        read_proposal(bad, SETTINGS, ground=FLAT)


def _lonlat(points):
    tr = Transformer.from_crs("EPSG:4548", "OGC:CRS84", always_xy=True)
    return [list(tr.transform(x, y)) for x, y in points]


@pytest.mark.parametrize("crs_member", [None, {"type": "name", "properties": {"name": "EPSG:4326"}},
                                        {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}}])
def test_lonlat_is_transformed(crs_member):
    twin_xy = [(410020.0, 4034990.0), (410020.0, 4035010.0)]
    doc = {"type": "FeatureCollection",
           "features": [_line({"utility": "JS", "size": "DN300", "depth_m": 1.0}, coords=_lonlat(twin_xy))]}
    if crs_member:
        doc["crs"] = crs_member
    net = read_proposal(doc, SETTINGS, ground=FLAT)
    assert net.vertices[:, :2] == pytest.approx(np.array(twin_xy), abs=1e-3)


def test_named_projected_crs_is_transformed():
    # the same place in the 6-degree zone CRS (EPSG:4491, CM 117E too, false easting with zone 20)
    tr = Transformer.from_crs("EPSG:4548", "EPSG:4491", always_xy=True)
    twin_xy = [(410020.0, 4034990.0), (410020.0, 4035010.0)]
    coords = [list(tr.transform(x, y)) for x, y in twin_xy]
    doc = _line({"utility": "JS", "size": "DN300", "depth_m": 1.0, "crs": "EPSG:4491"}, coords=coords)
    net = read_proposal(doc, SETTINGS, ground=FLAT)
    assert net.vertices[:, :2] == pytest.approx(np.array(twin_xy), abs=1e-3)


def test_excavation_polygon_becomes_a_box():
    # a 10 m x 4 m pit turned 30 degrees, 2 m deep, on flat ground
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    corners = [(0, 0), (10, 0), (10, 4), (0, 4), (0, 0)]
    ring = [[410000 + x * c - y * s, 4035000 + x * s + y * c] for x, y in corners]
    doc = {"type": "Feature", "properties": {"depth_m": 2.0, "id": "pit"},
           "geometry": {"type": "Polygon", "coordinates": [ring]}}
    net = read_proposal(doc, SETTINGS, ground=FLAT)
    seg = net.segments.iloc[0]
    assert (seg["utility"], seg["kind"], seg["shape"]) == ("EX", "excavation", "rect")
    assert seg["width_mm"] == pytest.approx(4000) and seg["height_mm"] == pytest.approx(2000)
    assert seg["length_m"] == pytest.approx(10.0)
    assert net.vertices[:, 2] == pytest.approx([34.0, 34.0])
    with pytest.raises(InputError, match="depth_m"):
        read_proposal({**doc, "properties": {}}, SETTINGS, ground=FLAT)


# --------------------------------------------------------------------------- against the twin

@pytest.fixture(scope="module")
def small_twin(twin_settings, twin_engine):
    from ingest.pipeline import ingest_survey
    from tests.conftest import SMALL

    report = ingest_survey(SMALL / "points.csv", SMALL / "segments.csv", twin_settings, scope="small")
    assert report.status == "applied"
    return twin_engine


def test_proposal_clashes_with_the_main_it_crosses(small_twin, twin_settings):
    # a DL DN200 cable pipe 1.5 m deep under JS1-JS2 (DN300, 1.4 m to the top): inside the main
    prop = read_proposal(_line({"utility": "DL", "size": "DN200", "depth_m": 1.5, "id": "cable"}),
                         twin_settings, engine=small_twin)
    existing = load_existing_near(small_twin, prop)
    assert "JS1-JS2" in set(existing.segments["id"]) and "JS3-JS4" not in set(existing.segments["id"])
    (c,) = collisions(existing, prop).hard
    assert (c.a_id, c.b_id, c.proposal) == ("cable", "JS1-JS2", True)
    # ground at E 410020 between JS1 (35.20) and JS2 (35.18): the gap of the centres is 0.05 m
    assert c.overlap_m == pytest.approx(0.15 + 0.10 - 0.05, abs=0.002)
    vertical = [v for v in clearances(existing, prop).violations if v.kind == "vertical"]
    assert {v.b_id for v in vertical} >= {"JS1-JS2"}
    assert cover_depths(existing, prop).violations == []  # 1.5 m is enough for DL direct


def test_shallow_proposal_lacks_cover(small_twin, twin_settings):
    prop = read_proposal(_line({"utility": "RQ", "size": "DN200", "depth_m": 0.5}), twin_settings, engine=small_twin)
    (v,) = cover_depths(load_existing_near(small_twin, prop), prop).violations
    # 0.5 at the vertices; the interpolated ground between them differs by millimetres
    assert v.cover_m == pytest.approx(0.5, abs=0.005) and v.required_m == 0.9 and v.proposal


def test_elevations_take_the_ground_from_the_survey_not_the_pipe(small_twin, twin_settings):
    # A gas main given by z, its top 1.5 m under the survey ground (about 35.2 there): its ends'
    # ground is the survey's, and its cover is 1.5 m, not minus a radius.
    feat = _line({"utility": "RQ", "size": "DN200", "z_reference": "top", "id": "G"},
                 coords=[[410020, 4034995, 35.19 - 1.5], [410020, 4035008, 35.19 - 1.5]])
    prop = read_proposal(feat, twin_settings, engine=small_twin)
    assert prop.node_xyz[:, 2] == pytest.approx([35.19, 35.19], abs=0.03)
    existing = load_existing_near(small_twin, prop)
    ground = GroundModel.from_network(existing, prop)
    assert cover_depths(existing, prop, ground=ground).violations == []  # 1.5 m >= 0.9 m for gas


@pytest.mark.parametrize("coords", [
    [(4034990, 410020), (4035010, 410020)],   # northing, easting: the survey axis order
    [(510020, 3034990), (510020, 3035010)],   # another place altogether
])
def test_wrong_crs_is_refused(small_twin, twin_settings, coords):
    with pytest.raises(InputError, match="wrong CRS"):
        read_proposal(_line({"utility": "JS", "size": "DN300", "depth_m": 1.0}, coords=coords), twin_settings,
                      engine=small_twin)


def test_cli_collision_and_clearance_with_a_proposal(small_twin, twin_settings, tmp_path):
    from analysis.cli import app

    env = {"TWIN_DB_SCHEMA": twin_settings.db_schema}
    good = tmp_path / "cable.geojson"
    good.write_text(json.dumps(_line({"utility": "DL", "size": "DN200", "depth_m": 1.5, "id": "cable"})),
                    encoding="utf-8")
    runner = CliRunner()
    res = runner.invoke(app, ["collision", "--proposal", str(good), "--json"], env=env)
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["counts"]["hard"] == 1 and out["clashes"][0]["b_id"] == "JS1-JS2"
    res = runner.invoke(app, ["clearance", "--proposal", str(good), "--json"], env=env)
    assert res.exit_code == 0 and json.loads(res.output)["counts"]["vertical"] >= 1
    res = runner.invoke(app, ["cover", "--json"], env=env)
    assert res.exit_code == 0 and "violations" in json.loads(res.output)
    res = runner.invoke(app, ["collision"], env=env)  # the tables, whole network
    assert res.exit_code == 0 and "hard clashes" in res.output
    wrong = tmp_path / "wrong.geojson"
    wrong.write_text(json.dumps(_line({"utility": "JS", "size": "DN300", "depth_m": 1.0},
                                      coords=[(4034990, 410020), (4035010, 410020)])), encoding="utf-8")
    res = runner.invoke(app, ["collision", "--proposal", str(wrong)], env=env)
    assert isinstance(res.exception, InputError) and "wrong CRS" in str(res.exception)  # twin's main: exit 2
    nosize = tmp_path / "nosize.geojson"
    nosize.write_text(json.dumps(_line({"utility": "JS", "depth_m": 1.0})), encoding="utf-8")
    res = runner.invoke(app, ["clearance", "--proposal", str(nosize)], env=env)
    assert isinstance(res.exception, InputError) and "missing size" in str(res.exception)


# ----------------------------------------------------------------------------- the budget
def _zigzag(length_m: float) -> list[list[float]]:
    legs = int(length_m // 100) + 1
    return [[410000 + (100 if k % 2 else 0), 4034950 + k] for k in range(legs + 1)]


def _square(side_m: float) -> dict:
    x, y = 410050 - side_m / 2, 4035000 - side_m / 2
    ring = [[x, y], [x + side_m, y], [x + side_m, y + side_m], [x, y + side_m], [x, y]]
    return {"type": "Feature", "properties": {"depth_m": 2.0}, "geometry": {"type": "Polygon", "coordinates": [ring]}}


BUDGET_CASES = [
    # a proposal beyond the budget, and the limit its refusal names
    ({"type": "FeatureCollection", "features": [_line({"utility": "JS", "size": "DN300", "depth_m": 1, "id": f"P{k}"})
                                                for k in range(MAX_PARTS + 1)]}, f"at most {MAX_PARTS} pipes"),
    (_line({"utility": "JS", "size": "DN300", "depth_m": 1},
           coords=[[410020 + 0.01 * k, 4034995] for k in range(MAX_POSITIONS + 1)]), f"{MAX_POSITIONS:,} positions"),
    (_line({"utility": "JS", "size": "DN300", "depth_m": 1}, coords=_zigzag(MAX_LENGTH_M + 200)),
     f"{MAX_LENGTH_M / 1000:g} km"),
    (_square(math.sqrt(MAX_EXCAVATION_M2) + 10), f"{MAX_EXCAVATION_M2:,.0f} m²"),
    # holes count among the positions, as the API counts them
    ({**_square(10), "geometry": {"type": "Polygon", "coordinates": [
        _square(10)["geometry"]["coordinates"][0],
        [[410050 + 0.001 * k, 4035000 + 0.001 * (k % 2)] for k in range(MAX_POSITIONS)]]}}, "positions"),
]


@pytest.mark.parametrize("doc,limit", BUDGET_CASES)
def test_a_proposal_beyond_the_budget_is_refused_naming_the_limit(doc, limit):
    # refused before any database work: no twin is needed (the CLI and the API share this)
    with pytest.raises(InputError, match=limit) as err:
        read_proposal(doc, SETTINGS, ground=FLAT)
    assert err.value.code == TOO_LARGE


def test_lon_lat_is_measured_in_metres():
    # 0.3 degrees of longitude is about 27 km at 36.4 N: too long, though only 0.3 "units"
    doc = _line({"utility": "JS", "size": "DN300", "depth_m": 1}, coords=[[115.9, 36.4], [116.2, 36.4]])
    with pytest.raises(InputError, match="km long") as err:
        read_proposal(doc, SETTINGS, ground=FLAT)
    assert err.value.code == TOO_LARGE


def test_parts_of_different_lengths_gather_their_neighbours(small_twin, twin_settings):
    # a pipe of three positions and an excavation of five: one network around both
    doc = {"type": "FeatureCollection", "features": [
        _line({"utility": "DL", "size": "DN200", "depth_m": 1.5, "id": "cable"},
              coords=[(410020, 4034995), (410020, 4035000), (410020, 4035008)]),
        {**_square(4), "properties": {"depth_m": 2.0, "id": "pit"}}]}
    prop = read_proposal(doc, twin_settings, engine=small_twin)
    existing = load_existing_near(small_twin, prop)
    assert "JS1-JS2" in set(existing.segments["id"])
