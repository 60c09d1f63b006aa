"""The proposal check's fast paths give the answers of the plain ones.

- One read of the network serves a proposal's checks and its cross-section: the networks cut
  out of it are those reads of their own give (``load_existing_near``, ``load_network`` along
  the section line), and the check's section is the section of a fresh read.
- The rule matcher (all rules against all pairs in one array) picks what the rule-by-rule
  reference (:func:`analysis.clearance.match_side`, most conditions, then largest clearance,
  then first row) picks, with negations, wildcards, DN bounds, unknown pressure and missing
  columns; per-segment attributes and groups as pandas computes them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely
import sqlalchemy as sa

import analysis.clearance as clearance
from analysis.clearance import (
    _attribute_groups,
    _pick_rules,
    load_clearance_rules,
    match_side,
    rule_reach_m,
    segment_attributes,
)
from analysis.network import Network, load_network
from analysis.proposal import SECTION_HALF_WIDTH_M, _read_around, check_proposal, merge_networks
from analysis.proposal_input import load_existing_near, read_proposal
from analysis.section import ground_points, idw_ground, section_of_network
from ingest.pipeline import ingest_survey
from ingest.sample import generate_district

# -- one read for the checks and the section ---------------------------------------------------


@pytest.fixture(scope="module")
def demo(twin_settings, twin_engine, tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    generate_district(out, scale=1, seed=0)
    report = ingest_survey(out / "points.csv", out / "segments.csv", twin_settings)
    assert report.status == "applied"
    return twin_engine


def _same(a: Network, b: Network) -> None:
    pd.testing.assert_frame_equal(a.segments, b.segments)
    pd.testing.assert_frame_equal(a.nodes, b.nodes)
    for name in ("node_xyz", "vertices", "offsets"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def _proposals(engine: sa.Engine) -> list[dict]:
    """Proposals along and across the demo's north-south roads: pipes of each kind, a bent pipe
    of two parts and an excavation."""
    with engine.connect() as conn:
        roads = conn.execute(sa.text(
            "SELECT ST_X(ST_StartPoint(geom)), min(ST_YMin(geom)), max(ST_YMax(geom)) FROM current_segment "
            "WHERE subtype = 'YS' AND ST_X(ST_StartPoint(geom)) = ST_X(ST_EndPoint(geom)) "
            "GROUP BY 1 ORDER BY 1 LIMIT 2")).all()
    docs = []
    for k, (x, y0, y1) in enumerate(roads):
        y = (y0 + y1) / 2
        docs += [
            {"type": "Feature", "properties": {"id": f"W{k}", "utility": "JS", "size": "DN300", "depth_m": 1.5},
             "geometry": {"type": "LineString", "coordinates": [[x + 3, y0 + 20], [x + 3, y1 - 20]]}},
            {"type": "Feature", "properties": {"id": f"G{k}", "utility": "RQ", "size": "DN200", "depth_m": 1.0,
                                               "pressure_mpa": 0.3},
             "geometry": {"type": "MultiLineString", "coordinates": [[[x - 40, y], [x + 0.4, y + 30]],
                                                                     [[x + 0.4, y + 30], [x + 0.4, y + 90]]]}},
            {"type": "Feature", "properties": {"id": f"X{k}", "depth_m": 3.0},
             "geometry": {"type": "Polygon", "coordinates": [[[x - 8, y - 50], [x + 8, y - 50], [x + 8, y - 46],
                                                              [x - 8, y - 46], [x - 8, y - 50]]]}},
        ]
    return docs


def test_one_read_gives_what_reads_of_their_own_give(demo, twin_settings):
    rules = load_clearance_rules(None, twin_settings, db=demo)
    margin = rule_reach_m(rules) + 2.0
    compared = 0
    with demo.connect() as conn:
        for doc in _proposals(demo):
            prop = read_proposal(doc, twin_settings, engine=conn)
            around, lines, check_m = _read_around(conn, prop, margin)
            existing = around.near(lines, check_m)
            _same(existing, load_existing_near(conn, prop, margin_m=margin))
            assert len(existing.segments) > 0
            # section lines as far out as the check's section reaches, at several angles
            half = SECTION_HALF_WIDTH_M + float(np.nanmax(prop.half_width_m))
            for t in (0.2, 0.8):
                foot = np.asarray(lines.geoms[0].interpolate(t, normalized=True).coords[0])
                for angle in (0.0, 60.0, 90.0):
                    u = np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
                    line = shapely.LineString([foot - half * u, foot + half * u])
                    cut = around.near(line, 0.01)
                    _same(cut, load_network(conn, near=line, distance_m=0.01))
                    compared += len(cut.segments)
    assert compared > 50  # the lines met pipes


def test_the_check_cuts_the_section_of_a_fresh_read(demo, twin_settings):
    docs = _proposals(demo)
    with demo.connect() as conn:
        for doc in (docs[0], docs[1]):
            report = check_proposal(demo, doc, twin_settings)
            sec = report.section
            prop = read_proposal(doc, twin_settings, engine=conn)
            line = shapely.LineString(sec.line)
            fresh = merge_networks(load_network(conn, near=line, distance_m=0.01), prop)
            ground = idw_ground(ground_points(conn, line, 60.0))
            want = section_of_network(fresh, sec.line, ground=ground, crs=sec.crs)
            assert len(want.pipes) >= 3
            # the same drawing; made a second or more apart on a busy machine
            assert {**sec.as_dict(), "created_at": None} == {**want.as_dict(), "created_at": None}


# -- rules against pairs at once ---------------------------------------------------------------


def _reference_pick(rules: pd.DataFrame, kind: str, attrs: dict, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rule by rule, both ways round: the most conditions, then the largest clearance, then the first."""
    best, best_spec, best_val = np.full(len(a), -1), np.full(len(a), -1), np.full(len(a), -np.inf)
    checked = ~(rules["a_utility"].isin(clearance.NOT_CHECKED) | rules["b_utility"].isin(clearance.NOT_CHECKED))
    mine = np.flatnonzero((rules["kind"] == kind).to_numpy() & checked.to_numpy())
    for r, rule in zip(mine, rules.iloc[mine].to_dict("records"), strict=True):
        for x, y in ((a, b), (b, a)):
            ma, sa_ = match_side(attrs, x, rule, "a_")
            mb, sb = match_side(attrs, y, rule, "b_")
            val = float(rule["clearance_m"])
            better = ma & mb & ((sa_ + sb > best_spec) | ((sa_ + sb == best_spec) & (val > best_val)))
            best = np.where(better, r, best)
            best_spec = np.where(better, sa_ + sb, best_spec)
            best_val = np.where(better, val, best_val)
    return best


