"""Shutoff (关阀) on hand-made networks with known answers, and on the demo district against an
independent networkx walk of the same twin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import networkx as nx
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from analysis.segments import model_from_frames
from analysis.shutoff import isolate, shutoff
from ingest.pipeline import ingest_survey
from ingest.sample import generate_district
from twin.errors import InputError, NotFound

TWIN = str(Path(sys.executable).with_name("twin"))


def network(pipes: str, valves: str = "", sources: str = "S", customers: str = "", *,
            inoperable: str = "", normally_closed: str = "", closed_pipes: str = ""):
    """A model from compact text: pipes ``"p1:S-A p2:A-B"``, valves ``"v1:p2@A"``, node lists."""
    rows = [(p.split(":")[0], *p.split(":")[1].split("-")) for p in pipes.split()]
    closed = set(closed_pipes.split())
    links = pd.DataFrame({
        "id": [r[0] for r in rows], "from_node": [r[1] for r in rows], "to_node": [r[2] for r in rows],
        "utility": "JS", "shape": "circular", "diameter_mm": 200.0, "width_mm": np.nan,
        "height_mm": np.nan, "length_m": 100.0,
        "remarks": ["normally closed" if r[0] in closed else "" for r in rows],
    })
    names = sorted({n for r in rows for n in r[1:]})
    nodes = pd.DataFrame({"id": names, "utility": "JS", "x": 0.0, "y": 0.0, "ground_z": 0.0})
    vrows = [(v.split(":")[0], *v.split(":")[1].split("@")) for v in valves.split()]
    vals = pd.DataFrame({
        "id": [v[0] for v in vrows], "segment_id": [v[1] for v in vrows], "node_id": [v[2] for v in vrows],
        "utility": "JS", "kind": "valve", "operable": [v[0] not in inoperable.split() for v in vrows],
        "normally_closed": [v[0] in normally_closed.split() for v in vrows], "x": 0.0, "y": 0.0,
    })
    src = pd.DataFrame({"id": [f"SRC-{s}" for s in sources.split()], "node_id": sources.split(),
                        "utility": "JS", "kind": "plant", "name": None})
    cust = pd.DataFrame({"id": [f"C-{c.strip('!')}" for c in customers.split()],
                         "node_id": [c.strip("!") for c in customers.split()], "utility": "JS",
                         "name": None, "kind": "service", "critical": [c.endswith("!") for c in customers.split()],
                         "demand": 1.0})
    return model_from_frames(links, nodes, vals, src, cust)


def ids(records: list[dict]) -> list[str]:
    return [r["id"] for r in records]


# S -p1- A -p2- B -p3- C -p4- D, valves on p2 at A, p3 at B, p4 at C; customers at B, C, D (D critical)
LINE = dict(pipes="p1:S-A p2:A-B p3:B-C p4:C-D", valves="va:p2@A vb:p3@B vc:p4@C", customers="B C D!")


def test_dead_end_burst_cuts_off_everything_downstream():
    r = isolate(network(**LINE), pipe="p3")
    assert ids(r.valves) == ["vb", "vc"]  # source side first
    assert r.valves[0]["distance_from_source_m"] < r.valves[1]["distance_from_source_m"]
    assert r.isolated_pipes == ["p3"] and r.isolated_nodes == ["C"]
    assert r.outage_pipes == ["p4"] and r.outage_nodes == ["D"]
    assert ids(r.customers) == ["C-D", "C-C"]  # critical first
    assert ids(r.critical_customers) == ["C-D"]
    assert r.length_m == 100.0 and r.volume_m3 == pytest.approx(np.pi * 0.1**2 * 100, abs=1e-3)
    assert r.added_for_failures == {} and r.failed_valves == []


def test_failed_valve_steps_to_the_next_ring():
    r = isolate(network(**LINE), pipe="p3", failed_valves=["vb"])
    assert ids(r.valves) == ["va", "vc"]
    assert r.added_for_failures == {"vb": ["va"]}
    assert ids(r.failed_valves) == ["vb"] and r.failed_valves[0]["reason"] == "reported failed"
    assert r.isolated_pipes == ["p2", "p3"] and r.isolated_nodes == ["B", "C"]


def test_chain_of_failures_and_inoperable_valves_reach_the_source():
    model = network(**LINE, inoperable="va")
    r = isolate(model, pipe="p3", failed_valves=["vb"])
    # vb failed, va will not turn either: only vc is left, everything up to the source is out
    assert ids(r.valves) == ["vc"]
    assert r.isolated_pipes == ["p1", "p2", "p3"]
    assert [f["reason"] for f in r.failed_valves] == ["reported failed", "inoperable in the twin"]
    assert ids(r.customers) == ["C-D", "C-B", "C-C"]
    assert r.notes == []


def test_pipe_with_valves_at_both_ends_is_isolated_alone():
    m = network("p1:S-A p2:A-B p3:B-C", "v1:p2@A v2:p2@B", customers="B C")
    r = isolate(m, pipe="p2")
    assert ids(r.valves) == ["v1", "v2"] and r.isolated_pipes == ["p2"] and r.isolated_nodes == []
    assert r.outage_pipes == ["p3"] and sorted(ids(r.customers)) == ["C-B", "C-C"]


def test_loop_fed_from_two_sources_keeps_customers_supplied():
    #   S1 -a- X -b- Y -c- S2, valves on b at both ends; customers at X and Y
    m = network("a:S1-X b:X-Y c:Y-S2", "v1:b@X v2:b@Y", sources="S1 S2", customers="X Y")
    r = isolate(m, pipe="b")
    assert r.isolated_pipes == ["b"] and r.outage_pipes == [] and r.customers == []
    # with one source, closing the same valves cuts Y off
    m1 = network("a:S1-X b:X-Y c:Y-Z", "v1:b@X v2:b@Y", sources="S1", customers="X Y")
    r1 = isolate(m1, pipe="b")
    assert r1.outage_pipes == ["c"] and ids(r1.customers) == ["C-Y"]


def test_normally_closed_boundary_valve_is_not_closed_again():
    # zone 1 fed by S1, zone 2 fed by S2; nc separates them on pipe z at B
    m = network("a:S1-A b:A-B z:B-C c:C-S2", "v1:b@A nc:z@B", sources="S1 S2", customers="B C",
                normally_closed="nc")
    r = isolate(m, pipe="b")
    assert ids(r.valves) == ["v1"]  # the boundary valve is already shut
    assert r.isolated_pipes == ["b"] and r.isolated_nodes == ["B"]
    assert ids(r.customers) == ["C-B"]  # zone 2 keeps its own supply
    # a zone with no source of its own was not supplied through a closed boundary valve either
    m2 = network("a:S1-A b:A-B z:B-C c:C-D", "v1:b@A nc:z@B", sources="S1", customers="B C",
                 normally_closed="nc")
    # (bursting the source pipe cuts b off, but not z and c beyond the closed valve)
    assert isolate(m2, pipe="a").outage_pipes == ["b"]


def test_valve_chamber_with_several_valves():
    # chamber J holds one valve on each of its three pipes
    m = network("a:S-J b:J-B c:J-C", "va:a@J vb:b@J vc:c@J", customers="B C")
    r = isolate(m, pipe="b")
    assert ids(r.valves) == ["vb"] and r.isolated_pipes == ["b"] and r.isolated_nodes == ["B"]
    assert ids(r.customers) == ["C-B"] and r.outage_pipes == []
    # a burst at the chamber itself: its node is a segment of its own, closing all three
    r = isolate(m, node="J")
    assert sorted(ids(r.valves)) == ["va", "vb", "vc"] and r.isolated_pipes == [] and r.isolated_nodes == ["J"]
    assert sorted(r.outage_pipes) == ["b", "c"]


def test_closed_pipe_carries_no_supply_but_segments_like_wntr():
    m = network("a:S-A b:A-B c:B-C", "v1:b@A", customers="C", closed_pipes="c")
    assert m.link_seg[1] == m.link_seg[2]  # segmentation ignores pipe status, as wntr does
    r = isolate(m, pipe="b")
    assert r.outage_pipes == [] and ids(r.customers) == ["C-C"]  # C was isolated, never supplied via c


def test_bad_requests():
    m = network(**LINE)
    with pytest.raises(NotFound, match="p9"):
        isolate(m, pipe="p9")
    with pytest.raises(NotFound, match="vz"):
        isolate(m, pipe="p3", failed_valves=["vz"])
    with pytest.raises(InputError):
        isolate(m, pipe="p3", node="A")


# ---- the demo district in the real twin


@pytest.fixture(scope="module")
def district(twin_settings, twin_engine, tmp_path_factory):
    out = tmp_path_factory.mktemp("district")
    generate_district(out, scale=1, seed=0)
    report = ingest_survey(out / "points.csv", out / "segments.csv", twin_settings)
    assert report.status == "applied"
    return twin_engine


def reference_outage(engine, pipe: str, closed: set[str], failed: set[str]) -> tuple[set[str], set[str]]:
    """Independent walk with networkx on the twin's rows: (isolated pipes, pipes cut off from sources)."""
    with engine.connect() as conn:
        seg = conn.execute(sa.text("SELECT id, from_node, to_node FROM current_segment WHERE utility = "
                                   "(SELECT utility FROM segment WHERE id = :p) AND status = 'active'"),
                           {"p": pipe}).all()
        valves = conn.execute(sa.text("SELECT id, segment_id, node_id, normally_closed FROM current_valve")).all()
        sources = set(conn.execute(sa.text("SELECT node_id FROM current_source")).scalars())
    cut = {(v.segment_id, v.node_id) for v in valves if v.id in closed or v.normally_closed}
    g = nx.Graph()
    for s in seg:
        g.add_node(("L", s.id))
        for n in (s.from_node, s.to_node):
            if (s.id, n) not in cut:
                g.add_edge(("L", s.id), ("N", n))
    isolated = {n[1] for n in nx.node_connected_component(g, ("L", pipe)) if n[0] == "L"}

    def fed(graph: nx.Graph) -> set[str]:
        seen = set()
        for s in sources:
            if ("N", s) in graph and ("N", s) not in seen:
                seen |= nx.node_connected_component(graph, ("N", s))
        return {n[1] for n in seen if n[0] == "L"}

    before = {(v.segment_id, v.node_id) for v in valves if v.normally_closed}
    g0 = nx.Graph()
    for s in seg:
        g0.add_node(("L", s.id))
        for n in (s.from_node, s.to_node):
            if (s.id, n) not in before:
                g0.add_edge(("L", s.id), ("N", n))
    g.remove_nodes_from([("L", p) for p in isolated])
    return isolated, fed(g0) - fed(g) - isolated


