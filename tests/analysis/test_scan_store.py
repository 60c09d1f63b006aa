"""The stored scan: the findings go to the store as one table (not a dict each) and hold what the
result lists; an unchanged re-scan writes no row and no event; ``last_seen`` reads as before.

On the demo district (planted defects) for the scan's own paths, forked and serial; on findings
written out by hand for the life cycle of ``last_seen``.
"""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

from analysis.findings import (
    findings_of,
    get_finding,
    list_findings,
    scan_and_store,
    store_findings,
)
from analysis.scan import scan_findings
from tests.analysis.test_clash import demo  # noqa: F401  (the demo district, module-scoped)
from tests.analysis.test_findings import CLASH, GAS, _scan

#: The stored columns of a finding the scan gives (besides status and dates).
COLUMNS = ("key", "kind", "verdict", "a_id", "b_id", "a_utility", "b_utility", "utility_pair", "a_owner",
           "b_owner", "owners", "road", "measured_m", "required_m", "uncertainty_m", "rule_id", "x", "y", "z")
NUMBERS = ("measured_m", "required_m", "uncertainty_m", "x", "y", "z")


def _frame(rows: list, columns: tuple[str, ...] = COLUMNS) -> pd.DataFrame:
    out = pd.DataFrame([tuple(r) for r in rows], columns=list(columns), dtype=object)
    for c in NUMBERS:
        out[c] = pd.to_numeric(out[c]).astype(float)
    return out.reset_index(drop=True)


def _stored(engine: sa.Engine) -> pd.DataFrame:
    with engine.connect() as conn:
        return _frame(conn.execute(sa.text(f"SELECT {', '.join(COLUMNS)} FROM finding ORDER BY key")).all())


def _writes(engine: sa.Engine) -> tuple[dict, int]:
    """Each finding's row version (``xmin``: a new one on every write) and the number of events."""
    with engine.connect() as conn:
        versions = dict(conn.execute(sa.text("SELECT key, xmin::text FROM finding")).all())
        return versions, conn.execute(sa.text("SELECT count(*) FROM finding_event")).scalar()


@pytest.fixture(scope="module")
def first(demo, twin_engine) -> dict:  # noqa: F811
    with twin_engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE finding CASCADE"))
    # forked: the clearance child's findings cross the pipe as a table
    return scan_and_store(twin_engine, user="alice", workers=2)


def test_the_stored_rows_are_what_the_result_lists(first, twin_engine):
    expected = findings_of(first).sort_values("key").reset_index(drop=True)
    n = len(expected)
    assert n > 0 and first["findings"] == {"found": n, "new": n, "active_again": 0, "resolved": 0, "open": n}
    assert set(expected["verdict"]) >= {"violation", "uncertain"}  # the planted defects and more
    pd.testing.assert_frame_equal(_stored(twin_engine), _frame(expected.itertuples(index=False)))


def test_forked_and_serial_scans_give_the_same_table(first, twin_engine):
    forked_result, forked = scan_findings(twin_engine, workers=2, limit=2)
    serial_result, serial = scan_findings(twin_engine, workers=1, limit=2)
    assert forked.equals(serial) and forked.num_rows >= first["findings"]["found"]
    # the listed findings are cut to the limit; the table holds every one
    assert len(forked_result["clearance"]["uncertain"]) == 2 and forked_result["clearance"]["truncated"]
    assert serial_result["verdicts"] == forked_result["verdicts"] == first["verdicts"]


def test_an_unchanged_rescan_writes_nothing(first, twin_engine):
    n = first["findings"]["found"]
    again = scan_and_store(twin_engine, user="bob", workers=1, limit=0)
    assert again["findings"] == {"found": n, "new": 0, "active_again": n, "resolved": 0, "open": n}
    assert again["collision"]["clashes"] == [] and again["collision"]["truncated"]  # limit 0 lists none
    versions, events = _writes(twin_engine)
    before = {f["key"]: f for f in list_findings(twin_engine, limit=n)["findings"]}
    third = scan_and_store(twin_engine, user="carol", workers=1)["findings"]
    assert third == {"found": n, "new": 0, "active_again": 0, "resolved": 0, "open": n}
    assert _writes(twin_engine) == (versions, events)  # not one row written, not one event
    after = {f["key"]: f for f in list_findings(twin_engine, limit=n)["findings"]}
    # every open finding was seen by the latest scan, as when each row was written on every scan
    assert len({f["last_seen"] for f in after.values()}) == 1
    assert all(after[k]["last_seen"] > before[k]["last_seen"] for k in after)
    assert all({**after[k], "last_seen": None} == {**before[k], "last_seen": None} for k in after)
    assert get_finding(twin_engine, next(iter(after)))["last_seen"] == next(iter(after.values()))["last_seen"]


def test_last_seen_through_a_finding_life(twin_engine):
    # | run              | GAS                          | CLASH            |
    # | 1: GAS, CLASH    | new, written                 | new, written     |
    # | 2: GAS, CLASH    | active, written (status)     | active, written  |
    # | 3: GAS moved     | active, written (content)    | not written      |
    # | 4: CLASH         | resolved, last seen at run 3 | seen at run 4    |
    with twin_engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE finding CASCADE"))
    store_findings(twin_engine, _scan(GAS, CLASH), user="alice")
    store_findings(twin_engine, _scan(GAS, CLASH), user="alice")
    versions, events = _writes(twin_engine)
    moved = {**GAS, "measured_m": 0.2}
    store_findings(twin_engine, _scan(moved, CLASH), user="alice")
    now, events_now = _writes(twin_engine)
    assert now[GAS["key"]] != versions[GAS["key"]] and now[CLASH["key"]] == versions[CLASH["key"]]
    assert events_now == events and get_finding(twin_engine, GAS["key"])["measured_m"] == 0.2
    seen = get_finding(twin_engine, GAS["key"])["last_seen"]
    assert get_finding(twin_engine, CLASH["key"])["last_seen"] == seen  # run 3 saw both
    assert store_findings(twin_engine, _scan(CLASH), user="bob")["resolved"] == 1
    gas, clash = get_finding(twin_engine, GAS["key"]), get_finding(twin_engine, CLASH["key"])
    assert gas["status"] == "resolved" and gas["last_seen"] == seen and gas["resolved_at"] > seen
    assert clash["last_seen"] == gas["resolved_at"]  # run 4, one transaction: one now()
    assert gas["history"][-1] == {**gas["history"][-1], "from_status": "active", "to_status": "resolved",
                                  "user_name": "bob"}
