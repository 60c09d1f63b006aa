"""The names of codes, Chinese first, from their one home (analysis.vocabulary), and the proposal
report's headings and times (local time with its offset, not UTC)."""

from __future__ import annotations

import time

import pytest

from analysis.proposal_report import local_time, report_html
from analysis.vocabulary import _check, vocabulary
from twin.domain import UTILITIES
from twin.schema import CATALOGUE


def test_every_declared_code_has_both_names() -> None:
    _check()
    v = vocabulary()
    assert v["utility"]["PS"] == ["排水", "drainage"] and v["utility"]["YS"] == ["雨水", "storm water"]
    assert v["burial"]["ZM"][0] == "直埋"
    for u in UTILITIES.values():
        assert all(sub in v["utility"] for sub in u.subtypes)
    for kind, cols in CATALOGUE.items():
        assert set(v["column"][kind]) == {c.name for c in cols}
    assert all(len(names) == 2 and all(names) for cat, table in v.items() if cat != "column"
               for names in table.values())


@pytest.fixture()
def shanghai(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_report_is_chinese_first_in_local_time(shanghai) -> None:
    assert local_time("2026-12-03 01:03:11.5+00") == "2026-12-03 09:03:11+08:00"
    assert local_time("2026-12-03T01:03:11Z") == "2026-12-03 09:03:11+08:00"
    assert local_time("not a time") == "not a time" and local_time(None) == ""
    html = report_html({
        "name": "燃气 crossing", "passed": False, "status": "reviewed", "counts": {"collision": 1},
        "findings": [], "utility": "RQ", "size": "DN200", "length_m": 30.0,
        "checked_at": "2026-12-03T01:00:00+00:00", "created_by": "alice", "created_at": "2026-12-03 01:00:00+00",
        "events": [{"at": "2026-12-03 02:30:00+00", "by": "bob", "action": "decided", "from_status": "new",
                    "to_status": "reviewed"}],
    })
    assert "<html lang='zh-CN'>" in html and "<h1>管线审批 Proposal check" in html
    assert "<h2>问题 Findings</h2>" in html and "<h2>记录 History</h2>" in html
    assert "碰撞 collision: 1" in html and "已审核 reviewed" in html and "id='result'>FAIL<" in html
    assert "2026-12-03 09:00:00+08:00" in html and "2026-12-03 10:30:00+08:00" in html
    assert "01:00:00+00" not in html