def test_demo_district_answers_match_an_independent_walk(district):
    with district.connect() as conn:
        pipes = conn.execute(sa.text("SELECT id FROM current_segment WHERE utility IN ('JS','RQ','RL') "
                                     "AND status = 'active' ORDER BY id")).scalars().all()
        valve_ids = conn.execute(sa.text("SELECT id FROM current_valve ORDER BY id")).scalars().all()
    rng = np.random.default_rng(3)
    for pipe in rng.choice(pipes, 25, replace=False):
        failed = list(rng.choice(valve_ids, 2, replace=False)) if rng.random() < 0.5 else []
        r = shutoff(district, pipe=str(pipe), failed_valves=failed)
        closed = set(ids(r.valves))
        isolated, outage = reference_outage(district, str(pipe), closed, set(failed))
        assert set(r.isolated_pipes) == isolated, pipe
        assert set(r.outage_pipes) == outage, pipe
        assert not closed & set(failed)
        # every listed valve touches the isolated region
        assert all(v["pipe"] in isolated or v["node"] in set(r.isolated_nodes) for v in r.valves)
        dist = [v["distance_from_source_m"] for v in r.valves if v["distance_from_source_m"] is not None]
        assert dist == sorted(dist)


def test_demo_district_shutoff_by_point_and_bad_input(district):
    with district.connect() as conn:
        row = conn.execute(sa.text(
            "SELECT id, ST_X(ST_LineInterpolatePoint(ST_Force2D(geom), 0.5)) x, "
            "ST_Y(ST_LineInterpolatePoint(ST_Force2D(geom), 0.5)) y FROM current_segment "
            "WHERE utility = 'JS' AND length_m > 20 ORDER BY id LIMIT 1")).one()
        drain = conn.execute(sa.text("SELECT id FROM current_segment WHERE utility = 'PS' LIMIT 1")).scalar()
        power = conn.execute(sa.text("SELECT id FROM current_segment WHERE utility = 'DL' LIMIT 1")).scalar()
    by_point = shutoff(district, at=(row.x, row.y + 0.3))
    assert row.id in by_point.isolated_pipes and by_point.utility == "JS"
    # Where the crew finds each valve: its pipe's road and its point's surveyed depth.
    assert by_point.valves
    with district.connect() as conn:
        for v in by_point.valves:
            depth, road = conn.execute(sa.text(
                "SELECT n.depth_m, s.road FROM current_node n, current_segment s WHERE n.id = :n AND s.id = :p"),
                {"n": v["node"], "p": v["pipe"]}).one()
            assert v["depth_m"] == pytest.approx(depth, abs=0.005) and v["road"] == road and road
    with pytest.raises(InputError, match="gravity"):
        shutoff(district, pipe=drain)
    with pytest.raises(InputError, match="only water, gas and heat"):
        shutoff(district, pipe=power)
    with pytest.raises(NotFound, match="no pipe"):
        shutoff(district, pipe="NO-SUCH-PIPE")
    with pytest.raises(InputError, match="within"):
        shutoff(district, at=(row.x + 5000, row.y))


