"""The sample district generator: structural properties of the demo survey tables (no database)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import shapely
from shapely.strtree import STRtree

from ingest.sample import POINT_HEADERS, SEGMENT_HEADERS, generate_district
from ingest.tables import read_survey
from twin.domain import (
    FEATURE_DEGREE,
    canonical_appurtenance,
    canonical_feature,
    parse_sizes,
    parse_utility,
)

DRAINAGE = {"YS", "WS"}


@pytest.fixture(scope="module", params=[1.0, 2.5], ids=["demo", "scale2.5"])
def demo(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """The demo district, and a larger one with three drainage catchments (rivers between)."""
    out = tmp_path_factory.mktemp("district")
    summary = generate_district(out, scale=request.param, seed=0)
    pts = pd.read_csv(out / "points.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig")
    seg = pd.read_csv(out / "segments.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig")
    return summary, pts, seg


@pytest.fixture(scope="module")
def net(demo):
    """Points indexed by id with numbers parsed; segments with coordinates and degree."""
    _, pts, seg = demo
    p = pts.set_index("物探点号")
    for c in ("X", "Y", "地面高程", "埋深"):
        p[c] = p[c].astype(float)
    s = seg.copy()
    for c in ("起点埋深", "终点埋深"):
        s[c] = s[c].astype(float)
    s["x0"], s["y0"] = p.loc[s["起点号"], "Y"].to_numpy(), p.loc[s["起点号"], "X"].to_numpy()
    s["x1"], s["y1"] = p.loc[s["终点号"], "Y"].to_numpy(), p.loc[s["终点号"], "X"].to_numpy()
    deg = pd.concat([s["起点号"], s["终点号"]]).value_counts()
    p["degree"] = deg.reindex(p.index).fillna(0).astype(int)
    return p, s


def test_headers_and_summary(demo, tmp_path):
    summary, pts, seg = demo
    assert tuple(pts.columns) == POINT_HEADERS
    assert tuple(seg.columns) == SEGMENT_HEADERS
    assert summary["points_total"] == len(pts)
    assert summary["segments_total"] == len(seg)
    assert sum(summary["segments"].values()) == len(seg)
    k = round(4 * summary["scale"])
    assert summary["roads"] == 2 * k
    if k == 4:
        assert 4 < summary["road_km"] < 12  # the demo: a few km of road
    assert set(summary["segments"]) == {"JS", "RQ", "RS", "YS", "WS", "DL", "TX"}
    assert Path(summary["files"]["points"]).name == "points.csv"
    bbox = summary["bbox"]
    # Liaocheng in EPSG:4548: easting ~408,500, northing ~4,036,000
    assert 400_000 < bbox["min_easting"] < bbox["max_easting"] < 420_000
    assert 4_030_000 < bbox["min_northing"] < bbox["max_northing"] < 4_042_000


def test_the_importer_reads_every_column(demo):
    summary = demo[0]
    tables = read_survey(Path(summary["files"]["points"]), Path(summary["files"]["segments"]))
    assert len(tables.points) == summary["points_total"]
    for col in ("point_id", "map_id", "utility", "x", "y", "ground_z", "depth", "well_depth", "sheet",
                "survey_date", "remarks", "feature", "appurtenance"):
        assert tables.points[col].notna().any(), col
    for col in ("from_id", "to_id", "utility", "from_depth", "to_depth", "size", "material", "burial",
                "pressure", "cables", "holes_total", "holes_used", "built", "owner", "road", "status"):
        assert tables.segments[col].notna().any(), col
    assert tables.segments["status"].isin(["active", "abandoned"]).all()
    assert (tables.segments["status"] == "abandoned").any()


def test_codes_parse(demo):
    _, pts, seg = demo
    for table in (pts, seg):
        parent, _, bad = parse_utility(table["管线类型"])
        assert not bad.any()
        assert set(parent) == {"JS", "PS", "RQ", "RL", "DL", "TX"}
    feat, unknown = canonical_feature(pts["特征"].replace("", None))
    assert not unknown.any()
    app, unknown = canonical_appurtenance(pts["附属物"].replace("", None))
    assert not unknown.any()
    sizes = parse_sizes(seg["管径/断面"])
    assert not sizes["bad"].any()
    assert sizes[["diameter_mm", "width_mm"]].notna().any(axis=1).all()
    years = seg["建设年代"].astype(int)
    assert years.between(1975, 2024).all()


def test_ids_and_references(demo, net):
    _, pts, seg = demo
    p, s = net
    assert pts["物探点号"].is_unique
    ids = set(pts["物探点号"])
    assert set(seg["起点号"]) <= ids and set(seg["终点号"]) <= ids
    assert (p["degree"] > 0).all(), "every point is used by a segment"
    # segment utility equals its points' utility
    assert (p.loc[s["起点号"], "管线类型"].to_numpy() == s["管线类型"].to_numpy()).all()
    assert (p.loc[s["终点号"], "管线类型"].to_numpy() == s["管线类型"].to_numpy()).all()
    # no duplicate segments, no loops
    pair = pd.DataFrame(np.sort(seg[["起点号", "终点号"]].to_numpy(), axis=1))
    assert not pair.duplicated().any()
    assert (seg["起点号"] != seg["终点号"]).all()
    # no two points of one utility at the same place
    assert not pts.duplicated(["管线类型", "X", "Y"]).any()


def test_feature_xor_appurtenance_and_degrees(net):
    p, _ = net
    has_f, has_a = p["特征"] != "", p["附属物"] != ""
    assert (has_f ^ has_a).all()
    canon, _ = canonical_feature(p["特征"].replace("", None))
    expected = canon.map(FEATURE_DEGREE)
    checked = expected.notna()
    assert checked.sum() > 100
    bad = p[checked & (p["degree"] != expected)]
    assert bad.empty, bad[["特征", "degree"]].head()
    valves = p[p["附属物"].isin(["阀门", "阀门井"])]
    assert len(valves) > 20 and (valves["degree"] == 2).all()
    for feature in ("三通", "四通", "直线点", "弯头", "变径", "终点", "进楼"):
        assert (p["特征"] == feature).any(), feature
    for app in ("阀门", "阀门井", "检查井", "消火栓", "水表", "人孔", "手孔", "调压箱", "水厂", "调压站", "换热站",
                "出水口"):
        assert (p["附属物"] == app).any(), app


def test_segment_lengths(net):
    _, s = net
    length = np.hypot(s["x1"] - s["x0"], s["y1"] - s["y0"])
    assert length.min() >= 1.0
    assert length.max() <= 70.0


def test_depths(net):
    p, s = net
    # a segment's end depths are its points' depths
    assert np.allclose(s["起点埋深"], p.loc[s["起点号"], "埋深"].to_numpy())
    assert np.allclose(s["终点埋深"], p.loc[s["终点号"], "埋深"].to_numpy())
    drain = p["管线类型"].isin(DRAINAGE)
    assert p.loc[drain, "埋深"].between(5.0, 8.0).all()  # below every other layer (README: sample district)
    assert p["埋深"].between(0.5, 8.0).all()
    assert p["地面高程"].between(33.0, 37.0).all()
    # the pipe's top is below ground: drainage depth is to the invert, so subtract the size
    sizes = parse_sizes(s["管径/断面"])
    height_m = sizes["diameter_mm"].fillna(sizes["height_mm"]).to_numpy() / 1000.0
    sd = s["管线类型"].isin(DRAINAGE).to_numpy()
    top = np.minimum(s["起点埋深"], s["终点埋深"]).to_numpy() - np.where(sd, height_m, 0.0)
    assert (top > 0.5).all()
    # layers by utility (top): TX 0.95, DL 1.60, RQ 2.40, RS 2.85, JS 3.55 (mains)
    mains = p[p["特征"].isin(["四通"]) | p["附属物"].isin(["人孔"])]
    med = mains.groupby("管线类型")["埋深"].median()
    assert med["TX"] < med["DL"] < med["RQ"] < med["JS"]
    assert med["TX"] >= 0.9  # the cover of a plastic telecom duct under a motor lane
    wells = p[p["附属物"].isin(["检查井", "阀门井", "人孔", "手孔"])]
    assert (wells["井底深"].astype(float) > wells["埋深"]).all()
    assert (p.loc[~p.index.isin(wells.index), "井底深"] == "").all()


def test_drainage_falls_along_the_flow(net):
    p, s = net
    d = s[s["管线类型"].isin(DRAINAGE)]
    assert len(d) > 100
    inv0 = p.loc[d["起点号"], "地面高程"].to_numpy() - d["起点埋深"].to_numpy()
    inv1 = p.loc[d["终点号"], "地面高程"].to_numpy() - d["终点埋深"].to_numpy()
    length = np.hypot(d["x1"] - d["x0"], d["y1"] - d["y0"]).to_numpy()
    slope = (inv0 - inv1) / length
    assert (slope > 0).all()
    assert np.median(slope) > 0.0009 and slope.max() < 0.005
    # a gravity network is a forest flowing to outfalls: one outgoing pipe per point at most
    out_deg = d["起点号"].value_counts()
    assert out_deg.max() == 1
    outlets = set(d["终点号"]) - set(d["起点号"])
    assert outlets and (p.loc[list(outlets), "附属物"] == "出水口").all()
    # manhole spacing
    assert length.max() <= 50.0 + 1e-6 and length.min() >= 20.0


def test_no_same_utility_crossing_without_a_shared_point(net):
    _, s = net
    group = s["管线类型"].replace({"RS": "RL"})
    for g, seg in s.groupby(group):
        lines = shapely.linestrings(
            np.stack([seg[["x0", "y0"]].to_numpy(), seg[["x1", "y1"]].to_numpy()], axis=1))
        tree = STRtree(lines)
        left, right = tree.query(lines, predicate="intersects")
        keep = left < right
        left, right = left[keep], right[keep]
        ends = seg[["起点号", "终点号"]].to_numpy()
        shared = ((ends[left, 0:1] == ends[right]) | (ends[left, 1:2] == ends[right])).any(axis=1)
        bad = [(ends[a].tolist(), ends[b].tolist()) for a, b in zip(left[~shared], right[~shared], strict=True)]
        assert not bad, f"{g}: {bad[:5]}"


def test_network_content(net):
    p, s = net
    remarks = p["备注"]
    entries = p[p["特征"] == "进楼"]
    assert len(entries) > 50
    assert entries["备注"].str.contains("医院").any()
    assert entries["备注"].str.contains("学校").any()
    assert entries["备注"].str.contains("养老院").any()
    assert (entries["备注"] != "").all()
    assert set(entries["管线类型"]) == {"JS", "RQ"}
    closed = p[remarks.str.contains("常闭")]
    valves = p[p["附属物"] == "阀门"]
    assert 1 <= len(closed) <= max(4, len(valves) // 20) and (closed["附属物"] == "阀门").all()
    assert (p.loc[remarks.str.contains("无法关闭"), "附属物"] == "阀门").all()
    assert remarks.str.contains("无法关闭").any()
    sources = p[p["附属物"].isin(["水厂", "调压站", "换热站"])]
    assert set(sources.groupby("附属物")["管线类型"].first().items()) == {
        ("水厂", "JS"), ("调压站", "RQ"), ("换热站", "RS")}
    assert (sources["备注"] != "").all()
    heat = s[s["管线类型"] == "RS"]
    assert set(heat["备注"]) == {"供水", "回水"}
    assert set(p.loc[p["管线类型"] == "RS", "备注"]) >= {"供水", "回水"}
    # water trunk from the plants
    assert s.loc[s["管线类型"] == "JS", "管径/断面"].isin(["DN600", "DN800"]).any()
    hydrants = p[p["附属物"] == "消火栓"]
    assert (hydrants["degree"] == 1).all()
    assert set(s.loc[s["管线类型"] == "DL", "管径/断面"]) <= {"600X400", "800X500"}
    assert (s.loc[s["管线类型"] == "DL", "压力/电压"] == "10").all()


def test_same_seed_same_bytes(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    generate_district(a, scale=1.0, seed=7)
    generate_district(b, scale=1.0, seed=7)
    generate_district(c, scale=1.0, seed=8)
    for name in ("points.csv", "segments.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / "points.csv").read_bytes() != (c / "points.csv").read_bytes()


def test_scale_three_is_about_nine_times(tmp_path):
    demo = generate_district(tmp_path / "demo", scale=1.0, seed=0)
    big = generate_district(tmp_path / "big", scale=3.0, seed=0)
    ratio = big["segments_total"] / demo["segments_total"]
    assert 7.5 < ratio < 12.0, ratio
    assert big["roads"] == 24


def test_xlsx_and_gbk(tmp_path):
    s = generate_district(tmp_path / "x", scale=0.5, seed=1, fmt="xlsx")
    tables = read_survey(Path(s["files"]["points"]), Path(s["files"]["segments"]))
    assert len(tables.segments) == s["segments_total"]
    assert tables.points["x"].astype(float).between(4_030_000, 4_042_000).all()
    s2 = generate_district(tmp_path / "x2", scale=0.5, seed=1, fmt="xlsx")
    assert Path(s["files"]["points"]).read_bytes() == Path(s2["files"]["points"]).read_bytes()
    g = generate_district(tmp_path / "g", scale=0.5, seed=1, encoding="gbk")
    tables = read_survey(Path(g["files"]["points"]), Path(g["files"]["segments"]), encoding="gbk")
    assert tables.points["feature"].isin(["四通"]).any()


def test_the_importer_finds_no_error(demo):
    """The importer's own checks (DB-free ``prepare``) accept the district as it is."""
    import ingest.prepare as prepare_mod
    from twin.crs import twin_crs
    from twin.settings import get_settings

    summary = demo[0]
    settings = get_settings()
    tables = read_survey(Path(summary["files"]["points"]), Path(summary["files"]["segments"]))
    prepared = prepare_mod.prepare(tables, settings, twin_crs(settings.crs))
    assert prepared.report.error_count == 0, prepared.report.errors[:5]
    assert prepared.report.warning_count == 0, prepared.report.warnings[:5]
    assert len(prepared.customers) == summary["customers"]
    assert prepared.valves["normally_closed"].any()
    assert (~prepared.valves["operable"]).any()
    assert prepared.customers["critical"].any()
    assert set(prepared.sources["kind"]) == {"water_plant", "gas_station", "heat_source"}


