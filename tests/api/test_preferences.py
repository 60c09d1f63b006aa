"""The viewer's language, remembered for each user (issue 22): PUT /me/preferences, /me, the
audit log, and the names of codes the viewer shows (GET /view/vocabulary)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from analysis.vocabulary import _check
from tests.api.conftest import Api, make_twin, open_api
from tests.conftest import drop_schema
from twin.db import open_twin
from twin.domain import UTILITIES


@pytest.fixture(scope="module")
def prefs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    settings = make_twin("test_api_prefs", tmp_path_factory.mktemp("prefs"), data="empty")
    yield from open_api(settings)
    drop_schema(settings)


def _audit(api: Api, user: str) -> list[dict]:
    r = api.get("/admin/audit", "admin", params={"action": "preferences", "user": user})
    assert r.status_code == 200, r.text
    return r.json()["entries"]


def test_language_is_chinese_first_then_remembered(prefs: Api) -> None:
    assert prefs.get("/me", "editor").json()["lang"] == "zh-CN"
    r = prefs.request("PUT", "/me/preferences", "editor", json={"lang": "en"})
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "editor", "lang": "en"}
    assert prefs.get("/me", "editor").json()["lang"] == "en"
    assert prefs.get("/me", "viewer").json()["lang"] == "zh-CN"  # each user their own
    # stored in the database, read by an independent connection
    engine = open_twin(prefs.settings)
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT lang FROM app_user WHERE name = 'editor'")).scalar()
    engine.dispose()
    assert stored == "en"
    entries = _audit(prefs, "editor")
    assert entries and entries[0]["params"] == {"lang": "en", "was": "zh-CN"}
    assert entries[0]["affected"] == ["editor"]


@pytest.mark.parametrize("body", [{"lang": "fr"}, {"lang": "zh"}, {"lang": "x" * 5000}, {"lang": ""}])
def test_a_language_the_viewer_does_not_speak_is_refused(prefs: Api, body: dict) -> None:
    before = prefs.get("/me", "approver").json()["lang"]
    r = prefs.request("PUT", "/me/preferences", "approver", json=body)
    assert r.status_code == 400 and "zh-CN" in r.text, r.text
    assert prefs.get("/me", "approver").json()["lang"] == before
    assert not _audit(prefs, "approver")


def test_preferences_need_sign_in(prefs: Api) -> None:
    r = prefs.client.put("/me/preferences", json={"lang": "en"})
    assert r.status_code == 401


def test_vocabulary_names_every_code(prefs: Api) -> None:
    _check()
    v = prefs.get("/view/vocabulary").json()
    assert v["utility"]["PS"] == ["排水", "drainage"]
    assert v["utility"]["YS"][0] == "雨水"
    assert v["burial"]["ZM"][0] == "直埋"
    assert v["shape"]["circular"][0] == "圆形"
    assert v["depth_reference"]["invert"][0] == "管内底"
    assert v["finding_kind"]["clearance_vertical"][0] == "垂直净距不足"
    assert v["sensor_kind"]["pressure"] == ["压力", "pressure"]
    assert v["column"]["segment"]["diameter_mm"] == ["管径", "diameter", "mm"]
    assert set(UTILITIES) <= set(v["utility"])
    assert all(len(names) == 2 and all(names) for cat, table in v.items() if cat != "column"
               for names in table.values())


def test_vocabulary_needs_sign_in(prefs: Api) -> None:
    assert prefs.client.get("/view/vocabulary").status_code == 401
