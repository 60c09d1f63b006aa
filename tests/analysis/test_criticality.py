"""Criticality of every segment and the N-1 next ring: a hand-computed network, the wntr networks
against an independent networkx walk, and the stored results through `twin ingest epanet`,
`twin analyze criticality` and wntr's `valve_segment_attributes`."""

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
import wntr

from analysis.criticality import MEASURES, _pg_arrays, compute, criticality, pipe_criticality
from analysis.segments import model_from_frames
from ingest.epanet import read_epanet
from ingest.pipeline import ingest_tables
from twin.errors import InputError, NotFound

NETWORKS = Path(wntr.__file__).parent / "library" / "networks"
TWIN = str(Path(sys.executable).with_name("twin"))


def frames(pipes: list[tuple[str, str, str]], valves: list[tuple[str, str, str]], sources: list[str],
           customers: dict[str, tuple[bool, float]], *, inoperable=(), shut=(), closed_pipes=(),
           length: dict[str, float] | None = None) -> tuple[pd.DataFrame, ...]:
    """Model frames: pipes (id, from, to), valves (id, pipe, node), customers {node: (critical, demand)}."""
    length = length or {}
    links = pd.DataFrame({
        "id": [p[0] for p in pipes], "from_node": [p[1] for p in pipes], "to_node": [p[2] for p in pipes],
        "utility": "JS", "shape": "circular", "diameter_mm": 200.0, "width_mm": np.nan, "height_mm": np.nan,
        "length_m": [length.get(p[0], 100.0) for p in pipes],
        "remarks": ["normally closed" if p[0] in set(closed_pipes) else "" for p in pipes]})
    names = sorted({n for p in pipes for n in p[1:]})
    nodes = pd.DataFrame({"id": names, "utility": "JS", "x": 0.0, "y": 0.0, "ground_z": 0.0})
    vals = pd.DataFrame({
        "id": [v[0] for v in valves], "segment_id": [v[1] for v in valves], "node_id": [v[2] for v in valves],
        "utility": "JS", "kind": "valve", "operable": [v[0] not in set(inoperable) for v in valves],
        "normally_closed": [v[0] in set(shut) for v in valves], "x": 0.0, "y": 0.0})
    src = pd.DataFrame({"id": [f"SRC-{s}" for s in sources], "node_id": sources, "utility": "JS",
                        "kind": "plant", "name": None})
    cust = pd.DataFrame({"id": [f"C-{n}" for n in customers], "node_id": list(customers), "utility": "JS",
                         "name": None, "kind": "service", "critical": [c[0] for c in customers.values()],
                         "demand": [c[1] for c in customers.values()]})
    return links, nodes, vals, src, cust


def outage_of(model, crit, pipe: str) -> list[float]:
    return crit.region_outage[crit.seg_region[model.link_seg[model.link_position(pipe)]]].round(6).tolist()


def next_ring(model, crit, valve: str) -> tuple[list[float], list[float]]:
    (i,) = np.flatnonzero(model.valve_columns["id"][crit.valve_pos] == valve)
    return crit.valve_merged[i].round(6).tolist(), crit.valve_extra[i].round(6).tolist()


# S -p1- A -p2- B -p3- C -p4- S2; valves v1 on p2 at A, v2 on p3 at B, v3 on p4 at C.
# Segments X {S p1 A}, Y {p2 B}, Z {p3 C}, W {p4 S2}; customers B (demand 2) and C (critical, 3).
RING = dict(pipes=[("p1", "S", "A"), ("p2", "A", "B"), ("p3", "B", "C"), ("p4", "C", "S2")],
            valves=[("v1", "p2", "A"), ("v2", "p3", "B"), ("v3", "p4", "C")], sources=["S", "S2"],
            customers={"B": (False, 2.0), "C": (True, 3.0)})


