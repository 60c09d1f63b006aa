"""The whole-network scan by partitions in this process (a network above
``TWIN_SCAN_PARTITION_ABOVE`` segments, or ``partition_m`` given without a cluster) equals the
scan of the whole network at once, findings and counts, on the demo district with its planted
defects (many findings join pipes of different cells)."""

from __future__ import annotations

import pyarrow.compute as pc
import pytest

from analysis.scan import scan_findings, scan_network
from tests.analysis.test_clash import demo  # noqa: F401  (the demo district, module-scoped)
from tests.analysis.test_dask_scan import CELL_M, _without_timings
from twin.errors import InputError


@pytest.fixture(scope="module")
def single(demo, twin_engine, twin_settings):  # noqa: F811
    return scan_findings(twin_engine, settings=twin_settings, workers=1, cluster=False)


def test_partitions_here_equal_the_whole_scan(twin_engine, twin_settings, single):
    heard: list[tuple[int, str]] = []
    got, table = scan_findings(twin_engine, settings=twin_settings, cluster=False, partition_m=CELL_M,
                               progress=lambda p, m: heard.append((p, m)))
    whole, whole_table = single
    assert got["partitions"] >= 16 and got["workers"] == 2  # two child processes, a partition each at a time
    assert whole["collision"]["counts"]["hard"] > 0 and whole["clearance"]["counts"]["vertical"] > 0
    assert _without_timings(got) == _without_timings(whole)
    # every finding the store would write, the same
    order = [("key", "ascending")]
    assert table.sort_by(order).equals(whole_table.sort_by(order))
    assert pc.count_distinct(table["key"]).as_py() == table.num_rows > 0
    assert any("partitions scanned" in m for _, m in heard) and heard[-1][0] >= 90


def test_a_network_above_the_setting_is_scanned_by_partitions(twin_engine, twin_settings, single):
    small = twin_settings.model_copy(update={"scan_partition_above": 1_000})  # the demo has ~1,500 segments
    got = scan_network(twin_engine, settings=small, cluster=False, limit=5, workers=1)
    assert got["partitions"] >= 4 and got["workers"] == 1  # one at a time in this process
    whole = single[0]
    assert got["verdicts"] == whole["verdicts"] and got["candidate_pairs"] == whole["candidate_pairs"]
    assert got["collision"]["clashes"] == whole["collision"]["clashes"][:5]
    # below the setting: the whole network at once, as before
    big = twin_settings.model_copy(update={"scan_partition_above": 10_000_000})
    assert "partitions" not in scan_network(twin_engine, settings=big, cluster=False, limit=5)
    with pytest.raises(InputError, match="partition_m"):
        scan_network(twin_engine, settings=twin_settings, cluster=False, partition_m=0)
