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


TEST_NETWORKS = Path(wntr.__file__).parent / "tests" / "networks_for_testing"


def test_anytown_imports_with_its_placeholders_assumed(twin_settings, twin_engine):
    from ingest.epanet import read_epanet
    from ingest.pipeline import ingest_tables

    path = TEST_NETWORKS / "Anytown.inp"
    wn = wntr.network.WaterNetworkModel(str(path))
    tables = read_epanet(path, twin_crs=twin_settings.crs, offset="auto")
    report = ingest_tables(tables, twin_settings, scope="epanet:Anytown", check_long=False)
    assert report.status == "applied" and report.error_count == 0, [i.as_dict() for i in report.errors]
    placeholders = sorted(n for n, p in wn.pipes() if p.diameter < 0.001)
    assert report.issue_counts["W306"] == len(placeholders) == 6
    with twin_engine.connect() as conn:
        rows = dict(conn.execute(sa.text(
            "SELECT id, diameter_mm FROM current_segment WHERE scope = 'epanet:Anytown'")).all())
    assert len(rows) == wn.num_links
    assert all(rows[n] >= 1.0 for n in placeholders)  # an assumed size, never the placeholder
    for name, pipe in wn.pipes():
        if name not in placeholders:
            assert rows[name] == pytest.approx(pipe.diameter * 1000, abs=0.05)


#: Imported whole above (Net6_plus is Net6 with five nodes more): kept out for time.
_ABOVE = ("Net3.inp", "ky10.inp", "Net6.inp", "Net6_plus.inp")


def _loadable_networks() -> list[Path]:
    """wntr's library and test networks that wntr itself loads (bad_*.inp are meant to fail)."""
    found = sorted([*NETWORKS.glob("*.inp"), *TEST_NETWORKS.glob("*.inp")])
    return [p for p in found if not p.name.startswith("bad_") and p.name not in _ABOVE]


def test_every_wntr_network_passes_the_checks(twin_settings):
    from ingest.epanet import read_epanet
    from ingest.pipeline import ingest_tables

    checked = []
    for path in _loadable_networks():
        wn = wntr.network.WaterNetworkModel(str(path))  # the reference reads it
        tables = read_epanet(path, twin_crs=twin_settings.crs, offset="auto")
        report = ingest_tables(tables, twin_settings, dry_run=True, check_long=False)
        assert report.status == "checked", (path.name, [i.as_dict() for i in report.errors[:3]])
        assert (report.counts["nodes"], report.counts["segments"]) == (wn.num_nodes, wn.num_links), path.name
        checked.append(path.name)
    assert {"Anytown.inp", "ky4.inp", "msx_example.inp"} <= set(checked) and len(checked) >= 30
