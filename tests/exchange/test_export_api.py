"""``POST /exports``: a job that ends with a file for the user who asked, audited."""

from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.api.conftest import Api, make_twin, open_api, wait_job
from tests.conftest import drop_schema
from twin.db import open_twin


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    settings = make_twin("test_exports_api", tmp_path_factory.mktemp("exports"), data="small")
    yield from open_api(settings)
    engine = open_twin(settings)
    with engine.connect() as conn:  # the files this module's exports left under the data folder
        tokens = conn.execute(sa.text("SELECT params ->> 'token' FROM job WHERE kind = 'export'")).scalars()
        for token in tokens:
            shutil.rmtree(Path(settings.data_dir) / "exports" / token, ignore_errors=True)
    engine.dispose()
    drop_schema(settings)


def sql(api: Api, text: str, **params) -> list:
    engine = open_twin(api.settings)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(text), params).all()
    finally:
        engine.dispose()


def test_export_job_downloads_a_geopackage(api: Api, tmp_path: Path) -> None:
    r = api.post("/exports", json={"format": "gpkg", "utility": "JS"})
    assert r.status_code == 201, r.text
    job = r.json()["jobID"]
    assert r.headers["location"].endswith(f"/jobs/{job}")
    assert wait_job(api, job)["status"] == "successful"
    result = api.get(f"/jobs/{job}/results").json()
    assert result["href"].endswith(f"/exports/{job}/file") and result["file"] == "out.gpkg"
    assert "out" not in result or result["out"] is None  # no server path is shown
    got = api.get(f"/exports/{job}/file")
    assert got.status_code == 200 and got.headers["content-type"] == "application/geopackage+sqlite3"
    path = tmp_path / "js.gpkg"
    path.write_bytes(got.content)
    text = subprocess.run(["ogrinfo", "-ro", "-so", "-al", str(path)], capture_output=True, text=True,
                          timeout=60).stdout
    ((n,),) = sql(api, "SELECT count(*) FROM current_segment WHERE utility = 'JS'")
    assert f"Feature Count: {n}" in text
    ((token,),) = sql(api, "SELECT params ->> 'token' FROM job WHERE id = :i", i=job)
    kept = Path(api.settings.data_dir) / "exports" / token / "out.gpkg"  # under the data folder
    assert stat.S_IMODE(os.stat(kept).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(kept.parent).st_mode) == 0o700
    # the file is the asker's own: another user, an admin too, finds nothing
    for role in ("editor", "admin"):
        assert api.get(f"/exports/{job}/file", role).status_code == 404
    actions = sql(api, "SELECT user_name, action FROM audit_log WHERE action LIKE 'export%'")
    assert ("viewer", "export") in actions and ("viewer", "export-download") in actions


def test_folder_formats_come_zipped(api: Api) -> None:
    r = api.post("/exports", json={"format": "cjj61"})
    job = r.json()["jobID"]
    assert wait_job(api, job)["status"] == "successful"
    got = api.get(f"/exports/{job}/file")
    assert got.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(got.content)).namelist()
    assert names == ["points.csv", "segments.csv"]
    table = zipfile.ZipFile(io.BytesIO(got.content)).read("points.csv").decode("utf-8-sig")
    ((points,),) = sql(api, "SELECT count(*) FROM current_node")
    assert table.splitlines()[0].startswith("物探点号") and len(table.splitlines()) == points + 1


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"format": "kml"}, 422),
        ({"format": "gpkg", "bbox": "1,2,3"}, 400),
        ({"format": "gpkg", "utility": "ZZ"}, 400),
        ({"format": "gpkg", "at": "soon"}, 400),
        ({"format": "inp", "utility": "RQ"}, 400),
        ({"format": "gpkg", "colour": "red"}, 422),
    ],
)
def test_bad_export_requests(api: Api, body: dict, status: int) -> None:
    r = api.post("/exports", json=body)
    assert r.status_code == status, r.text
    assert api.get("/exports/nope/file").status_code == 404
