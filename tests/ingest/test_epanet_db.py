"""EPANET networks shipped with wntr, through `twin ingest epanet`, into the real PostGIS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
import wntr  # noqa: E402  (a test dependency: the independent reference)

NETWORKS = Path(wntr.__file__).parent / "library" / "networks"
TWIN = str(Path(sys.executable).with_name("twin"))


@pytest.mark.parametrize("name", ["Net3", "ky10", "Net6"])
def test_epanet_network_lands_whole_with_its_valves(name, twin_settings, twin_engine, tmp_path):
    inp = NETWORKS / f"{name}.inp"
    wn = wntr.network.WaterNetworkModel(str(inp))
    layer = wntr.network.generate_valve_layer(wn, "strategic", 2, seed=123)
    valves = tmp_path / "valves.csv"
    layer.rename(columns={"link": "pipe"}).to_csv(valves, index=False)
    env = {**os.environ, "TWIN_DB_SCHEMA": twin_settings.db_schema}
    res = subprocess.run([TWIN, "ingest", "epanet", str(inp), "--valves", str(valves), "--json"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    report = json.loads(res.stdout)
    assert report["status"] == "applied" and report["error_count"] == 0
    scope = f"epanet:{name}"
    with twin_engine.connect() as conn:
        def count(table: str, where: str = "") -> int:
            return conn.execute(sa.text(f"SELECT count(*) FROM current_{table} WHERE scope = :s {where}"),
                                {"s": scope}).scalar()

        assert count("node") == wn.num_nodes
        assert count("segment") == wn.num_links
        assert count("valve") == len(layer)
        assert count("source") == wn.num_reservoirs + wn.num_tanks
        demanded = sum(1 for _, j in wn.junctions() if j.base_demand > 0)
        assert count("customer") == demanded
        # Every valve sits at an end of its segment, where the layer put it.
        rows = conn.execute(sa.text(
            "SELECT v.segment_id, v.node_id FROM current_valve v JOIN current_segment s ON s.id = v.segment_id "
            "WHERE v.scope = :s AND v.node_id IN (s.from_node, s.to_node)"), {"s": scope}).all()
        assert {(r.segment_id, r.node_id) for r in rows} == {(r.link, r.node) for r in layer.itertuples()}
        # Pipes drawn with vertices keep them.
        with_vertices = [n for n, link in wn.links() if link.vertices]
        if with_vertices:
            npoints = conn.execute(sa.text("SELECT ST_NPoints(geom) FROM segment WHERE id = :i"),
                                   {"i": with_vertices[0]}).scalar()
            assert npoints == len(wn.get_link(with_vertices[0]).vertices) + 2