def test_cli_shutoff_json_and_errors(district, twin_settings):
    env = {**os.environ, "TWIN_DB_SCHEMA": twin_settings.db_schema}
    with district.connect() as conn:
        pipe = conn.execute(sa.text("SELECT segment_id FROM current_valve WHERE utility = 'JS' "
                                    "ORDER BY id LIMIT 1")).scalar()
    res = subprocess.run([TWIN, "analyze", "shutoff", "--pipe", pipe, "--json"], capture_output=True,
                         text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    for key in ("valves", "isolated_pipes", "isolated_nodes", "outage_pipes", "customers",
                "critical_customers", "added_for_failures", "length_m", "volume_m3"):
        assert key in out
    assert out == json.loads(json.dumps(shutoff(district, pipe=pipe).as_dict()))
    first = out["valves"][0]["id"]
    res2 = subprocess.run([TWIN, "analyze", "shutoff", "--pipe", pipe, "--failed-valves", first, "--json"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert res2.returncode == 0, res2.stderr
    assert first in json.loads(res2.stdout)["added_for_failures"]
    bad = subprocess.run([TWIN, "analyze", "shutoff", "--pipe", "NOPE"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert bad.returncode == 2 and "no pipe" in bad.stderr


def test_model_follows_changes_to_the_twin(district):
    """A valve found broken in the field (an UPDATE of the twin) changes the next answer."""
    with district.connect() as conn:
        pipe = conn.execute(sa.text("SELECT segment_id FROM current_valve WHERE utility = 'JS' AND operable "
                                    "ORDER BY id LIMIT 1")).scalar()
    before = shutoff(district, pipe=pipe)
    first = before.valves[0]["id"]
    with district.begin() as conn:
        conn.execute(sa.text("UPDATE valve SET operable = false WHERE id = :v"), {"v": first})
    try:
        after = shutoff(district, pipe=pipe)
        assert first not in ids(after.valves)
        assert [f["id"] for f in after.failed_valves] == [first]
        assert after.failed_valves[0]["reason"] == "inoperable in the twin"
    finally:
        with district.begin() as conn:
            conn.execute(sa.text("UPDATE valve SET operable = true WHERE id = :v"), {"v": first})
    assert ids(shutoff(district, pipe=pipe).valves) == ids(before.valves)
