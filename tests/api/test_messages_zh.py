"""Errors in the client's language: Chinese for ``Accept-Language: zh-CN``, English without it.

Every error body carries ``description_en`` (and ``description_zh`` when the server has one);
``description`` is the one the client asked for and ``Content-Language`` names it.

On the shared demo district, left as found: the edit is refused, and the sign-in lock is of a
name no one uses and removed at the end.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api import signin
from api.errors import prefers_chinese
from tests.api.conftest import Api
from twin import cli
from twin.db import open_twin
from twin.settings import TwinSettings

CJK = re.compile(r"[\u4e00-\u9fff]")
ZH = {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"}


@pytest.fixture(scope="module")
def client(api: Api) -> TestClient:
    return api.client


@pytest.fixture(scope="module")
def headers(api: Api) -> dict[str, dict[str, str]]:
    return api.headers


def both(send, *, code: str, status: int) -> tuple[dict, dict]:
    """The same request asked in Chinese and in English: both bodies, checked for the common parts."""
    zh, en = send(ZH), send({})
    for r, language in ((zh, "zh-CN"), (en, "en")):
        assert r.status_code == status, r.text
        assert r.headers["content-language"] == language, r.headers
        assert r.json()["code"] == code
    zh, en = zh.json(), en.json()
    assert zh["description"] == zh["description_zh"] == en["description_zh"], zh
    assert CJK.search(zh["description"]), zh
    assert en["description"] == en["description_en"] == zh["description_en"], en
    assert not CJK.search(en["description"]), en
    return zh, en


def test_404_409_422_429_in_chinese_and_english(client, headers, api_twin: TwinSettings) -> None:
    viewer, editor, admin = headers["viewer"], headers["editor"], headers["admin"]
    # 404 from the domain (NotFound): the Chinese carries the same value.
    zh, en = both(lambda h: client.get("/collections/no-such-thing", headers={**viewer, **h}),
                  code="NOT_FOUND", status=404)
    assert "no-such-thing" in zh["description"] and "no collection" in en["description"]
    # 409: an edit against a version that has moved on (版本冲突).
    node = client.get("/collections/nodes/items", params={"limit": 1}, headers=viewer).json()["features"][0]
    move = f"/edit/nodes/{node['id']}/move"
    zh, en = both(lambda h: client.post(move, json={"easting": 1.0, "version": 999_999},
                                        headers={**editor, **h}), code="CONFLICT", status=409)
    assert node["id"] in zh["description"] and "版本" in zh["description"] and "version" in en["description"]
    # 422: a parameter out of range, in pydantic's words and in Chinese.
    zh, en = both(lambda h: client.get("/admin/audit", params={"limit": 5000}, headers={**admin, **h}),
                  code="INVALID_PARAMETER", status=422)
    assert zh["description"] == "参数 query.limit 无效：须不大于 1000", zh
    assert en["description"].startswith("query.limit: ") and zh["detail"] == en["detail"]
    # 422: a missing field, and a kind of error not translated (generic text + pydantic's English).
    zh, en = both(lambda h: client.post(f"/edit/nodes/{node['id']}/retire", json={}, headers={**editor, **h}),
                  code="INVALID_PARAMETER", status=422)
    assert zh["description"] == "参数 body.reason 无效：缺少此项", zh
    # 429: a user name locked after too many failed sign-ins.
    engine, name = open_twin(api_twin), "nobody-zh-test"
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO signin_failure (user_name, client) "
                                 "SELECT :n, '10.9.9.9' FROM generate_series(1, :k)"),
                         {"n": name, "k": signin.ACCOUNT_FAILURES})
        zh, en = both(lambda h: client.post("/token", data={"username": name, "password": "x"},
                                            headers=h), code="TOO_BUSY", status=429)
        assert "登录失败次数过多" in zh["description"] and "too many failed" in en["description"]
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM signin_failure WHERE user_name = :n"), {"n": name})
        engine.dispose()


def test_answers_outside_the_domain_speak_chinese_too(client, headers) -> None:
    # 401 from the sign-in middleware (before any route), 404 of an unknown route (Starlette).
    zh, en = both(lambda h: client.get("/collections", headers={"Authorization": "Bearer nonsense", **h}),
                  code="UNAUTHORIZED", status=401)
    assert zh["description"] == "登录令牌无效" and en["description"] == "invalid token"
    zh, _ = both(lambda h: client.get("/healthz/nothing-here", headers={**headers["viewer"], **h}),
                 code="NOT_FOUND", status=404)
    # The OpenAPI document describes the bodies.
    doc = client.get("/api", headers=headers["viewer"])
    problem = doc.json()["components"]["schemas"]["Problem"]
    assert {"code", "description", "description_en"} <= set(problem["required"])
    assert "description_zh" in problem["properties"]


@pytest.mark.parametrize(("accept", "chinese"), [
    ("zh-CN", True), ("zh", True), ("zh-Hans-CN", True), ("zh-TW, en;q=0.5", True),
    ("en-US,en;q=0.9,zh-CN;q=0.8", False), ("en;q=0.5, zh;q=0.6", True), ("fr, zh;q=0.2", True),
    ("fr, *;q=0.5, zh;q=0.2", False), ("zh;q=0, en", False), ("", False), (None, False),
    ("zh;q=nonsense", False), ("ZH-cn", True),
])
def test_accept_language_is_negotiated(accept: str | None, chinese: bool) -> None:
    assert prefers_chinese(accept) is chinese


def test_the_command_says_chinese_then_english(tmp_path: Path, monkeypatch, capsys) -> None:
    missing = tmp_path / "nope.dump"
    monkeypatch.setattr(sys, "argv", ["twin", "restore", str(missing), "--yes"])
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    said = " ".join(capsys.readouterr().err.split())
    assert exit_.value.code == 2
    assert f"error [NOT_FOUND] 没有备份文件 {missing} — no backup file {missing}" in said, said


def test_our_validators_speak_both_languages(client, headers) -> None:
    """A 422 from PipeTwin's own validators (not pydantic's kinds): Chinese for zh, English else."""
    editor, viewer = headers["editor"], headers["viewer"]
    zh, en = both(lambda h: client.post("/edit/nodes", json={"id": "ZH-1", "utility": "JS", "ground_z": 10.0,
                                                            "lon": 117.0}, headers={**editor, **h}),
                  code="INVALID_PARAMETER", status=422)
    assert zh["description"] == "参数 body 无效：lon 与 lat 须同时给出", zh
    assert en["description"] == "body: lon and lat go together", en
    assert zh["detail"] == en["detail"] and zh["detail"][0]["type"] == "value_error"
    zh, en = both(lambda h: client.post("/processes/shutoff/execution",
                                        json={"inputs": {"pipe": "P1", "node": "N1"}}, headers={**viewer, **h}),
                  code="INVALID_PARAMETER", status=422)
    assert "pipe、node、at 三者须且只能给出一个" in zh["description"], zh
    assert "name exactly one of pipe, node or at" in en["description"], en
    # a validator deeper down (NUL in a GeoJSON proposal) the same
    doc = {"type": "LineString", "coordinates": [[0, 0], [1, 1]], "name": "a\x00b"}
    zh, en = both(lambda h: client.post("/processes/collision/execution", json={"inputs": {"proposal": doc}},
                                        headers={**viewer, **h}), code="INVALID_PARAMETER", status=422)
    assert "NUL" in zh["description"] and "文本不能包含" in zh["description"], zh
    assert "must not contain NUL" in en["description"], en


def test_job_progress_in_the_clients_language(client, headers, api_twin: TwinSettings) -> None:
    """A job's progress (the English step texts of ingest, scan, tiles) read in Chinese for zh,
    with both kept; a failure stored as 中文 — English is split into its two languages."""
    engine = open_twin(api_twin)
    rows = {"zhjob-running": ("running", "loading: loading segments"),
            "zhjob-meshing": ("running", "build 2: meshing tiles 3/10"),
            "zhjob-unknown": ("running", "a step no catalogue knows"),
            "zhjob-failed": ("failed", "[CONFLICT] 版本冲突 — version conflict")}
    try:
        with engine.begin() as conn:
            for job_id, (status, message) in rows.items():
                conn.execute(sa.text("INSERT INTO job (id, kind, owner, params, status, progress, message) "
                                     "VALUES (:i, 'import', 'viewer', '{}', :s, 40, :m)"),
                             {"i": job_id, "s": status, "m": message})
        get = lambda job_id, h: client.get(f"/jobs/{job_id}", headers={**headers["viewer"], **h}).json()  # noqa: E731
        zh, en = get("zhjob-running", ZH), get("zhjob-running", {})
        assert (zh["message"], en["message"]) == ("入库：正在载入管段", "loading: loading segments")
        assert zh["message_en"] == en["message_en"] == "loading: loading segments"
        assert zh["message_zh"] == en["message_zh"] == "入库：正在载入管段"
        assert get("zhjob-meshing", ZH)["message"] == "第 2 次构建：正在生成瓦片网格 3/10"
        unknown = get("zhjob-unknown", ZH)  # no Chinese known: the English, never nothing
        assert (unknown["message"], unknown["message_zh"]) == ("a step no catalogue knows", None)
        zh, en = get("zhjob-failed", ZH), get("zhjob-failed", {})
        assert (zh["message"], en["message"]) == ("[CONFLICT] 版本冲突", "[CONFLICT] version conflict")
        listed = client.get("/jobs", headers={**headers["viewer"], **ZH}).json()["jobs"]
        assert {j["jobID"]: j["message"] for j in listed if j["jobID"] in rows}["zhjob-running"] == "入库：正在载入管段"
        r = client.get("/jobs/zhjob-failed/results", headers={**headers["viewer"], **ZH})
        assert r.status_code == 404 and r.json()["description"] == "作业状态为 失败：[CONFLICT] 版本冲突", r.json()
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DELETE FROM job WHERE id = ANY(:i)"), {"i": list(rows)})
        engine.dispose()