@pytest.mark.parametrize(
    # changes | pipe: outage (pipes, length, customers, critical, demand) | valve: merged, extra
    "changes, outages, rings",
    [
        # fed from both ends: a segment takes only itself
        ({}, {"p1": [1, 100, 0, 0, 0], "p2": [1, 100, 1, 0, 2], "p3": [1, 100, 1, 1, 3], "p4": [1, 100, 0, 0, 0]},
         {"v1": ([2, 200, 1, 0, 2], [1, 100, 1, 0, 2]), "v2": ([2, 200, 2, 1, 5], [1, 100, 1, 1, 3]),
          "v3": ([2, 200, 1, 1, 3], [1, 100, 1, 1, 3])}),
        # only S: Y cuts off Z, X cuts off everything; v2 failing adds nothing to a burst in Y
        ({"sources": ["S"]}, {"p1": [4, 400, 2, 1, 5], "p2": [3, 300, 2, 1, 5], "p3": [2, 200, 1, 1, 3],
                              "p4": [1, 100, 0, 0, 0]},
         {"v1": ([4, 400, 2, 1, 5], [1, 100, 0, 0, 0]), "v2": ([3, 300, 2, 1, 5], [1, 100, 1, 0, 2]),
          "v3": ([2, 200, 1, 1, 3], [1, 100, 1, 1, 3])}),
        # v2 cannot close: Y and Z are one region closed by v1 and v3
        ({"inoperable": ["v2"]}, {"p2": [2, 200, 2, 1, 5], "p3": [2, 200, 2, 1, 5]},
         {"v1": ([3, 300, 2, 1, 5], [2, 200, 2, 1, 5]), "v3": ([3, 300, 2, 1, 5], [2, 200, 2, 1, 5])}),
    ],
)
def test_hand_computed_ring(changes, outages, rings):
    model = model_from_frames(*frames(**{**RING, **changes}))
    crit = compute(model)
    for pipe, expected in outages.items():
        assert outage_of(model, crit, pipe) == expected, pipe
    for valve, (merged, extra) in rings.items():
        assert next_ring(model, crit, valve) == (merged, extra), valve
    # a valve that cannot close has no next ring of its own
    assert ("v2" in model.valve_columns["id"][crit.valve_pos]) == ("inoperable" not in changes)


# ---- the wntr networks against an independent networkx walk


def wntr_frames(name: str, seed: int) -> tuple[tuple[pd.DataFrame, ...], pd.DataFrame]:
    """A wntr network with a strategic valve layer, 5 % of valves inoperable, 1 % normally closed."""
    wn = wntr.network.WaterNetworkModel(str(NETWORKS / f"{name}.inp"))
    layer = wntr.network.generate_valve_layer(wn, "strategic", 1, seed=seed).drop_duplicates()
    rng = np.random.default_rng(seed)
    names = wn.link_name_list
    links = [wn.get_link(n) for n in names]
    closed = [n for n, lk in zip(names, links, strict=True) if str(lk.initial_status).endswith("Closed")]
    ids = [f"V{i}" for i in range(len(layer))]
    inop = [v for v in ids if rng.random() < 0.05]
    shut = [v for v in ids if rng.random() < 0.01]
    demand = {j: (bool(rng.random() < 0.1), round(wn.get_node(j).base_demand * 1000, 6))
              for j in wn.junction_name_list if wn.get_node(j).base_demand > 0}
    f = frames([(n, lk.start_node_name, lk.end_node_name) for n, lk in zip(names, links, strict=True)],
               list(zip(ids, layer["link"], layer["node"], strict=True)),
               wn.reservoir_name_list + wn.tank_name_list, demand, inoperable=inop, shut=shut,
               closed_pipes=closed, length={n: float(getattr(lk, "length", 0.0)) for n, lk in zip(names, links,
                                                                                              strict=True)})
    return f, layer


