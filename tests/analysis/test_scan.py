"""The whole-network scan on the demo district: the same findings as collision and clearance run
on their own, forked and serial paths alike, progress, bad inputs, and ``twin analyze scan --json``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from analysis.clash import collisions
from analysis.clearance import clearances, load_clearance_rules
from analysis.scan import load_scan_network, scan_network, truncate_findings
from tests.analysis.test_clash import demo  # noqa: F401  (the demo district, module-scoped)
from twin.errors import InputError


def _without_timings(d: dict) -> dict:
    """A scan result or report with its timings (which vary from run to run) left out."""
    out = {k: v for k, v in d.items() if k not in ("timings_s", "workers")}
    for k in ("collision", "clearance"):
        if k in out:
            out[k] = _without_timings(out[k])
    return out


@pytest.fixture(scope="module")
def scanned(demo, twin_engine) -> dict:  # noqa: F811
    return scan_network(twin_engine, workers=2)


def test_scan_finds_what_collision_and_clearance_find(demo, twin_engine, twin_settings, scanned):  # noqa: F811
    clash = collisions(demo, near_misses=False).as_dict()
    rules = load_clearance_rules(None, twin_settings, db=twin_engine)
    clear = clearances(demo, rules=rules).as_dict()
    assert scanned["segments"] == len(demo.segments)
    assert scanned["include"] == ["active", "planned"]
    got = scanned["collision"]
    # the scan's candidate search is wider (clearance's margin): the same clashes among more pairs
    assert got["counts"]["hard"] == clash["counts"]["hard"] > 0
    assert got["counts"]["duplicate"] == clash["counts"]["duplicate"]
    assert got["counts"]["candidate_pairs"] >= clash["counts"]["candidate_pairs"]
    assert got["clashes"] == clash["clashes"]
    assert _without_timings(scanned["clearance"]) == {**_without_timings(clear), "truncated": False}
    assert scanned["clearance"]["counts"]["vertical"] > 0
    assert set(scanned["timings_s"]) == {"load", "candidates", "collision", "clearance", "analyses_wall",
                                         "total"}


def test_forked_and_serial_scans_agree(twin_engine, scanned):
    serial = scan_network(twin_engine, workers=1)
    assert (scanned["workers"], serial["workers"]) == (2, 1)
    assert _without_timings(serial) == _without_timings(scanned)


def test_limit_lists_the_first_findings_and_keeps_the_counts(twin_engine, scanned):
    few = scan_network(twin_engine, limit=2)
    assert few["collision"]["clashes"] == scanned["collision"]["clashes"][:2]
    assert few["clearance"]["violations"] == scanned["clearance"]["violations"][:2]
    assert few["collision"]["truncated"] and few["clearance"]["truncated"]
    assert few["clearance"]["counts"] == scanned["clearance"]["counts"]
    assert not scanned["collision"]["truncated"]


def test_progress_is_reported_in_order(twin_engine):
    heard: list[tuple[int, str]] = []
    scan_network(twin_engine, limit=0, progress=lambda percent, message: heard.append((percent, message)))
    percents = [p for p, _ in heard]
    assert percents == sorted(percents) and 0 < percents[0] and percents[-1] < 100
    assert "reading" in heard[0][1] and "candidate pairs" in heard[2][1]


def test_a_failing_clearance_child_raises_its_error_here(twin_engine):
    # no 'kind' column: clearance fails in the child, then again here with the real error
    rules = pd.DataFrame({"id": ["r"], "a_utility": ["*"], "b_utility": ["*"], "clearance_m": [1.0]})
    with pytest.raises(KeyError, match="kind"):
        scan_network(twin_engine, rules=rules, workers=2)


def test_a_failing_collision_ends_the_clearance_child(twin_engine, monkeypatch):
    import multiprocessing

    import analysis.scan

    def broken(*args, **kwargs):
        raise RuntimeError("collision broke")

    monkeypatch.setattr(analysis.scan, "collisions", broken)
    with pytest.raises(RuntimeError, match="collision broke"):
        scan_network(twin_engine, workers=2)
    # the scan's own child (a Dask LocalCluster of another test module may still be ending its own)
    assert [p for p in multiprocessing.active_children() if p.name == "scan-clearance"] == []


@pytest.mark.parametrize("include, message", [
    (["proposed"], "no pipes of status proposed"),
    (["nope"], "'nope' is not one of"),
    ([], "(none)"),
])
def test_bad_or_empty_status_is_an_input_error(twin_engine, include, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        scan_network(twin_engine, include=include)


def test_load_scan_network_reads_the_segments_and_their_geometry(demo, twin_engine):  # noqa: F811
    net = load_scan_network(twin_engine)
    order = net.segment_index(demo.segments["id"])
    assert len(net.segments) == len(demo.segments)
    assert (net.offsets[order + 1] - net.offsets[order] == demo.offsets[1:] - demo.offsets[:-1]).all()
    for c in ("utility", "owner", "road", "shape"):
        assert net.segments[c].to_numpy(object)[order].tolist() == demo.segments[c].tolist()
    # the centrelines decoded in numpy are shapely's (load_network), bit for bit
    mine = np.concatenate([net.vertices[net.offsets[k]:net.offsets[k + 1]] for k in order])
    assert np.array_equal(mine, demo.vertices)
    # text as object columns, NaN where missing, as a ``str`` column reads
    for c in ("owner", "road", "material"):
        assert net.segments[c].dtype == object
        assert net.segments[c].isna().sum() == demo.segments[c].isna().sum()


def test_truncate_findings():
    assert truncate_findings({"f": [1, 2, 3]}, "f", 2) == {"f": [1, 2], "truncated": True}
    assert truncate_findings({"f": [1, 2]}, "f", 2) == {"f": [1, 2], "truncated": False}
    assert truncate_findings({"f": [1, 2]}, "f", None) == {"f": [1, 2], "truncated": False}


def test_cli_scan_json(twin_settings, twin_engine, scanned):
    from analysis.cli import app

    res = CliRunner().invoke(app, ["scan", "--json", "--limit", "3"],
                             env={"TWIN_DB_SCHEMA": twin_settings.db_schema})
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["segments"] == scanned["segments"]
    assert out["collision"]["counts"] == scanned["collision"]["counts"]
    assert out["clearance"]["counts"] == scanned["clearance"]["counts"]
    assert out["clearance"]["violations"] == scanned["clearance"]["violations"][:3]
    tables = CliRunner().invoke(app, ["scan", "--include", "active"],
                                env={"TWIN_DB_SCHEMA": twin_settings.db_schema})
    assert tables.exit_code == 0 and "hard clashes" in tables.output


def test_twin_analyze_scan_reports_a_bad_status_and_exits_2(twin_settings):
    env = {**os.environ, "TWIN_DB_SCHEMA": twin_settings.db_schema}
    res = subprocess.run([str(Path(sys.executable).with_name("twin")), "analyze", "scan", "--include", "nope"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2 and "error [INPUT]" in res.stderr and "'nope'" in res.stderr
