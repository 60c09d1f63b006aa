"""The tileset over HTTP: media types, ETag revalidation with and without gzip, CORS, path
safety, tile builds as jobs, the debounced refresh after changes, and the access log of a real
server.

Reads use the session's demo district; builds and refreshes run on a small twin of this
module's own.
"""

from __future__ import annotations

import gzip
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from api.auth import User
from api.tiles import _resolve, schedule_refresh
from tests.api.conftest import Api, make_twin, open_api, sign_in, start_server, wait_job
from tests.conftest import drop_schema
from tiles.build import tiles_dir
from twin.db import make_engine
from twin.errors import NotFound
from twin.settings import TwinSettings

ORIGIN = "https://gis.example.city"


def content_uris(tile: dict) -> Iterator[str]:
    if "content" in tile:
        yield tile["content"]["uri"]
    for child in tile.get("children", []):
        yield from content_uris(child)


def file_of(uri: str) -> str:
    """The file a content URI names (without its ``?v=`` version)."""
    return uri.split("?", 1)[0]


def unversioned(tile: dict) -> dict:
    """A tile (and its children) with the content URIs as the file on disk has them."""
    out = {**tile, "children": [unversioned(c) for c in tile.get("children", [])]}
    if "children" not in tile:
        del out["children"]
    if "content" in tile:
        out["content"] = {**tile["content"], "uri": file_of(tile["content"]["uri"])}
    return out


def biggest_tile(api: Api) -> str:
    """The URI of the largest GLB of the demo tileset (well over gzip's threshold)."""
    doc = api.get("/tiles/tileset.json").json()
    folder = tiles_dir(api.settings)
    return max(content_uris(doc["root"]), key=lambda u: (folder / file_of(u)).stat().st_size)



# ----------------------------------------------------------------------------- reading
def test_tileset_json(api: Api) -> None:
    r = api.get("/tiles/tileset.json")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "private, no-cache"
    assert r.headers["etag"]
    doc = r.json()
    assert doc["asset"]["version"] == "1.1"
    uris = list(content_uris(doc["root"]))
    assert uris
    # Relative URIs resolve under /tiles/, wherever the server is mounted.
    assert all(not u.startswith(("/", "http:", "https:")) and file_of(u).endswith(".glb") for u in uris)
    # ... each with its file's version, the rest as the file has it
    assert all(re.fullmatch(r"t/[0-9/]+[.]glb[?]v=[0-9a-f]+-[0-9a-f]+", u) for u in uris), uris[:3]
    assert {**doc, "root": unversioned(doc["root"])} == json.loads((tiles_dir(api.settings) / "tileset.json").read_bytes())


