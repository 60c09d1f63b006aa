"""ingest.epanet against WNTR's own reading of real EPANET networks (no database)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wntr  # noqa: E402  (a test dependency: the independent reference)

from ingest.epanet import DISTRICT_CENTRE, FLOW_UNITS, default_offset, read_epanet
from ingest.tables import POINT_COLUMNS, SEGMENT_COLUMNS, SurveyTables
from twin.domain import canonical_appurtenance, parse_sizes
from twin.errors import InputError

NETWORKS = Path(os.path.dirname(wntr.__file__)) / "library" / "networks"
NAMES = ["Net3.inp", "ky10.inp", "Net6.inp"]


@pytest.fixture(scope="module", params=NAMES)
def network(request: pytest.FixtureRequest) -> tuple[Path, SurveyTables, object]:
    path = NETWORKS / request.param
    return path, read_epanet(path), wntr.network.WaterNetworkModel(str(path))


# --------------------------------------------------------------------------- real networks


def test_shape_and_columns(network) -> None:
    path, t, wn = network
    assert t.kind == "epanet"
    assert t.points_file == t.segments_file == path.name
    assert len(t.files) == 1 and t.files[0].name == path.name and t.files[0].bytes == path.stat().st_size
    assert list(t.points.columns[: len(POINT_COLUMNS)]) == list(POINT_COLUMNS)
    assert set(SEGMENT_COLUMNS) <= set(t.segments.columns)
    assert {"_row", "vertices", "link_type", "normally_closed"} <= set(t.segments.columns)
    for frame, cols in ((t.points, POINT_COLUMNS), (t.segments, SEGMENT_COLUMNS)):
        for c in cols:
            assert frame[c].dtype == object, c
            assert frame[c].map(lambda v: v is None or isinstance(v, str)).all(), c
    assert t.valves is None


def test_counts_and_ends(network) -> None:
    _, t, wn = network
    assert len(t.points) == wn.num_nodes
    assert len(t.segments) == wn.num_links
    assert set(t.points["point_id"]) == set(wn.node_name_list)
    counts = t.segments["link_type"].value_counts().to_dict()
    assert counts.get("pipe", 0) == wn.num_pipes
    assert counts.get("pump", 0) == wn.num_pumps
    assert counts.get("valve", 0) == wn.num_valves
    ends = t.segments.set_index("id")
    for name, link in wn.links():
        assert ends.at[name, "from_id"] == link.start_node_name
        assert ends.at[name, "to_id"] == link.end_node_name
    assert (t.segments["utility"] == "JS").all() and (t.points["utility"] == "JS").all()
    assert (t.segments["status"] == "active").all()


def test_diameters_mm(network) -> None:
    _, t, wn = network
    sizes = parse_sizes(t.segments["size"])
    assert not sizes["bad"].any()
    mm = pd.Series(sizes["diameter_mm"].to_numpy(), index=t.segments["id"])
    for name, link in list(wn.pipes()) + list(wn.valves()):
        assert abs(mm[name] - link.diameter * 1000.0) <= 0.1, name
    pumps = t.segments[t.segments["link_type"] == "pump"]
    assert (pumps["remarks"].str.startswith("pump")).all()
    assert (parse_sizes(pumps["size"])["diameter_mm"] > 0).all()


def test_heights_and_coordinates(network) -> None:
    _, t, wn = network
    p = t.points.set_index("point_id")
    ground = p["ground_z"].astype(float)
    depth = p["depth"].astype(float)
    assert np.allclose(depth, 1.2)
    for name, node in wn.junctions():
        assert abs(ground[name] - 1.2 - node.elevation) < 1e-3, name
    for name, node in wn.tanks():
        assert abs(ground[name] - 1.2 - node.elevation) < 1e-3, name
    for name, node in wn.reservoirs():
        assert abs(ground[name] - 1.2 - node.base_head) < 1e-3, name
    # X is northing, Y is easting.
    north, east = p["x"].astype(float), p["y"].astype(float)
    for name, node in wn.nodes():
        assert abs(east[name] - node.coordinates[0]) < 1e-3, name
        assert abs(north[name] - node.coordinates[1]) < 1e-3, name


def test_vertices(network) -> None:
    _, t, wn = network
    v = t.segments.set_index("id")["vertices"]
    for name, link in wn.links():
        expected = [tuple(map(float, xy)) for xy in link.vertices]
        got = v[name] or []
        assert len(got) == len(expected), name
        assert np.allclose(np.array(got).reshape(-1, 2), np.array(expected).reshape(-1, 2)), name


def test_sources(network) -> None:
    _, t, wn = network
    src = t.sources.set_index("node_id")
    assert set(src.index) == set(wn.reservoir_name_list) | set(wn.tank_name_list)
    for name in wn.reservoir_name_list:
        assert src.at[name, "kind"] == "reservoir"
    for name in wn.tank_name_list:
        assert src.at[name, "kind"] == "tank"
    assert (src["id"] == "SRC-" + src.index.to_series()).all()
    # The survey-table path finds the same sources through the appurtenance.
    canon, unknown = canonical_appurtenance(t.points["appurtenance"])
    assert not unknown.any()
    by_app = set(t.points["point_id"][canon.isin(["water_source", "tank"])])
    assert by_app == set(src.index)


def test_customers(network) -> None:
    _, t, wn = network
    expected = {name: sum(j.demand_timeseries_list.base_demand_list()) for name, j in wn.junctions()}
    expected = {k: v for k, v in expected.items() if v > 0}
    c = t.customers.set_index("node_id")
    assert set(c.index) == set(expected)
    for name, q in expected.items():  # m3/s -> L/s
        assert c.at[name, "demand"] == pytest.approx(q * 1000.0, rel=1e-9)
    assert (c["kind"] == "junction").all() and not c["critical"].any()
    assert (c["id"] == "C-" + c.index.to_series()).all()


def test_row_numbers_point_at_the_defining_line(network) -> None:
    path, t, _ = network
    lines = path.read_text().splitlines()
    for frame, col in ((t.points, "point_id"), (t.segments, "id")):
        sample = frame.iloc[:: max(1, len(frame) // 50)]
        for ident, row in zip(sample[col], sample["_row"], strict=True):
            assert lines[row - 1].split()[0] == ident


def test_closed_pipe_net3() -> None:
    t = read_epanet(NETWORKS / "Net3.inp")
    s = t.segments.set_index("id")
    assert s.at["330", "normally_closed"]
    assert s.at["330", "status"] == "active"
    assert s.normally_closed.sum() == 1
    assert s.at["10", "link_type"] == "pump" and not s.at["10", "normally_closed"]


def test_product_code_does_not_import_wntr() -> None:
    code = "import sys, ingest.epanet; print('wntr' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[2])
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- valve layers


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("placement", [("strategic", 2), ("random", 40)])
def test_valve_layer_round_trip(name: str, placement: tuple[str, int], tmp_path: Path) -> None:
    path = NETWORKS / name
    wn = wntr.network.WaterNetworkModel(str(path))
    layer = wntr.network.generate_valve_layer(wn, placement[0], placement[1], seed=123)
    assert list(layer.columns) == ["link", "node"]
    csv = tmp_path / "valves.csv"
    layer.rename(columns={"link": "pipe"}).to_csv(csv, index=False)
    t = read_epanet(path, valves=csv)
    v = t.valves
    assert list(v.columns[:5]) == ["id", "segment_id", "node_id", "operable", "normally_closed"]
    assert len(v) == len(layer)
    assert list(zip(v["segment_id"], v["node_id"], strict=True)) == list(
        zip(layer["link"], layer["node"], strict=True))
    assert list(v["id"]) == [f"V{i}" for i in range(1, len(v) + 1)]
    assert v["operable"].all() and not v["normally_closed"].any()
    assert [f.name for f in t.files] == [name, "valves.csv"]
    # WNTR's own CSV (index column, 'link' header) reads the same.
    raw = tmp_path / "raw.csv"
    layer.to_csv(raw)
    assert read_epanet(path, valves=raw).valves[["segment_id", "node_id"]].equals(v[["segment_id", "node_id"]])


def test_valve_optional_columns(tmp_path: Path) -> None:
    csv = tmp_path / "v.csv"
    csv.write_text("id,pipe,node,operable,normally_closed,extra\n"
                   "A,330,60,false,1,x\nB,101,10,,,y\n,20,3,True,no,z\n")
    v = read_epanet(NETWORKS / "Net3.inp", valves=csv).valves
    assert list(v["id"]) == ["A", "B", "V3"]
    assert list(v["operable"]) == [False, True, True]
    assert list(v["normally_closed"]) == [True, False, False]
    assert list(v["_row"]) == [2, 3, 4]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("pipe,node\n20,3\n101,3\n", "row 3: node '3' is not an end of pipe '101'"),
        ("pipe,node\nnope,3\n", "row 2: pipe 'nope' is not a link"),
        ("pipe,node,operable\n20,3,maybe\n", "row 2: operable 'maybe'"),
        ("pipe,node\n20,3\n20,3\n", "row 3: a valve on pipe '20' at node '3' is already on row 2"),
        ("link_id,node_id\n20,3\n", "needs a header with columns pipe,node"),
        ("pipe,node\n20,\n", "row 2: pipe and node must both be given"),
    ],
)
def test_bad_valve_layers(tmp_path: Path, body: str, needle: str) -> None:
    csv = tmp_path / "bad.csv"
    csv.write_text(body)
    with pytest.raises(InputError) as err:
        read_epanet(NETWORKS / "Net3.inp", valves=csv)
    assert "bad.csv" in str(err.value)
    assert needle in str(err.value)


# --------------------------------------------------------------------------- small files

SMALL_SI = """\
[TITLE]
small SI network ; a comment

