"""Valve segments against wntr's `valve_segments`, on the arrays and through the real twin."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import wntr

from analysis.segments import build_model, segment_labels
from tests.conftest import drop_schema
from twin.db import open_twin
from twin.settings import get_settings

NETWORKS = Path(wntr.__file__).parent / "library" / "networks"
TWIN = str(Path(sys.executable).with_name("twin"))


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Two labellings of the same items group them identically (labels may differ)."""
    pairs = pd.DataFrame({"a": np.asarray(a), "b": np.asarray(b)}).drop_duplicates()
    return len(pairs) == pairs["a"].nunique() == pairs["b"].nunique()


def wntr_reference(wn, layer: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    node_seg, link_seg, _ = wntr.metrics.topographic.valve_segments(wn.to_graph(), layer.copy())
    return node_seg, link_seg


def layers(wn) -> dict[str, pd.DataFrame]:
    return {
        "strategic-1": wntr.network.generate_valve_layer(wn, "strategic", 1, seed=7),
        "strategic-2": wntr.network.generate_valve_layer(wn, "strategic", 2, seed=11),
        "random": wntr.network.generate_valve_layer(wn, "random", max(wn.num_pipes // 3, 1), seed=5),
    }


@functools.cache
def network(name: str) -> tuple[wntr.network.WaterNetworkModel, dict[str, pd.DataFrame]]:
    """A library network and its (seeded) valve layers, read once for the module's tests."""
    wn = wntr.network.WaterNetworkModel(str(NETWORKS / f"{name}.inp"))
    return wn, layers(wn)


@functools.cache
def reference(name: str, kind: str) -> tuple[pd.Series, pd.Series]:
    """wntr's segments of a network's valve layer (seconds each on Net6): computed once, as the
    arrays test and the twin test compare with the same reference."""
    wn, by_kind = network(name)
    return wntr_reference(wn, by_kind[kind])


def test_docstring_line_example():
    node_seg, link_seg, n = segment_labels(np.array([0, 1]), np.array([1, 2]), np.array([1]), np.array([1]), 3)
    assert n == 2 and node_seg.tolist() == [0, 0, 1] and link_seg.tolist() == [0, 1]


@pytest.mark.parametrize(
    # links (from, to) | valves (link, node) | expected node and link segments (as a partition)
    "links, valves, nodes_expected, links_expected",
    [
        # no valves: one segment
        ([(0, 1), (1, 2)], [], [0, 0, 0], [0, 0]),
        # a pipe with valves at both ends is a segment of its own
        ([(0, 1), (1, 2), (2, 3)], [(1, 1), (1, 2)], [0, 0, 1, 1], [0, 2, 1]),
        # a node whose every pipe is valved at it is a segment of its own (valve chamber)
        ([(0, 1), (1, 2), (1, 3)], [(0, 1), (1, 1), (2, 1)], [0, 1, 2, 3], [0, 2, 3]),
        # a valve inside a loop separates nothing on its own
        ([(0, 1), (1, 2), (2, 0)], [(0, 1)], [0, 0, 0], [0, 0, 0]),
    ],
)
def test_hand_made_segments(links, valves, nodes_expected, links_expected):
    f, t = np.array(links).T
    vl, vn = (np.array(valves).T if valves else (np.array([], int), np.array([], int)))
    node_seg, link_seg, _ = segment_labels(f, t, vl, vn, len(nodes_expected))
    assert same_partition(np.concatenate([node_seg, link_seg]),
                          np.concatenate([nodes_expected, links_expected]))


@pytest.mark.parametrize("name", ["Net3", "ky10", "Net6"])
def test_arrays_equal_wntr(name):
    wn, by_kind = network(name)
    node_names = pd.Index(wn.node_name_list)
    link_names = wn.link_name_list
    f = node_names.get_indexer([wn.get_link(n).start_node_name for n in link_names])
    t = node_names.get_indexer([wn.get_link(n).end_node_name for n in link_names])
    for kind, layer in by_kind.items():
        node_ref, link_ref = reference(name, kind)
        vl = pd.Index(link_names).get_indexer(layer["link"])
        vn = node_names.get_indexer(layer["node"])
        node_seg, link_seg, n = segment_labels(f, t, vl, vn, len(node_names))
        ours = np.concatenate([node_seg, link_seg])
        ref = np.concatenate([node_ref.reindex(node_names).to_numpy(), link_ref.reindex(link_names).to_numpy()])
        assert same_partition(ours, ref), (name, kind)
        assert n == len(np.unique(ref)), (name, kind)


@pytest.fixture
def network_schema(request):
    """A schema of its own per network, so EPANET ids of different networks never meet."""
    settings = get_settings(db_schema=f"test_segments_{request.param.lower()}")
    drop_schema(settings)
    open_twin(settings).dispose()
    yield request.param, settings
    drop_schema(settings)


@pytest.mark.parametrize("network_schema", ["Net3", "ky10", "Net6"], indirect=True)
def test_twin_segments_equal_wntr(network_schema, tmp_path):
    """Import each network with a valve layer through `twin ingest epanet`, then segment the twin."""
    name, settings = network_schema
    _, by_kind = network(name)
    engine = open_twin(settings)
    for kind, layer in list(by_kind.items())[1:]:  # the arrays test covers all three layers
        valves = tmp_path / f"{kind}.csv"
        layer.rename(columns={"link": "pipe"}).to_csv(valves, index=False)
        env = {**os.environ, "TWIN_DB_SCHEMA": settings.db_schema}
        res = subprocess.run([TWIN, "ingest", "epanet", str(NETWORKS / f"{name}.inp"), "--valves", str(valves),
                              "--json"], capture_output=True, text=True, env=env, timeout=300)
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
        assert json.loads(res.stdout)["status"] == "applied"
        model = build_model(engine)
        assert len(model.valves) == len(layer.drop_duplicates())
        node_ref, link_ref = reference(name, kind)
        ours = np.concatenate([model.node_seg, model.link_seg])
        ref = np.concatenate([node_ref.reindex(model.nodes["id"]).to_numpy(),
                              link_ref.reindex(model.links["id"]).to_numpy()])
        assert not np.isnan(ref.astype(float)).any()
        assert same_partition(ours, ref), (name, kind)
    engine.dispose()