_TABLE = """id,kind,a_utility,b_utility,clearance_m,source,verified,a_subtype,b_burial,a_dn_min_mm,b_dn_max_mm,a_pressure_class,b_material
r1,horizontal,*,*,0.5,t,true,,,,,,
r2,horizontal,JS,*,1.0,t,true,!ZS,,200,,,
r3,horizontal,JS,PS,1.5,t,false,,ZM|GK,,,,
r4,horizontal,RQ,*,2.0,t,false,,,,,unknown|low,
r5,horizontal,RQ,DL,1.0,t,false,,!GK,,300,!medium_a,PE
r6,horizontal,RQ,DL,1.0,t,false,,!GK,,300,!medium_a,PE|GANG
r7,vertical,*,JS,0.15,t,false,,,,,,
r8,vertical,TX,JS,0.15,t,false,YS|WS,,,800,,
r9,vertical,TX,JS,0.25,t,false,YS|WS,,,800,,
r10,horizontal,BUILDING,JS,3.0,t,false,,,,,,
r11,horizontal,DL,,3.0,t,false,|,,,,,
"""


@pytest.fixture(scope="module")
def segments() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    n = 400

    def pick(values: list, dtype: str | None = None) -> pd.Series:
        return pd.Series(np.asarray(values, dtype=object)[rng.integers(0, len(values), n)], dtype=dtype)

    return pd.DataFrame({
        "utility": pick(["JS", "PS", "RQ", "RL", "DL", "TX", "QT", "GY", "js"], "str"),
        "subtype": pick(["YS", "WS", "ZS", "ZH", None, "ys"]),  # object, with None
        "burial": pick(["ZM", "GK", "DM", None], "str"),
        "material": pick(["PE", "GANG", None]),
        "shape": pick(["circular", "rect"], "str"),
        "diameter_mm": rng.choice([np.nan, 100.0, 200.0, 300.0, 800.0], n),
        "width_mm": rng.choice([np.nan, 500.0, 1000.0], n),
        "pressure_mpa": rng.choice([np.nan, 0.005, 0.1, 0.3, 0.6, 1.2, 2.0], n),
    })


@pytest.fixture(scope="module", params=["shipped", "synthetic", "unparsed"])
def table(request, tmp_path_factory) -> pd.DataFrame:
    if request.param == "shipped":
        return load_clearance_rules()
    path = tmp_path_factory.mktemp("rules") / "rules.csv"
    path.write_text(_TABLE, encoding="utf-8")
    if request.param == "synthetic":
        return load_clearance_rules(path)
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)  # as a caller may build one: no loader
    raw["clearance_m"] = raw["clearance_m"].astype(float)
    for c in ("a_dn_min_mm", "b_dn_max_mm"):
        raw[c] = pd.to_numeric(raw[c].replace("", np.nan))
    return raw


@pytest.mark.parametrize("kind", ["horizontal", "vertical"])
def test_rules_at_once_pick_what_rule_by_rule_picks(table, segments, kind, monkeypatch):
    attrs = segment_attributes(segments)
    rng = np.random.default_rng(9)
    a, b = rng.integers(0, len(segments), 3000), rng.integers(0, len(segments), 3000)
    want = _reference_pick(table, kind, attrs, a, b)
    assert (want >= 0).any()
    np.testing.assert_array_equal(_pick_rules(table, kind, attrs, a, b), want)
    monkeypatch.setattr(clearance, "_PAIRS_AT_ONCE", 257)  # in bounded pieces: the same
    np.testing.assert_array_equal(_pick_rules(table, kind, attrs, a, b), want)


def test_attributes_and_groups_as_pandas_gives_them(segments):
    attrs = segment_attributes(segments)
    for name in ("utility", "subtype", "burial", "material"):
        want = segments[name].fillna("").astype(str).str.upper().to_numpy()
        assert attrs[name].tolist() == want.tolist()
    gid, rep = _attribute_groups(attrs)
    frame = pd.DataFrame(attrs)
    want = frame.groupby(list(frame.columns), dropna=False, sort=False).ngroup().to_numpy()
    # the same partition, each group represented by its first segment
    assert len(rep) == want.max() + 1 == len(set(zip(gid, want, strict=True)))
    np.testing.assert_array_equal(gid[rep], np.arange(len(rep)))
    assert all(np.flatnonzero(gid == g)[0] == r for g, r in enumerate(rep))