[JUNCTIONS]
;ID  Elev  Demand Pattern
 J1  10.5  2.5          ; first
 J2  11    0
 "J 3"  12
[RESERVOIRS]
 R1  30
[TANKS]
 T1  20  3 0 6 10 0
[PIPES]
 P1  R1  J1  100  300  100  0  Open
 P2  J1  J2  50   200  100  Closed
 P3  J2  "J 3"  50 150  100
 P4  J2  T1  10   250  100  0 CV
[PUMPS]
 PU1  J1  J2  HEAD C1
[VALVES]
 V1  J1  "J 3"  100  prv  30  0
[DEMANDS]
 J2  1.0
 J2  0.5  pat  ; residential
[STATUS]
 V1  Closed
 P2  Open
[OPTIONS]
 units   lps
 Headloss  H-W
[COORDINATES]
 J1  0 0
 J2  100 0
 "J 3"  100 50
 R1  -50 0
 T1  100 -40
[VERTICES]
 P3  110 20
 P3  105 40
[END]
 garbage after end is ignored
"""


def _write(tmp_path: Path, text: str, name: str = "net.inp") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_small_si_network(tmp_path: Path) -> None:
    t = read_epanet(_write(tmp_path, SMALL_SI))
    p = t.points.set_index("point_id")
    assert list(p.index) == ["J1", "J2", "J 3", "R1", "T1"]
    assert p.at["J1", "ground_z"] == "11.7" and p.at["J1", "depth"] == "1.2"
    assert p.at["J1", "_row"] == 6 and p.at["J 3", "_row"] == 8
    assert p.at["R1", "appurtenance"] == "水源" and p.at["T1", "appurtenance"] == "水塔"
    assert p.at["J1", "appurtenance"] is None and p.at["J1", "feature"] is None
    s = t.segments.set_index("id")
    assert list(s.index) == ["P1", "P2", "P3", "P4", "PU1", "V1"]
    assert s.at["P1", "size"] == "DN300"
    assert s.at["PU1", "size"] == "DN300"  # the largest pipe at either end (P1 at J1)
    assert s.at["PU1", "remarks"] == "pump"
    assert s.at["V1", "remarks"] == "valve PRV; normally closed" and s.at["V1", "normally_closed"]
    assert not s.at["P2", "normally_closed"]  # [STATUS] Open overrides the section
    assert s.at["P4", "remarks"] == "check valve (CV)"
    assert s.at["P3", "to_id"] == "J 3"
    assert s.at["P3", "vertices"] == [(110.0, 20.0), (105.0, 40.0)]
    assert s.at["P1", "vertices"] is None
    c = t.customers.set_index("node_id")["demand"]
    assert c.to_dict() == {"J1": 2.5, "J2": 1.5}  # [DEMANDS] replaces the J2 demand of 0
    assert list(t.sources["kind"]) == ["reservoir", "tank"]


def test_us_units_conversion(tmp_path: Path) -> None:
    text = SMALL_SI.replace("units   lps", "Units CFS")
    t = read_epanet(_write(tmp_path, text))
    p = t.points.set_index("point_id")
    assert float(p.at["J1", "ground_z"]) == pytest.approx(10.5 * 0.3048 + 1.2, abs=1e-4)
    assert t.segments.set_index("id").at["P1", "size"] == "DN7620"
    assert t.customers.set_index("node_id").at["J1", "demand"] == pytest.approx(2.5 * 28.316846592)
    assert set(FLOW_UNITS) >= {"CFS", "GPM", "MGD", "IMGD", "AFD", "LPS", "LPM", "MLD", "CMH", "CMD"}


def test_offset_and_crs(tmp_path: Path) -> None:
    path = _write(tmp_path, SMALL_SI)
    t = read_epanet(path, offset=(1000.0, 2000.0), cover_m=0.8)
    p = t.points.set_index("point_id")
    assert (p.at["J2", "y"], p.at["J2", "x"]) == ("1100.0", "2000.0")
    assert p.at["J1", "ground_z"] == "11.3" and p.at["J1", "depth"] == "0.8"
    assert t.segments.set_index("id").at["P3", "vertices"][0] == (1110.0, 2020.0)
    assert t.segments.at[0, "from_depth"] == "0.8"
    auto = read_epanet(path, offset="auto")
    xy = np.column_stack([auto.points["y"].astype(float), auto.points["x"].astype(float)])
    xy = np.vstack([xy, *[np.array(v) for v in auto.segments["vertices"].dropna()]])
    centre = (xy.min(axis=0) + xy.max(axis=0)) / 2  # nodes and vertices
    assert tuple(centre) == pytest.approx(DISTRICT_CENTRE)
    # Same CRS: no transform. Another CRS: pyproj, always easting first.
    same = read_epanet(path, source_crs="EPSG:4548")
    assert same.points["x"].tolist() == read_epanet(path).points["x"].tolist()
    lonlat = SMALL_SI.replace(" J1  0 0", " J1  116.0 36.45")
    moved = read_epanet(_write(tmp_path, lonlat, "ll.inp"), source_crs="EPSG:4490")
    j1 = moved.points.set_index("point_id").loc["J1"]
    assert 400_000 < float(j1["y"]) < 420_000 and 4_020_000 < float(j1["x"]) < 4_050_000


def test_default_offset() -> None:
    assert default_offset([(0, 0), (100, 50)]) == (409_950.0, 4_034_975.0)
    # Inside the twin CRS's area: kept; another CRS's coordinates (ky10, Kentucky feet): moved.
    assert default_offset(np.array([[409_000.0, 4_030_000.0], [411_000.0, 4_040_000.0]])) == (0.0, 0.0)
    assert default_offset(np.array([[5765082.16, 3843785.12]])) == (410_000.0 - 5765082.16, 4_035_000.0 - 3843785.12)
    assert default_offset([]) == (0.0, 0.0)


# --------------------------------------------------------------------------- malformed input


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        (" P2  J1  J2 ", " P2  J1  J9 ", "net.inp line 15: pipe 'P2' names unknown node 'J9'"),
        (" J2  11    0", " J2  11.x  0", "net.inp line 7: [JUNCTIONS] elevation '11.x' is not a number"),
        (" P1  R1  J1  100  300", " P1  R1  J1  100  3OO", "net.inp line 14: [PIPES] diameter '3OO'"),
        (" P3  J2  \"J 3\"  50 150  100", " P3  J2  \"J 3\"  50", "net.inp line 16: [PIPES] needs at least 6"),
        (" R1  -50 0", " R1  -50 0\n X9  1 1", "[COORDINATES] names unknown node 'X9'"),
        (" units   lps", " units   furlongs", "[OPTIONS] Units 'furlongs'"),
        (" R1  30", " J1  30", "net.inp line 10: node id 'J1' is already defined on line 6"),
        (" V1  J1  \"J 3\"  100  prv", " V1  J1  \"J 3\"  100  XYZ", "valve type 'XYZ'"),
        (" P4  J2  T1  10   250  100  0 CV", " P4  J2  J2  10 250 100", "starts and ends at node 'J2'"),
        (" V1  Closed", " V7  Closed", "[STATUS] names unknown link 'V7'"),
        (" P3  110 20", " P9  110 20", "[VERTICES] names unknown link 'P9'"),
        (" P1  R1  J1  100  300  100  0  Open", " P1  R1  J1  100  300  100  0  Shut", "status 'Shut'"),
        (" P1  R1  J1  100  300", " P1  R1  J1  100  -300", "diameter '-300' must not be negative"),
        ("[PIPES]", "[PIPEZ]", "not an EPANET .inp file: no [PIPES] section"),
    ],
)
def test_malformed(tmp_path: Path, old: str, new: str, needle: str) -> None:
    assert old in SMALL_SI
    with pytest.raises(InputError) as err:
        read_epanet(_write(tmp_path, SMALL_SI.replace(old, new, 1)))
    assert needle in str(err.value)
    assert "net.inp" in str(err.value)


def test_missing_coordinates_are_placed_with_a_warning(tmp_path: Path) -> None:
    # Only J1 and J2 are placed: the others go between their placed neighbours, ring by ring.
    text = SMALL_SI.split("[COORDINATES]")[0] + "[COORDINATES]\n J1 0 0\n J2 100 0\n"
    t = read_epanet(_write(tmp_path, text))
    assert sorted(i.ids[0] for i in t.issues) == ["J 3", "R1", "T1"]
    assert {i.code for i in t.issues} == {"W306"} and "no [COORDINATES]" in t.issues[0].message
    p = t.points.set_index("point_id")[["y", "x"]].astype(float)  # easting, northing
    links = t.segments[["from_id", "to_id"]].to_numpy()
    for node in ("J 3", "R1", "T1"):
        near = [b if a == node else a for a, b in links if node in (a, b)]
        placed_near = [n for n in near if n in ("J1", "J2")] or near
        assert p.loc[node].tolist() == pytest.approx(p.loc[placed_near].mean().tolist())
    # A network without any coordinates is laid out on a grid.
    t = read_epanet(_write(tmp_path, SMALL_SI.split("[COORDINATES]")[0] + "[END]\n"))
    assert len(t.issues) == 5 and t.points[["x", "y"]].astype(float).drop_duplicates().shape[0] == 5


@pytest.mark.parametrize("content", [b"", b"just some text\nno sections\n", b"PK\x03\x04\x00\x00binary",
                                     b"point_id,x,y\n1,2,3\n"])
def test_not_an_inp(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.inp"
    path.write_bytes(content)
    with pytest.raises(InputError, match="x.inp"):
        read_epanet(path)
    with pytest.raises(InputError):
        read_epanet(tmp_path / "missing.inp")


# --------------------------------------------------------------------------- model placeholders
TEST_NETWORKS = Path(os.path.dirname(wntr.__file__)) / "tests" / "networks_for_testing"


def test_anytown_placeholder_pipes_import_with_a_warning() -> None:
    path = TEST_NETWORKS / "Anytown.inp"
    t = read_epanet(path)
    wn = wntr.network.WaterNetworkModel(str(path))
    # wntr's reading: the placeholders are the pipes under a millimetre; the others are real sizes.
    mm = {name: p.diameter * 1000 for name, p in wn.pipes()}
    placeholders = sorted(n for n, d in mm.items() if d < 1.0)
    assert len(placeholders) == 6
    assert sorted(i.ids[0] for i in t.issues) == placeholders
    assert {i.code for i in t.issues} == {"W306"}
    s = t.segments.set_index("id")
    for name in placeholders:
        pipe = wn.get_link(name)
        around = [mm[p] for p in {*wn.get_links_for_node(pipe.start_node_name),
                                  *wn.get_links_for_node(pipe.end_node_name)}
                  if p in mm and mm[p] >= 1.0]
        assumed = parse_sizes(pd.Series([s.at[name, "size"]]))["diameter_mm"].iloc[0]
        assert assumed == pytest.approx(max(around) if around else 300.0, abs=0.1)
        issue = next(i for i in t.issues if i.ids == [name])
        assert "0.0001 in" in issue.message and f"assumed {s.at[name, 'size']}" in issue.message
        assert "placeholder" in s.at[name, "remarks"]
    real = [n for n in mm if n not in placeholders]
    assert not any("placeholder" in str(s.at[n, "remarks"]) for n in real)


def test_zero_diameter_is_a_placeholder(tmp_path: Path) -> None:
    assert " P2  J1  J2  50   200  " in SMALL_SI
    t = read_epanet(_write(tmp_path, SMALL_SI.replace(" P2  J1  J2  50   200  ", " P2  J1  J2  50   0  ", 1)))
    assert [(i.code, i.ids) for i in t.issues] == [("W306", ["P2"])]
    assert "diameter 0 mm" in t.issues[0].message
    assert t.segments.set_index("id").at["P2", "size"] == "DN300"  # P1 (DN300) meets it at J1