class Reference:
    """What a burst cuts off, walked with networkx on the frames (no segments, no trees)."""

    def __init__(self, links, nodes, valves, sources, customers):
        self.length = dict(zip(links["id"], links["length_m"], strict=True))
        self.valves = valves
        self.customers = customers
        ends = [(p, n) for p, a, b in zip(links["id"], links["from_node"], links["to_node"], strict=True)
                for n in (a, b)]
        closing = valves[valves["operable"] | valves["normally_closed"]]
        cut = set(zip(closing["segment_id"], closing["node_id"], strict=True))
        self.isolating = self._graph(links, [e for e in ends if e not in cut])
        # supply: normally-closed valves are shut; a normally-closed pipe carries nothing, but (the
        # model's convention) an open valve on it still joins it to the valve's node
        shut = valves[valves["normally_closed"]]
        shut = set(zip(shut["segment_id"], shut["node_id"], strict=True))
        opened = set(zip(valves["segment_id"], valves["node_id"], strict=True)) - shut
        closed = set(links["id"][links["remarks"] != ""])
        self.supply = self._graph(links, [e for e in ends if e not in shut
                                          and (e[0] not in closed or e in opened)])
        self.sources = [("N", s) for s in sources["node_id"]]
        self.fed_before = self._fed(self.supply)

    @staticmethod
    def _graph(links: pd.DataFrame, joined: list[tuple[str, str]]) -> nx.Graph:
        g = nx.Graph()
        g.add_nodes_from(("L", p) for p in links["id"])
        g.add_nodes_from(("N", n) for n in pd.concat([links["from_node"], links["to_node"]]))
        g.add_edges_from((("L", p), ("N", n)) for p, n in joined)
        return g

    def _fed(self, g: nx.Graph) -> set:
        fed: set = set()
        for s in self.sources:
            if s in g and s not in fed:
                fed |= nx.node_connected_component(g, s)
        return fed

    def outage(self, pipe: str, failed: str | None = None) -> tuple[list[float], int]:
        """(pipes, length, customers, critical, demand) and the number of valves closed."""
        v = self.valves
        g = self.isolating
        extra = []
        if failed is not None:  # the failed valve stays open
            row = v[v["id"] == failed].iloc[0]
            extra = [(("L", row.segment_id), ("N", row.node_id))]
        g.add_edges_from(extra)
        region = nx.node_connected_component(g, ("L", pipe))
        g.remove_edges_from(extra)
        after = self.supply.copy()
        after.remove_nodes_from(region)
        lost = region | (self.fed_before - self._fed(after))
        pipes = [p for k, p in lost if k == "L"]
        nodes = {n for k, n in lost if k == "N"}
        cust = self.customers[self.customers["node_id"].isin(nodes)]
        region_pipes = {x for k, x in region if k == "L"}
        region_nodes = {x for k, x in region if k == "N"}
        one_side = v["segment_id"].isin(region_pipes) != v["node_id"].isin(region_nodes)
        needed = int((one_side & v["operable"] & ~v["normally_closed"] & (v["id"] != failed)).sum())
        return [len(pipes), sum(self.length[p] for p in pipes), len(cust), int(cust["critical"].sum()),
                float(cust["demand"].sum())], needed


@pytest.mark.parametrize("name, sample", [("Net3", 25), ("ky10", 20), ("Net6", 10)])
def test_wntr_networks_against_networkx(name, sample):
    f, _ = wntr_frames(name, seed=3)
    model = model_from_frames(*f)
    crit = compute(model)
    ref = Reference(*f)
    rng = np.random.default_rng(1)
    needed = np.diff(crit.region_valves.ptr)
    for pipe in rng.choice(model.link_ids, sample, replace=False):
        expected, n_valves = ref.outage(pipe)
        region = crit.seg_region[model.link_seg[model.link_position(pipe)]]
        assert np.allclose(crit.region_outage[region], expected), (name, pipe)
        assert needed[region] == n_valves, (name, pipe)
    for i in rng.choice(len(crit.valve_pos), sample, replace=False):
        k = crit.valve_pos[i]
        side = model.link_ids[model.valve_link[k]]  # a burst on the valve's own pipe
        expected, _ = ref.outage(side, failed=model.valve_columns["id"][k])
        assert np.allclose(crit.valve_merged[i], expected), (name, model.valve_columns["id"][k])
        own = crit.region_outage[crit.valve_regions[i]]
        assert np.allclose(crit.valve_extra[i], (crit.valve_merged[i] - own).max(axis=0))
    # every segment and every valve answered; nearly all from the tree
    assert len(crit.seg_region) == model.n_segments and crit.fallback < len(crit.valve_pos) / 4


# ---- stored in the twin, through the command line