def test_glb_content(api: Api) -> None:
    uri = biggest_tile(api)
    raw = (tiles_dir(api.settings) / file_of(uri)).read_bytes()
    r = api.get(f"/tiles/{uri}", headers={"Accept-Encoding": "identity"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "model/gltf-binary"
    assert "content-encoding" not in r.headers
    assert int(r.headers["content-length"]) == len(raw)
    assert r.content == raw and r.content[:4] == b"glTF"


@pytest.mark.parametrize("name", ["tileset.json", "glb"])
def test_etag_revalidation_identity_and_gzip(api: Api, name: str) -> None:
    uri = name if name.endswith(".json") else file_of(biggest_tile(api))  # unversioned: no-cache
    raw = api.get(f"/tiles/{uri}", headers={"Accept-Encoding": "identity"}).content
    assert len(raw) > 1024  # big enough for the app's GZipMiddleware

    plain = api.get(f"/tiles/{uri}", headers={"Accept-Encoding": "identity"})
    strong = plain.headers["etag"]
    assert strong.startswith('"') and "content-encoding" not in plain.headers

    # With gzip the bytes on the wire differ from the file's: the validator is weak.
    zipped = api.client.stream("GET", f"/tiles/{uri}", headers={**api.headers["viewer"], "Accept-Encoding": "gzip"})
    with zipped as r:
        wire = b"".join(r.iter_raw())
        assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
        assert "accept-encoding" in r.headers["vary"].lower()
        weak = r.headers["etag"]
    assert weak == "W/" + strong
    assert gzip.decompress(wire) == raw and len(wire) < len(raw)

    for tag, encoding in ((strong, "identity"), (weak, "gzip"), (weak, "identity"), (strong, "gzip"),
                          (f'"nope", {weak}', "gzip"), ("*", "identity")):
        r = api.get(f"/tiles/{uri}", headers={"If-None-Match": tag, "Accept-Encoding": encoding})
        assert r.status_code == 304, (tag, encoding)
        assert r.content == b"" and r.headers["etag"] and r.headers["cache-control"] == "private, no-cache"
    stale = api.get(f"/tiles/{uri}", headers={"If-None-Match": '"0-0"', "Accept-Encoding": "identity"})
    assert stale.status_code == 200 and stale.content == raw
    since = api.get(f"/tiles/{uri}", headers={"If-Modified-Since": plain.headers["last-modified"],
                                              "Accept-Encoding": "identity"})
    assert since.status_code == 304


def test_contents_at_their_version_are_kept_by_the_browser(api: Api) -> None:
    """A second visit downloads nothing unchanged: the tileset is revalidated (304) and each
    content named at its current version may be kept a year; another version revalidates."""
    first = api.get("/tiles/tileset.json")
    again = api.get("/tiles/tileset.json", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.headers["cache-control"] == "private, no-cache"
    uri = biggest_tile(api)
    path, version = uri.split("?v=")
    r = api.get(f"/tiles/{uri}", headers={"Accept-Encoding": "gzip"})
    assert r.status_code == 200 and r.headers["cache-control"] == "private, max-age=31536000, immutable"
    assert r.headers["content-encoding"] == "gzip" and r.headers["etag"] == f'W/"{version}"'
    # the version is the file's own validator: a build that replaces the file changes it
    st = (tiles_dir(api.settings) / path).stat()
    assert version == f"{st.st_size:x}-{st.st_mtime_ns:x}"
    revalidated = api.get(f"/tiles/{uri}", headers={"If-None-Match": r.headers["etag"]})
    assert revalidated.status_code == 304 and revalidated.content == b""
    for other in (f"/tiles/{path}", f"/tiles/{path}?v=0-0", f"/tiles/{path}?v={version}&v=x"):
        r = api.get(other)
        assert r.status_code == 200 and r.headers["cache-control"] == "private, no-cache", other


@pytest.mark.parametrize("path", [
    # Encoded, so that the client does not normalise them away before the route sees them.
    "t/%2e%2e/%2e%2e/manifest.json", "..%2f..%2fetc%2fpasswd", "%2fetc%2fpasswd", "t/%2e%2e/tileset.json",
    "manifest.json", "manifest-features.npz", ".build.lock", "t/0/0/0.glb.tmp1", "nope.json", "t/9/9/9.glb",
    "t", "", "x" * 400 + ".json",
])
def test_only_tileset_files_are_served(api: Api, path: str) -> None:
    r = api.get(f"/tiles/{path}")
    assert r.status_code == 404, (path, r.status_code)
    assert r.json()["code"] == "NOT_FOUND"
    assert "no tile file" in r.json()["description"]  # answered by the tiles route itself
    assert "root:" not in r.text


def test_a_nul_in_a_tile_path_is_refused_at_the_edge(api: Api) -> None:
    r = api.get("/tiles/t/%00.glb")
    assert r.status_code == 400 and r.json()["code"] == "INVALID_PARAMETER"


def test_resolve_stays_inside_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "tiles"
    (root / "t" / "0" / "0").mkdir(parents=True)
    (root / "t" / "0" / "0" / "0.glb").write_bytes(b"glTF")
    secret = tmp_path / "secret.json"
    secret.write_text("{}")
    (root / "t" / "leak.json").symlink_to(secret)
    assert _resolve(root, "t/0/0/0.glb") == (root / "t/0/0/0.glb").resolve()
    for path in ("t/leak.json", "../secret.json", str(secret), "t/0/../../../secret.json", "t/0/0"):
        with pytest.raises(NotFound):
            _resolve(root, path)


def test_sign_in_required(api: Api) -> None:
    assert api.client.get("/tiles/tileset.json").status_code == 401
    assert api.client.post("/tiles/build").status_code == 401
    assert api.post("/tiles/build", "viewer").status_code == 403
    assert api.post("/tiles/build", "approver").status_code == 403


# ----------------------------------------------------------------------------- own twin
@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwinSettings]:
    settings = make_twin(f"test_api_tiles_http_{os.getpid()}", tmp_path_factory.mktemp("tiles_http"))
    settings = settings.model_copy(update={"cors_origins": [ORIGIN]})
    yield settings
    drop_schema(settings)


@pytest.fixture(scope="module")
def small_api(small: TwinSettings) -> Iterator[Api]:
    yield from open_api(small)


def test_no_tileset_yet_then_build_job(small_api: Api) -> None:
    folder = tiles_dir(small_api.settings)
    assert not (folder / "tileset.json").exists()
    r = small_api.get("/tiles/tileset.json")
    assert r.status_code == 404
    assert "no tileset built yet: run twin tiles build" in r.json()["description"]

    r = small_api.post("/tiles/build", "editor", params={"full": True})
    assert r.status_code == 201, r.text
    job_id = r.json()["jobID"]
    assert r.headers["location"].endswith(f"/jobs/{job_id}")
    assert r.json()["processID"] == "tiles" and r.json()["status"] in ("accepted", "running", "successful")
    done = wait_job(small_api, job_id, "editor")
    assert done["status"] == "successful", done
    report = small_api.get(f"/jobs/{job_id}/results", "editor").json()
    assert report["full"] is True and report["segments"] == 8 and report["tiles_written"] >= 1
    assert small_api.get("/tiles/tileset.json").status_code == 200
    audit = small_api.get("/admin/audit", "admin", params={"action": "tiles-build"}).json()["entries"]
    assert audit and audit[0]["user_name"] == "editor" and audit[0]["params"]["job"] == job_id
    assert small_api.post("/tiles/build", "editor", params={"full": "maybe"}).status_code == 422


def test_refresh_after_a_change_is_debounced(small_api: Api) -> None:
    app = small_api.client.app
    if not (tiles_dir(small_api.settings) / "tileset.json").exists():
        wait_job(small_api, small_api.post("/tiles/build", "editor").json()["jobID"], "editor")
    before = small_api.get("/tiles/tileset.json").json()
    before_tags = {u: small_api.get(f"/tiles/{u}").headers["etag"] for u in content_uris(before["root"])}

    engine = make_engine(small_api.settings)
    with engine.begin() as conn:
        changed = conn.execute(sa.text(
            "UPDATE segment SET diameter_mm = 500, size_text = 'DN500' "
            "WHERE id = (SELECT min(id) FROM segment WHERE utility = 'JS') RETURNING id")).scalar_one()
    engine.dispose()

    editor = User("editor", "editor")
    ids = [schedule_refresh(app, editor) for _ in range(10)]
    assert ids[0] is not None and set(ids) == {ids[0]}  # one job for the burst
    done = wait_job(small_api, ids[0], "editor")
    assert done["status"] == "successful", done
    assert done["owner"] == "editor"
    report = small_api.get(f"/jobs/{ids[0]}/results", "editor").json()
    assert report["full"] is False and report["runs"] in (1, 2)
    assert report["tiles_written"] >= 1
    after = small_api.get("/tiles/tileset.json").json()
    after_tags = {u: small_api.get(f"/tiles/{u}").headers["etag"] for u in content_uris(after["root"])}
    assert any(after_tags.get(u) != tag for u, tag in before_tags.items()), "no tile was rewritten"
    assert changed

    # After the job, the next change starts a new one.
    later = schedule_refresh(app, "editor")
    assert later is not None and later != ids[0]
    assert wait_job(small_api, later, "editor")["status"] == "successful"
    # The refresh job is not counted against the user's own limit of heavy jobs.
    assert app.state.jobs._running.get("editor", 0) == 0


def test_refresh_never_raises(small_api: Api, tmp_path: Path) -> None:
    app = small_api.client.app
    good = app.state.settings
    # No tileset yet: nothing to refresh, and no job.
    app.state.settings = good.model_copy(update={"tiles_dir": tmp_path / "empty"})
    try:
        assert schedule_refresh(app, "editor") is None
    finally:
        app.state.settings = good
    # A build that fails (its lock file is a folder) fails its job, not the caller.
    broken = tmp_path / "broken"
    (broken / ".build.lock").mkdir(parents=True)
    (broken / "tileset.json").write_text("{}")
    app.state.settings = good.model_copy(update={"tiles_dir": broken})
    try:
        job = schedule_refresh(app, "editor")
        assert job is not None
        failed = wait_job(small_api, job, "editor")
        assert failed["status"] == "failed" and "internal error" in failed["message"]
    finally:
        app.state.settings = good
    # A failed refresh leaves the debounce ready for the next one.
    again = schedule_refresh(app, "editor")
    assert again not in (None, job)
    assert wait_job(small_api, again, "editor")["status"] == "successful"
    # No job runner at all (a broken app): logged, not raised.
    runner = app.state.jobs
    del app.state.jobs
    try:
        assert schedule_refresh(app, "editor") is None
    finally:
        app.state.jobs = runner


def test_cors(small_api: Api) -> None:
    if not (tiles_dir(small_api.settings) / "tileset.json").exists():
        wait_job(small_api, small_api.post("/tiles/build", "editor").json()["jobID"], "editor")
    preflight = small_api.client.options("/tiles/tileset.json", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization, if-none-match"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    r = small_api.get("/tiles/tileset.json", headers={"Origin": ORIGIN})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN
    assert "etag" in r.headers["access-control-expose-headers"].lower()

    evil = "https://evil.example.com"
    refused = small_api.client.options("/tiles/tileset.json", headers={
        "Origin": evil, "Access-Control-Request-Method": "GET"})
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
    r = small_api.get("/tiles/tileset.json", headers={"Origin": evil})
    assert "access-control-allow-origin" not in r.headers


# ----------------------------------------------------------------------------- real server
def test_real_server_gzip_304_and_access_log(small_api: Api, tmp_path: Path) -> None:
    settings = small_api.settings
    if not (tiles_dir(settings) / "tileset.json").exists():
        wait_job(small_api, small_api.post("/tiles/build", "editor").json()["jobID"], "editor")
    server = start_server(settings, tmp_path / "server.log")
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            headers = sign_in(client, "viewer")
            doc = client.get("/tiles/tileset.json", headers=headers).json()
            uri = max(content_uris(doc["root"]), key=lambda u: (tiles_dir(settings) / file_of(u)).stat().st_size)
            raw = (tiles_dir(settings) / file_of(uri)).read_bytes()
            assert len(raw) >= 1024
            with client.stream("GET", f"/tiles/{uri}", headers={**headers, "Accept-Encoding": "gzip"}) as r:
                wire = b"".join(r.iter_raw())
                etag = r.headers["etag"]
                assert r.headers["content-encoding"] == "gzip"
            assert r.status_code == 200 and r.headers["content-type"] == "model/gltf-binary"
            assert gzip.decompress(wire) == raw and etag.startswith("W/")
            again = client.get(f"/tiles/{uri}", headers={**headers, "If-None-Match": etag,
                                                         "Accept-Encoding": "gzip"})
            assert again.status_code == 304 and again.content == b""
    finally:
        server.stop()
    lines = [json.loads(line) for line in (tmp_path / "server.log").read_text().splitlines()
             if line.startswith("{")]
    access = [e for e in lines if e.get("logger") == "pipetwin.access" and e.get("path") == f"/tiles/{file_of(uri)}"]
    assert [e["status"] for e in access] == [200, 304]
    assert all(e["user"] == "viewer" and e["method"] == "GET" and e["request_id"] for e in access)
    assert access[0]["bytes"] == len(wire)


# ----------------------------------------------------------------------------- whose tileset
def test_another_twins_tileset_is_refused_then_rebuilt(small_api: Api) -> None:
    folder = tiles_dir(small_api.settings)
    if not (folder / "tileset.json").exists():
        wait_job(small_api, small_api.post("/tiles/build", "editor").json()["jobID"], "editor")
    frame = small_api.get("/view/frame").json()
    doc = small_api.get("/tiles/tileset.json").json()
    assert doc["extras"]["pipetwin"] == {"twin": frame["twin"], "changes": frame["changes"]}
    assert doc["asset"]["tilesetVersion"] == frame["changes"]

    # Another twin's build in the same folder (as when two databases share a data folder).
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["twin"] = "00000000-0000-4000-8000-000000000000"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    for path in ("tileset.json", "t/0/0/0.glb"):
        r = small_api.get(f"/tiles/{path}")
        assert r.status_code == 409, r.text
        assert "another twin (00000000-" in r.json()["description"] and "being rebuilt" in r.json()["description"]
    job = re.search(r"\(job ([^)]+)\)", r.json()["description"]).group(1)
    done = wait_job(small_api, job)  # the refresh is the viewer's job: the viewer asked
    assert done["status"] == "successful", done
    assert json.loads((folder / "manifest.json").read_text())["twin"] == frame["twin"]
    doc = small_api.get("/tiles/tileset.json").json()
    assert doc["extras"]["pipetwin"]["twin"] == frame["twin"]
