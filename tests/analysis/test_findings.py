"""Findings that persist: the status life cycle across re-runs, edits and users; filters; the CLI.

The life cycle is checked on scan results written out by hand (each case a table row); the
whole path (scan, store, edit the pipes, scan again) on a survey of three pipes on PostGIS.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from analysis import findings
from analysis.findings import (
    findings_of,
    get_finding,
    list_findings,
    scan_and_store,
    set_status,
    store_findings,
)
from analysis.pieces import finding_key
from ingest.pipeline import ingest_survey
from twin.errors import Conflict, InputError, NotFound


def _f(kind: str, a: str, b: str, **kw) -> dict:
    """One finding as the scan lists it."""
    return {"key": finding_key(kind, (a, b)), "kind": kind, "a_id": a, "b_id": b, "a_utility": a[:2],
            "b_utility": b[:2], "a_owner": f"{a[:2]} co", "b_owner": f"{b[:2]} co", "road": "东昌路",
            "owners": f"{a[:2]} co / {b[:2]} co", "x": 1.0, "y": 2.0, "z": 30.0, **kw}


def _scan(*findings: dict) -> dict:
    return {"segments": 3, "collision": {"clashes": [f for f in findings if f["kind"] in ("hard", "duplicate")]},
            "clearance": {"violations": [f for f in findings if f["kind"] not in ("hard", "duplicate")]}}


GAS = _f("horizontal", "RQ1", "JS1", measured_m=0.1, required_m=0.5, verdict="violation", rule_id="H04")
CLASH = _f("hard", "TX1", "JS1", overlap_m=0.2)
NEAR = _f("vertical", "WS1", "JS1", measured_m=0.3, required_m=0.4, verdict="uncertain", uncertainty_m=0.3)
NORULE = _f("no_rule", "DL1", "TX1", verdict="no_rule")
OK = _f("vertical", "WS2", "JS1", measured_m=0.9, required_m=0.4, verdict="compliant")


@pytest.fixture
def engine(twin_engine):
    with twin_engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE finding CASCADE"))
    return twin_engine


def _status(engine, f: dict) -> str:
    return get_finding(engine, f["key"])["status"]


def test_findings_of_a_scan_result():
    rows = findings_of(_scan(GAS, CLASH, NEAR, NORULE, OK, GAS))
    assert rows["key"].tolist() == [CLASH["key"], GAS["key"], NEAR["key"], NORULE["key"]]  # compliant left out
    by = rows.set_index("key")
    assert by.loc[CLASH["key"], "verdict"] == "violation" and by.loc[CLASH["key"], "measured_m"] == -0.2
    assert by.loc[GAS["key"], "utility_pair"] == "JS-RQ" and by.loc[NORULE["key"], "verdict"] == "no_rule"
    assert by.loc[NEAR["key"], "uncertainty_m"] == 0.3 and by.loc[GAS["key"], "rule_id"] == "H04"


def test_status_life_cycle_across_runs(engine):
    # | run              | GAS      | CLASH    | NEAR     |
    # | 1: all three     | new      | new      | new      |
    # | user             | reviewed |          |          |
    # | 2: GAS, CLASH    | reviewed | active   | resolved |
    # | 3: CLASH, NEAR   | resolved | active   | active   |
    # | 4: GAS, CLASH, NEAR | active | active  | active   |
    first = store_findings(engine, _scan(GAS, CLASH, NEAR), user="alice")
    assert first == {"found": 3, "new": 3, "active_again": 0, "resolved": 0, "open": 3}
    assert {_status(engine, f) for f in (GAS, CLASH, NEAR)} == {"new"}
    set_status(engine, GAS["key"], "reviewed", user="bob", note="trial trench booked")
    second = store_findings(engine, _scan(GAS, CLASH), user="alice")
    assert second == {"found": 2, "new": 0, "active_again": 1, "resolved": 1, "open": 2}
    assert [_status(engine, f) for f in (GAS, CLASH, NEAR)] == ["reviewed", "active", "resolved"]
    third = store_findings(engine, _scan(CLASH, NEAR), user="carol")
    assert third["resolved"] == 1 and third["active_again"] == 1
    assert [_status(engine, f) for f in (GAS, CLASH, NEAR)] == ["resolved", "active", "active"]
    store_findings(engine, _scan(GAS, CLASH, NEAR), user="carol")
    assert [_status(engine, f) for f in (GAS, CLASH, NEAR)] == ["active", "active", "active"]
    history = get_finding(engine, GAS["key"])["history"]
    assert [(h["user_name"], h["from_status"], h["to_status"]) for h in history] == [
        ("alice", None, "new"), ("bob", "new", "reviewed"), ("carol", "reviewed", "resolved"),
        ("carol", "resolved", "active")]
    assert history[1]["note"] == "trial trench booked"


def test_approved_stays_approved_and_measurements_follow_the_latest_run(engine):
    store_findings(engine, _scan(GAS), user="alice")
    set_status(engine, GAS["key"], "approved", user="bob", note="deviation agreed with the gas company")
    store_findings(engine, _scan({**GAS, "measured_m": 0.2}), user="alice")
    got = get_finding(engine, GAS["key"])
    assert (got["status"], got["status_by"], got["measured_m"]) == ("approved", "bob", 0.2)


@pytest.mark.parametrize("start, to, error", [
    ("new", "resolved", Conflict),     # the scan resolves
    ("new", "new", Conflict),          # the scan gives new
    ("active", "active", Conflict),    # no change
    ("new", "closed", InputError),     # not a status
])
def test_transitions_a_user_may_not_make(engine, start, to, error):
    store_findings(engine, _scan(CLASH), user="alice")
    if start == "active":
        set_status(engine, CLASH["key"], "active", user="bob")
    with pytest.raises(error):
        set_status(engine, CLASH["key"], to, user="bob")


def test_approving_a_violation_or_no_rule_needs_a_reason(engine):
    store_findings(engine, _scan(GAS, NORULE, NEAR), user="alice")
    for f in (GAS, NORULE):
        with pytest.raises(InputError, match="needs a reason"):
            set_status(engine, f["key"], "approved", user="bob", note="  ")
        assert _status(engine, f) == "new"
    assert set_status(engine, NEAR["key"], "approved", user="bob")["status"] == "approved"  # uncertain: no reason
    with pytest.raises(NotFound):
        set_status(engine, "0" * 16, "reviewed", user="bob")


def test_a_failing_audit_rolls_the_change_back(engine):
    store_findings(engine, _scan(GAS), user="alice")

    def broken(conn, doc):
        raise RuntimeError("audit down")

    with pytest.raises(RuntimeError):
        set_status(engine, GAS["key"], "reviewed", user="bob", before_commit=broken)
    assert _status(engine, GAS) == "new" and len(get_finding(engine, GAS["key"])["history"]) == 1


@pytest.mark.parametrize("filters, expected", [
    ({}, {"GAS", "CLASH", "NEAR", "NORULE"}),
    ({"status": ["reviewed"]}, {"CLASH"}),
    ({"verdict": ["uncertain", "no_rule"]}, {"NEAR", "NORULE"}),
    ({"utility_pair": "JS-RQ"}, {"GAS"}),
    ({"utility_pair": "rq/js"}, {"GAS"}),
    ({"utility_pair": "TX"}, {"CLASH", "NORULE"}),
    ({"owner_pair": "TX co/DL co"}, {"NORULE"}),
    ({"owner_pair": "JS co"}, {"GAS", "CLASH", "NEAR"}),
    ({"road": "东昌路"}, {"GAS", "CLASH", "NEAR", "NORULE"}),
    ({"road": "兴华路"}, {"NEAR"}),
    ({"road": "湖南路"}, set()),
])
def test_filters(engine, filters, expected):
    near = {**NEAR, "road": "东昌路 / 兴华路"}
    store_findings(engine, _scan(GAS, CLASH, near, NORULE), user="alice")
    set_status(engine, CLASH["key"], "reviewed", user="bob")
    names = {GAS["key"]: "GAS", CLASH["key"]: "CLASH", NEAR["key"]: "NEAR", NORULE["key"]: "NORULE"}
    doc = list_findings(engine, **filters)
    assert {names[f["key"]] for f in doc["findings"]} == expected
    assert doc["numberMatched"] == len(expected) == sum(doc["counts"]["status"].values())


def test_listing_order_and_pages(engine):
    store_findings(engine, _scan(GAS, CLASH, NEAR, NORULE), user="alice")
    set_status(engine, GAS["key"], "reviewed", user="bob")
    doc = list_findings(engine)
    assert [f["status"] for f in doc["findings"]] == ["new", "new", "new", "reviewed"]
    assert [f["verdict"] for f in doc["findings"]][:3] == ["violation", "no_rule", "uncertain"]
    assert doc["findings"][0]["status_label"] == "新发现" and doc["findings"][2]["verdict_label"] == "无法判定"
    page = list_findings(engine, limit=2, offset=2)
    assert [f["key"] for f in page["findings"]] == [f["key"] for f in doc["findings"][2:]]
    assert page["numberReturned"] == 2 and page["numberMatched"] == 4
    with pytest.raises(InputError, match="status 'open'"):
        list_findings(engine, status=["open"])
    with pytest.raises(InputError, match="utility pair"):
        list_findings(engine, utility_pair="JS-RQ-DL")


# --------------------------------------------------------------------------- the whole path on PostGIS

POINTS = "物探点号,管线类型,特征,附属物,X,Y,地面高程,埋深,备注\n" + "\n".join([
    "JS1,JS,终点,,4035000.00,410000.00,35.00,1.40,", "JS2,JS,终点,,4035000.00,410060.00,35.00,1.40,",
    "RQ1,RQ,终点,,{gas_n},410000.00,35.00,1.40,", "RQ2,RQ,终点,,{gas_n},410060.00,35.00,1.40,",
    "TX1,TX,终点,,4034980.00,410030.00,35.00,1.30,", "TX2,TX,终点,,4035030.00,410030.00,35.00,1.30,",
]) + "\n"
SEGMENTS = "起点号,终点号,管线类型,起点埋深,终点埋深,管径/断面,材质,埋设方式,压力/电压,权属单位,道路名称,状态\n" + "\n".join([
    "JS1,JS2,JS,1.40,1.40,DN300,{water_material},ZM,0.4,聊城市自来水公司,东昌路,active",
    "RQ1,RQ2,RQ,1.40,1.40,DN150,钢,ZM,0.4,聊城市燃气公司,东昌路,active",
    "TX1,TX2,TX,1.30,1.30,400X300,PVC,GK,,中国电信聊城分公司,光岳路,active",
]) + "\n"


def _survey(folder: Path, settings, *, gas_n: str = "4035000.30", water_material: str = "球墨铸铁") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "points.csv").write_text(POINTS.format(gas_n=gas_n), encoding="utf-8")
    (folder / "segments.csv").write_text(SEGMENTS.format(water_material=water_material), encoding="utf-8")
    report = ingest_survey(folder / "points.csv", folder / "segments.csv", settings)
    assert report.status == "applied", report


def _by_pair(engine) -> dict[frozenset, dict]:
    return {frozenset((f["a_id"], f["b_id"])): f for f in list_findings(engine, limit=1000)["findings"]}


def test_statuses_survive_a_rescan_and_edits_of_the_pipes(engine, twin_settings, tmp_path):
    _survey(tmp_path / "a", twin_settings)
    result = scan_and_store(engine, user="alice", limit=1, workers=1)
    assert result["findings"]["found"] == result["findings"]["new"] > 0
    pairs = _by_pair(engine)
    water_gas = next(f for p, f in pairs.items() if {f["a_utility"], f["b_utility"]} == {"JS", "RQ"})
    crossings = [f for f in pairs.values() if "TX" in (f["a_utility"], f["b_utility"])]
    assert water_gas["kind"] in ("horizontal", "hard") and len(crossings) >= 2  # TX crosses both at their depth
    set_status(engine, crossings[0]["key"], "reviewed", user="bob")
    # an edit of an attribute: the same findings, the reviewed one still reviewed, new ones active
    _survey(tmp_path / "b", twin_settings, water_material="钢")
    again = scan_and_store(engine, user="alice", workers=1)["findings"]
    assert again["new"] == again["resolved"] == 0 and again["found"] == result["findings"]["found"]
    assert _status(engine, crossings[0]) == "reviewed" and _status(engine, water_gas) == "active"
    # the gas main moved 5 m away: its finding with the water main resolves by itself
    _survey(tmp_path / "c", twin_settings, gas_n="4035005.00", water_material="钢")
    moved = scan_and_store(engine, user="alice", workers=1)["findings"]
    assert moved["resolved"] >= 1 and _status(engine, water_gas) == "resolved"
    assert _status(engine, crossings[0]) == "reviewed"
    no_store = scan_and_store(engine, user="alice", store=False, workers=1)
    assert no_store["findings"] is None


def test_cli_lists_and_moves_findings(engine, twin_settings):
    from analysis.cli import app

    store_findings(engine, _scan(GAS, CLASH), user="alice")
    env = {"TWIN_DB_SCHEMA": twin_settings.db_schema, "TWIN_USER": "dora"}
    res = CliRunner().invoke(app, ["findings", "--utility-pair", "JS-RQ", "--json"], env=env)
    assert res.exit_code == 0, res.output
    assert [f["key"] for f in json.loads(res.output)["findings"]] == [GAS["key"]]
    res = CliRunner().invoke(app, ["finding", GAS["key"], "--status", "approved", "--note", "agreed", "--json"],
                             env=env)
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["history"][-1] == {**json.loads(res.output)["history"][-1], "user_name": "dora",
                                                      "to_status": "approved", "note": "agreed"}
    with engine.connect() as conn:
        entry = conn.execute(sa.text("SELECT user_name, action, affected FROM audit_log "
                                     "WHERE action = 'finding-status' ORDER BY id DESC LIMIT 1")).one()
    assert entry == ("dora", "finding-status", [f"finding:{GAS['key']}"])
    table = CliRunner().invoke(app, ["findings", "--status", "approved"], env=env)
    assert table.exit_code == 0 and "已批准" in table.output
    bad = CliRunner().invoke(app, ["finding", GAS["key"], "--status", "new"], env=env)
    assert bad.exit_code != 0 and "may move to" in str(bad.exception)


# ----------------------------------------------------------------------------- the bulk store


def _life(engine, monkeypatch, bulk_events: int) -> tuple[list, list]:
    """The life cycle above (new, user's review, resolved, found again) stored with the events in
    bulk from ``bulk_events`` on; the rows and the history without their times."""
    monkeypatch.setattr(findings, "BULK_EVENTS", bulk_events)
    monkeypatch.setattr(findings, "BULK_SHARE", 0)
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE finding CASCADE"))
    counts = [store_findings(engine, _scan(GAS, CLASH, NEAR), user="alice")]
    set_status(engine, GAS["key"], "reviewed", user="bob", note="trial trench booked")
    counts += [store_findings(engine, _scan(GAS, CLASH), user="alice"),
               store_findings(engine, _scan(CLASH, {**NEAR, "measured_m": 0.25}), user="carol"),
               store_findings(engine, _scan(GAS, CLASH, NEAR), user="carol")]
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "SELECT key, status, status_by, measured_m, resolved_at IS NULL FROM finding ORDER BY key")).all()
        events = conn.execute(sa.text(
            "SELECT key, user_name, from_status, to_status, note FROM finding_event ORDER BY id")).all()
    return [counts, rows], events


def _foreign_key(engine) -> tuple:
    with engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT conname, pg_get_constraintdef(oid), convalidated FROM pg_constraint "
            "WHERE conrelid = 'finding_event'::regclass AND contype = 'f'")).one()


@pytest.fixture
def bulk_runs(monkeypatch) -> list[str]:
    """The users of the stores that wrote their events in bulk, in order."""
    runs: list[str] = []
    monkeypatch.setattr(findings, "_events_in_bulk",
                        lambda conn, user, real=findings._events_in_bulk: runs.append(user) or real(conn, user))
    return runs


def test_events_in_bulk_are_the_same_events(engine, monkeypatch, bulk_runs):
    key = _foreign_key(engine)
    row_by_row = _life(engine, monkeypatch, 10**9)
    assert bulk_runs == []
    in_bulk = _life(engine, monkeypatch, 1)
    # the guess of the third run is none (as many found as open, none new): its two events one by one
    assert bulk_runs == ["alice", "alice", "carol"]
    assert in_bulk == row_by_row and len(in_bulk[1]) == 9
    assert _foreign_key(engine) == key and key[2]  # added again as it was, checked


def test_a_bulk_store_that_fails_leaves_the_previous_findings(engine, monkeypatch, bulk_runs):
    store_findings(engine, _scan(GAS, CLASH), user="alice")
    before = list_findings(engine), get_finding(engine, GAS["key"])["history"], _foreign_key(engine)
    monkeypatch.setattr(findings, "BULK_EVENTS", 1)
    monkeypatch.setattr(findings, "BULK_SHARE", 0)
    # an event naming no finding: the foreign key, added again, refuses it and the store with it
    nowhere = "(SELECT key, from_status, to_status FROM finding_change UNION ALL SELECT 'nowhere', NULL, 'new') c"
    monkeypatch.setattr(findings, "_EVENTS", findings._EVENTS.replace("finding_change", nowhere))
    with pytest.raises(sa.exc.IntegrityError):
        store_findings(engine, _scan(CLASH, NEAR), user="carol")
    assert bulk_runs == ["carol"]
    assert (list_findings(engine), get_finding(engine, GAS["key"])["history"], _foreign_key(engine)) == before


def test_a_store_inside_a_transaction_holding_the_table(engine, monkeypatch, bulk_runs):
    monkeypatch.setattr(findings, "BULK_EVENTS", 1)
    monkeypatch.setattr(findings, "BULK_SHARE", 0)
    with engine.begin() as conn:  # the guess cannot read the table: no bulk, and no wait
        conn.execute(sa.text("TRUNCATE finding CASCADE"))
        assert store_findings(conn, _scan(GAS, CLASH), user="alice")["new"] == 2
    assert bulk_runs == [] and len(get_finding(engine, GAS["key"])["history"]) == 1