# --------------------------------------------------------------------------- crossings and parallels

#: GB 50289 4.1.13: the vertical order at crossings, from the surface down.
ORDER = ("TX", "DL", "RQ", "RS", "JS", "YS", "WS")


def _lines(s: pd.DataFrame) -> np.ndarray:
    return shapely.linestrings(np.stack([s[["x0", "y0"]].to_numpy(), s[["x1", "y1"]].to_numpy()], axis=1))


def _pairs(p: pd.DataFrame, s: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Crossings (the upper and lower utility, the outer-wall vertical gap) and parallel neighbours
    (plan gap between outer walls) of live pipes not sharing a point, read with shapely."""
    s = s[s["状态"] == "active"].reset_index(drop=True)
    sizes = parse_sizes(s["管径/断面"])
    width = sizes["diameter_mm"].fillna(sizes["width_mm"]).to_numpy() / 1000
    height = sizes["diameter_mm"].fillna(sizes["height_mm"]).to_numpy() / 1000
    drain = s["管线类型"].isin(DRAINAGE).to_numpy()
    z = {}
    for end, col, dcol in (("0", "起点号", "起点埋深"), ("1", "终点号", "终点埋深")):
        ground = p.loc[s[col], "地面高程"].to_numpy()
        z[end] = np.where(drain, ground - s[dcol] + height / 2, ground - s[dcol] - height / 2)
    lines = _lines(s)
    i, j = STRtree(lines).query(lines, predicate="dwithin", distance=3.0)
    ends = s[["起点号", "终点号"]].to_numpy()
    keep = (i < j) & ~((ends[i, :, None] == ends[j, None, :]).any(axis=(1, 2)))
    i, j = i[keep], j[keep]
    d = np.c_[s["x1"] - s["x0"], s["y1"] - s["y0"]]
    d /= np.linalg.norm(d, axis=1)[:, None]
    cos = np.abs((d[i] * d[j]).sum(axis=1))
    cross = shapely.intersects(lines[i], lines[j]) & (cos < 0.9)
    ci, cj = i[cross], j[cross]
    at = shapely.intersection(lines[ci], lines[cj])

    def z_at(k):
        t = shapely.line_locate_point(lines[k], at, normalized=True)
        return z["0"][k] + t * (z["1"][k] - z["0"][k])

    zi, zj = z_at(ci), z_at(cj)
    u = s["管线类型"].to_numpy()
    crossings = pd.DataFrame({"upper": np.where(zi > zj, u[ci], u[cj]), "lower": np.where(zi > zj, u[cj], u[ci]),
                              "gap": np.abs(zi - zj) - (height[ci] + height[cj]) / 2,
                              "a": ends[ci, 0], "b": ends[cj, 0]})
    pi, pj = i[~cross & (cos > 0.97)], j[~cross & (cos > 0.97)]
    parallels = pd.DataFrame({"a": u[pi], "b": u[pj], "gap": shapely.distance(lines[pi], lines[pj])
                              - (width[pi] + width[pj]) / 2})
    return crossings, parallels


def test_crossings_keep_the_vertical_order_and_clear_each_other(net):
    crossings, _ = _pairs(*net)
    assert len(crossings) > 200
    rank = {u: k for k, u in enumerate(ORDER)}
    order = [rank[a] < rank[b] for a, b in zip(crossings["upper"], crossings["lower"], strict=True)]
    assert all(order), crossings[~np.array(order)].head()
    assert crossings["gap"].min() > 0.20  # the vertical rules are 0.15-0.40 m (0.40: drainage under water)
    water_drain = crossings[(crossings["upper"] == "JS") & crossings["lower"].isin(DRAINAGE)]
    assert water_drain["gap"].min() > 0.45
    assert set(crossings["upper"]) | set(crossings["lower"]) == set(ORDER)


def test_parallel_pipes_clear_the_largest_horizontal_rule(net):
    _, parallels = _pairs(*net)
    other = parallels[parallels["a"] != parallels["b"]]
    assert other.empty or other["gap"].min() > 2.5  # within 3 m, only heat supply beside its return
    assert set(parallels["a"]) == {"RS"} and parallels["gap"].min() > 1.5


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    out = tmp_path_factory.mktemp("defects")
    summary = generate_district(out, scale=1, seed=0, defects=True)
    pts = pd.read_csv(out / "points.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig")
    seg = pd.read_csv(out / "segments.csv", dtype=str, keep_default_na=False, encoding="utf-8-sig")
    return summary, pts, seg


def test_defects_are_planted_and_the_rest_stays(demo, planted):
    summary, pts, seg = planted
    clean_summary, clean_pts, clean_seg = demo
    if clean_summary["scale"] != 1:
        pytest.skip("compared with the demo district")
    defects = {d["name"]: d for d in summary["defects"]}
    assert set(defects) == {"gas_near_power", "shallow_telecom", "sewer_over_water", "clash_at_manhole",
                            "water_into_heat"}
    assert clean_summary["defects"] == []
    # three pipes added (4 segments), a telecom span and a water valve raised; every other row as it was
    assert len(seg) == len(clean_seg) + 4 and len(pts) == len(clean_pts) + 7
    assert seg.iloc[:0].columns.equals(clean_seg.columns)
    merged = clean_seg.merge(seg, how="left", indicator=True)
    changed = clean_seg[(merged["_merge"] == "left_only").to_numpy()]
    # the raised telecom span and its neighbours, the two water segments at the raised valve
    assert len(changed) == 5 and Counter(changed["管线类型"]) == {"TX": 3, "JS": 2}
    raised = defects["shallow_telecom"]["segments"][0]
    assert pts.set_index("物探点号").loc[raised, "埋深"].astype(float).tolist() == [0.40, 0.40]
    assert (pts["点性质"] == "明显点").sum() == 1 and (clean_pts["点性质"] == "").all()


def test_defects_break_the_rules_they_stand_for(planted):
    summary, pts, seg = planted
    p = pts.set_index("物探点号")
    for c in ("X", "Y", "地面高程", "埋深"):
        p[c] = p[c].astype(float)
    s = seg.copy()
    for c in ("起点埋深", "终点埋深"):
        s[c] = s[c].astype(float)
    s["x0"], s["y0"] = p.loc[s["起点号"], "Y"].to_numpy(), p.loc[s["起点号"], "X"].to_numpy()
    s["x1"], s["y1"] = p.loc[s["终点号"], "Y"].to_numpy(), p.loc[s["终点号"], "X"].to_numpy()
    crossings, parallels = _pairs(p, s)
    defects = {d["name"]: {a for a, _ in d["segments"]} for d in summary["defects"]}
    rank = {u: k for k, u in enumerate(ORDER)}
    wrong = crossings[[rank[a] > rank[b] for a, b in zip(crossings["upper"], crossings["lower"], strict=True)]]
    # the sewer over the water main, 0.10 m above it; the gas pipe through the telecom manhole
    sewer = wrong[wrong["a"].isin(defects["sewer_over_water"]) | wrong["b"].isin(defects["sewer_over_water"])]
    assert len(sewer) == 1 and 0.05 < sewer["gap"].iloc[0] < 0.15
    gas = crossings[crossings["a"].isin(defects["clash_at_manhole"]) | crossings["b"].isin(defects["clash_at_manhole"])]
    assert len(gas) == 4 and (gas["gap"] < -0.2).all()  # through the four ducts meeting at the manhole
    water = crossings[crossings["a"].isin(defects["water_into_heat"]) | crossings["b"].isin(defects["water_into_heat"])]
    into = water[water[["upper", "lower"]].isin(["RS"]).any(axis=1)]
    assert len(into) == 2 and (into["gap"] < -0.15).all()  # into the heat supply and return
    assert len(wrong) == 1 + (gas["upper"] == "RQ").sum() + (water["upper"] == "JS").sum()
    # the gas main beside the power duct bank: 0.05 m between their walls
    near = parallels[parallels[["a", "b"]].isin(["RQ", "DL"]).all(axis=1) & (parallels["a"] != parallels["b"])]
    assert near["gap"].between(0.03, 0.07).sum() >= 2 and near["gap"].min() > 0.03
