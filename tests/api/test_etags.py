"""Conditional requests: items pages, single items and shutoff answers carry an ETag of the
network's change mark, the request's parameters and its variant; ``If-None-Match`` -> 304.

The network is changed by a plain UPDATE of one pipe (the statement triggers of migration 0007
move the change mark, as any committed write does).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tests.api.conftest import Api, make_twin, open_api
from tests.conftest import drop_schema
from twin.db import change_mark, open_twin

PAGE = "/collections/pipes/items"
SHUTOFF = "/processes/shutoff/execution"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    settings = make_twin("test_api_etags", tmp_path_factory.mktemp("etags"), data="small")
    yield from open_api(settings)
    drop_schema(settings)


def edit(api: Api, pipe: str) -> None:
    """A committed change of one pipe's remarks, made beside the server (another editor)."""
    engine = open_twin(api.settings)
    try:
        before = change_mark(engine)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE segment SET remarks = coalesce(remarks, '') || '.' WHERE id = :i"),
                         {"i": pipe})
        assert change_mark(engine) != before
    finally:
        engine.dispose()


def revalidate(api: Api, method: str, path: str, tag: str, **kw) -> object:
    return api.request(method, path, headers={"If-None-Match": tag}, **kw)


def test_items_pages_are_revalidated_until_the_network_changes(api: Api) -> None:
    first = api.get(PAGE, params={"limit": 3})
    assert first.status_code == 200 and first.headers["etag"].startswith('W/"')
    assert first.headers["cache-control"] == "private, no-cache"
    tag = first.headers["etag"]
    again = revalidate(api, "GET", PAGE, tag, params={"limit": 3})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == tag
    # a strong spelling of the same tag, or a list holding it, matches too (weak comparison)
    assert revalidate(api, "GET", PAGE, f'"x", {tag.removeprefix("W/")}', params={"limit": 3}).status_code == 304
    # another page, another CRS or another collection is another answer: its own tag
    for params in ({"limit": 4}, {"limit": 3, "crs": "EPSG:4548"}):
        other = revalidate(api, "GET", PAGE, tag, params=params)
        assert other.status_code == 200 and other.headers["etag"] != tag, params
    assert revalidate(api, "GET", "/collections/nodes/items", tag, params={"limit": 3}).status_code == 200
    # an edit anywhere in the network: the old tag no longer matches, the page comes anew
    edit(api, first.json()["features"][0]["id"])
    fresh = revalidate(api, "GET", PAGE, tag, params={"limit": 3})
    assert fresh.status_code == 200 and fresh.headers["etag"] != tag
    assert fresh.json()["features"][0]["properties"]["remarks"].endswith(".")
    assert revalidate(api, "GET", PAGE, fresh.headers["etag"], params={"limit": 3}).status_code == 304


def test_single_items_are_revalidated(api: Api) -> None:
    pipe = api.get(PAGE, params={"limit": 1}).json()["features"][0]["id"]
    path = f"{PAGE}/{pipe}"
    first = api.get(path)
    assert first.status_code == 200 and first.headers["etag"]
    tag = first.headers["etag"]
    assert revalidate(api, "GET", path, tag).status_code == 304
    assert revalidate(api, "GET", path, tag, params={"crs": "EPSG:4548"}).status_code == 200
    edit(api, pipe)
    fresh = revalidate(api, "GET", path, tag)
    assert fresh.status_code == 200 and fresh.headers["etag"] != tag


def test_proposals_carry_no_change_mark_tag(api: Api) -> None:
    r = api.get("/collections/proposals/items")
    assert r.status_code == 200 and "etag" not in r.headers


def test_shutoff_answers_are_revalidated_before_the_analysis_runs(api: Api) -> None:
    pipe = api.get(PAGE, params={"limit": 1, "utility": "JS"}).json()["features"][0]["id"]
    body = {"inputs": {"pipe": pipe}}
    first = api.post(SHUTOFF, json=body)
    assert first.status_code == 200 and first.json()["pipe"] == pipe
    tag = first.headers["etag"]
    again = revalidate(api, "POST", SHUTOFF, tag, json=body)
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == tag
    # other inputs: another answer
    other = revalidate(api, "POST", SHUTOFF, tag, json={"inputs": {"pipe": pipe, "max_distance_m": 50}})
    assert other.status_code == 200 and other.headers["etag"] != tag
    edit(api, pipe)
    fresh = revalidate(api, "POST", SHUTOFF, tag, json=body)
    assert fresh.status_code == 200 and fresh.headers["etag"] != tag
    # a 304 is still a run someone asked for: audited
    entries = api.get("/admin/audit", "admin", params={"action": "process-shutoff", "user": "viewer"}).json()
    assert 304 in {e["status"] for e in entries["entries"]}