@pytest.fixture(scope="module")
def net3(twin_settings, twin_engine, tmp_path_factory):
    """Net3 with a strategic layer imported as `twin ingest epanet` does, then
    `twin analyze criticality --top 5 --json`."""
    wn = wntr.network.WaterNetworkModel(str(NETWORKS / "Net3.inp"))
    layer = wntr.network.generate_valve_layer(wn, "strategic", 1, seed=7)
    valves = tmp_path_factory.mktemp("net3") / "valves.csv"
    layer.rename(columns={"link": "pipe"}).to_csv(valves, index=False)
    tables = read_epanet(NETWORKS / "Net3.inp", valves=valves, twin_crs=twin_settings.crs, offset="auto",
                         cover_m=twin_settings.default_cover_m)
    report = ingest_tables(tables, twin_settings, scope="epanet:Net3", check_long=False)
    assert report.status == "applied", report.as_dict()["errors"][:3]
    env = {**os.environ, "TWIN_DB_SCHEMA": twin_settings.db_schema}
    res = subprocess.run([TWIN, "analyze", "criticality", "--top", "5", "--json"], capture_output=True,
                         text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    return wn, layer, json.loads(res.stdout)


def test_cli_stores_and_lists_the_worst_segments(net3, twin_engine):
    wn, layer, out = net3
    assert out["state"]["computed"] and not out["state"]["stale"]
    segs = out["segments"]
    assert len(segs) == 5
    keys = [(-s["outage"]["critical_customers"], -s["outage"]["customers"], -s["outage"]["length_m"]) for s in segs]
    assert keys == sorted(keys)
    for s in segs:
        assert set(s["outage"]) == set(MEASURES) and s["valves_needed"] == len(s["valves"])
        assert s["outage"]["pipes"] >= s["own_pipes"] == len(s["pipes"])
    listed = {v["id"] for v in out["valves"]}
    assert listed == {v for s in segs for v in s["valves"]}
    for v in out["valves"]:
        assert all(v["outage_if_fails"][m] >= v["extra_if_fails"][m] >= 0 for m in ("pipes", "customers"))
    # the stored segments are wntr's: pipe counts and the length increase of every valve
    with twin_engine.connect() as conn:
        seg_of = dict(conn.execute(sa.text("SELECT pipe_id, segment FROM criticality_pipe")).all())
        own_len = dict(conn.execute(sa.text("SELECT segment, own_length_m FROM criticality_segment")).all())
        ends = {(r.pipe_id, r.node_id): (r.segment_a, r.segment_b) for r in conn.execute(sa.text(
            "SELECT pipe_id, node_id, segment_a, segment_b FROM criticality_valve"))}
        # the twin's lengths (from the drawn geometry; EPANET pumps have none of their own)
        lengths = pd.Series(dict(conn.execute(sa.text("SELECT id, length_m FROM current_segment")).all()))
    node_seg, link_seg, _ = wntr.metrics.topographic.valve_segments(wn.to_graph(), layer.copy())
    pairs = pd.DataFrame({"ours": [seg_of[p] for p in link_seg.index], "wntr": link_seg.to_numpy()})
    assert pairs.drop_duplicates().shape[0] == pairs["ours"].nunique() == pairs["wntr"].nunique()
    attrs = wntr.metrics.topographic.valve_segment_attributes(layer, node_seg, link_seg, length=lengths)
    for i, row in layer.iterrows():
        if (row["link"], row["node"]) in ends:
            a, b = (own_len[s] for s in ends[(row["link"], row["node"])])
            assert (a + b) / max(a, b) - 1 == pytest.approx(attrs.loc[i, "length_increase"], abs=1e-6)
        else:  # a valve inside one segment separates nothing
            assert attrs.loc[i, "length_increase"] == 0


def test_queries_pipe_lookup_and_staleness(net3, twin_engine):
    with twin_engine.connect() as conn:  # the command's run is audited
        assert conn.execute(sa.text("SELECT count(*) FROM audit_log WHERE action = 'criticality computed' "
                                    "AND path = 'twin analyze criticality'")).scalar() == 1
    few = criticality(twin_engine, top=50, min_valves=3, refresh=False)
    assert few["segments"] and all(s["valves_needed"] >= 3 for s in few["segments"])
    seg = few["segments"][0]
    one = pipe_criticality(twin_engine, seg["pipes"][0])
    assert one["segment"]["segment"] == seg["segment"] and one["segment"]["outage"] == seg["outage"]
    assert {v["id"] for v in one["valves"]} == set(seg["valves"])
    with pytest.raises(NotFound, match="NO-SUCH"):
        pipe_criticality(twin_engine, "NO-SUCH")
    with pytest.raises(InputError):
        criticality(twin_engine, top=0)
    # a valve found broken: the results are stale until recomputed, then it is no longer closed
    stuck = seg["valves"][0]
    with twin_engine.begin() as conn:
        conn.execute(sa.text("UPDATE valve SET operable = false WHERE id = :v"), {"v": stuck})
    assert pipe_criticality(twin_engine, seg["pipes"][0])["state"]["stale"]
    assert not criticality(twin_engine, top=5, min_valves=1)["state"]["stale"]
    after = pipe_criticality(twin_engine, seg["pipes"][0])
    assert stuck not in after["segment"]["valves"]
    assert after["segment"]["outage"]["pipes"] > seg["outage"]["pipes"]


def test_stored_id_arrays_read_back_as_written(twin_engine):
    """Pipe and valve ids are stored as PostgreSQL arrays: quotes, commas, braces, backslashes."""
    ids = np.array(['a"b', "c,d", "{e}", "f\\g", "普通 管段", "h"], dtype=object)
    labels = np.array([0, 0, 2, 2, 2, 0])
    with twin_engine.connect() as conn:
        read = [conn.execute(sa.text("SELECT CAST(:a AS text[])"), {"a": lit}).scalar()
                for lit in _pg_arrays(labels, ids, 3)]
    assert read == [['a"b', "c,d", "h"], [], ["{e}", "f\\g", "普通 管段"]]
