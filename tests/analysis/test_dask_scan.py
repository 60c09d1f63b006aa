"""The whole-network scan by partitions on a Dask LocalCluster equals the single-process scan.

The demo district with its planted defects (module-scoped), cut into cells far smaller than
the district so that many findings join pipes of different cells; two worker processes read
their partitions from the twin themselves.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
import sqlalchemy as sa

from analysis.clearance import load_clearance_rules
from analysis.scan import _grid, scan_network
from tests.analysis.test_clash import demo  # noqa: F401  (the demo district, module-scoped)
from twin.dask import dask_client, worker_count
from twin.errors import ConfigError, InputError
from twin.settings import TwinSettings

if TYPE_CHECKING:
    from distributed import Client

#: Cells of this width (m): 25 over the demo district (930 m square).
CELL_M = 200.0


def _without_timings(d: dict) -> dict:
    out = {k: v for k, v in d.items() if k not in ("timings_s", "workers", "partitions")}
    for k in ("collision", "clearance"):
        if k in out:
            out[k] = _without_timings(out[k])
    return out


_SHARED: dict[str, object] = {}


def shared_client(request: pytest.FixtureRequest, settings: TwinSettings) -> Client:
    """One LocalCluster of two worker processes per test process, for every Dask test module that
    runs there (starting one and importing the code in its workers costs seconds), stopped when
    the session ends."""
    if "client" not in _SHARED:
        context = dask_client(settings.model_copy(update={"dask_scheduler": None}), workers=2)
        _SHARED["client"] = context.__enter__()

        def stop() -> None:
            _SHARED.pop("client", None)
            context.__exit__(None, None, None)

        request.session.addfinalizer(stop)
    return _SHARED["client"]


@pytest.fixture(scope="module")
def client(request, twin_settings) -> Client:
    return shared_client(request, twin_settings)


@pytest.fixture(scope="module")
def single(demo, twin_engine) -> dict:  # noqa: F811
    return scan_network(twin_engine, workers=1, cluster=False)


def test_dask_scan_equals_the_single_process_scan(demo, twin_engine, twin_settings, client, single):  # noqa: F811
    heard: list[tuple[int, str]] = []
    got = scan_network(twin_engine, settings=twin_settings, cluster=client, partition_m=CELL_M,
                       progress=lambda p, m: heard.append((p, m)))
    assert worker_count(client) == got["workers"] == 2
    assert got["partitions"] >= 16
    assert single["collision"]["counts"]["hard"] > 0 and single["clearance"]["counts"]["vertical"] > 0
    assert single["clearance"]["counts"]["no_rule"] + single["clearance"]["counts"]["uncertain"] > 0
    # the same findings in the same order, the same counts of pieces, pairs and checked pairs
    assert _without_timings(got) == _without_timings(single)
    assert [f["key"] for f in got["clearance"]["violations"]] == [
        f["key"] for f in single["clearance"]["violations"]]
    assert heard[-1][0] >= 90 and any("partitions scanned" in m for _, m in heard)

    # many findings join pipes whose extents lie in different cells: pairs across partition edges
    rules = load_clearance_rules(None, twin_settings, db=twin_engine)
    grid, _ = _grid(twin_engine, ["active", "planned"], rules, CELL_M, 2)
    with twin_engine.connect() as conn:
        centre = dict(conn.execute(sa.text(
            "SELECT id, ARRAY[(ST_XMin(geom) + ST_XMax(geom)) / 2, (ST_YMin(geom) + ST_YMax(geom)) / 2] "
            "FROM current_segment")).all())
    findings = [*got["collision"]["clashes"], *got["clearance"]["violations"], *got["clearance"]["uncertain"]]
    a = np.array([centre[f["a_id"]] for f in findings])
    b = np.array([centre[f["b_id"]] for f in findings])
    across = grid.cell_of(a[:, 0], a[:, 1]) != grid.cell_of(b[:, 0], b[:, 1])
    assert across.sum() >= 5


def test_dask_scan_with_a_limit_and_the_default_partitions(demo, twin_engine, twin_settings, client, single):  # noqa: F811
    got = scan_network(twin_engine, settings=twin_settings, cluster=client, limit=3)
    assert got["collision"]["clashes"] == single["collision"]["clashes"][:3]
    assert got["collision"]["truncated"] is (len(single["collision"]["clashes"]) > 3)
    assert got["verdicts"] == single["verdicts"]
    assert got["candidate_pairs"] == single["candidate_pairs"]


def test_bad_cluster_inputs(twin_engine, twin_settings, client):
    with pytest.raises(InputError, match="partition_m"):
        scan_network(twin_engine, settings=twin_settings, cluster=client, partition_m=0)
    with pytest.raises(InputError, match="settings"):
        scan_network(twin_engine, cluster=client)
    with pytest.raises(ConfigError, match="scheduler"):
        with dask_client(twin_settings.model_copy(update={"dask_scheduler": "tcp://127.0.0.1:9"}), timeout_s=1):
            pass
