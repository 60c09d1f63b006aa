"""A real GIS client: GDAL's OAPIF driver (Debian gdal-bin) against `twin serve` on loopback.

ogrinfo lists the collections and ogr2ogr reads every feature of a collection, following the
server's `next` links; the counts and ids are compared with SQL on the twin.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, unquote

import httpx
import pytest
import sqlalchemy as sa

from api.auth import create_api_key
from tests.api.conftest import LiveServer, collection_ids, password
from twin.db import open_twin
from twin.settings import TwinSettings


def gdal(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}  # loopback, directly
    env.update(GDAL_HTTP_TIMEOUT="60", CPL_VSIL_CURL_USE_CACHE="NO")
    return subprocess.run(list(args), capture_output=True, text=True, timeout=300, env=env)


def bearer(token: str) -> str:
    return f"Authorization: Bearer {token}"


def ogrinfo(live_server: LiveServer, header: str, *layers: str) -> subprocess.CompletedProcess:
    """``ogrinfo``'s summary of the server's collections (or of ``layers``), sending ``header``."""
    return gdal(
        "ogrinfo",
        "-ro",
        "-so",
        "--config",
        "GDAL_HTTP_HEADERS",
        header,
        f"OAPIF:{live_server.url}/",
        *layers,
    )


def ogr2ogr(
    live_server: LiveServer, header: str, out: Path, layer: str, *options: str
) -> subprocess.CompletedProcess:
    """Copy a collection of the server into the GeoJSON file ``out``, sending ``header``."""
    return gdal(
        "ogr2ogr",
        "-f",
        "GeoJSON",
        *options,
        str(out),
        "--config",
        "GDAL_HTTP_HEADERS",
        header,
        f"OAPIF:{live_server.url}/",
        layer,
    )


@pytest.fixture(scope="module")
def token(live_server: LiveServer) -> str:
    r = httpx.post(
        live_server.url + "/token", data={"username": "viewer", "password": password("viewer")}
    )
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def _sql(settings: TwinSettings, text: str) -> list:
    engine = open_twin(settings)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text(text)).all()
    finally:
        engine.dispose()


def _requests(live_server: LiveServer, since: int) -> list[dict]:
    """The access-log lines the server wrote after byte ``since`` of its log."""
    out = []
    with live_server.log.open(encoding="utf-8") as f:
        f.seek(since)
        for line in f:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("logger") == "pipetwin.access":
                out.append(doc)
    return out


def test_ogrinfo_lists_the_collections(
    live_server: LiveServer, token: str, api_twin: TwinSettings
) -> None:
    r = ogrinfo(live_server, bearer(token))
    assert r.returncode == 0, r.stderr
    listed = [
        line.split(":", 1)[1].split("(")[0].strip()
        for line in r.stdout.splitlines()
        if line.split(":", 1)[0].strip().isdigit()
    ]
    utilities = [u for (u,) in _sql(api_twin, "SELECT DISTINCT utility FROM current_segment")]
    assert set(listed) == collection_ids(utilities)
    assert "pipes (title: Pipes) (3D Line String)" in r.stdout


def test_ogrinfo_summary_counts(
    live_server: LiveServer, token: str, api_twin: TwinSettings
) -> None:
    r = ogrinfo(live_server, bearer(token), "valves")
    assert r.returncode == 0, r.stderr
    ((count,),) = _sql(api_twin, "SELECT count(*) FROM current_valve")
    assert f"Feature Count: {count}" in r.stdout
    assert "Geometry: 3D Point" in r.stdout
    assert "operable: Integer(Boolean)" in r.stdout  # the properties' types came through


@pytest.mark.parametrize("page_size", [None, "500"])
def test_ogr2ogr_reads_every_pipe(
    live_server: LiveServer,
    token: str,
    api_twin: TwinSettings,
    tmp_path: Path,
    page_size: str | None,
) -> None:
    out = tmp_path / "pipes.geojson"
    since = live_server.log.stat().st_size
    options = ["-oo", f"PAGE_SIZE={page_size}"] if page_size else []
    r = ogr2ogr(live_server, bearer(token), out, "pipes", *options)
    assert r.returncode == 0, r.stderr
    features = json.loads(out.read_text(encoding="utf-8"))["features"]
    rows = _sql(
        api_twin,
        "SELECT id, material, ST_X(ST_StartPoint(ST_Transform(geom, 4326))), "
        "ST_Y(ST_StartPoint(ST_Transform(geom, 4326))), from_z FROM current_segment",
    )
    assert len(features) == len(rows)
    got = {f["properties"]["id"]: f for f in features}
    assert set(got) == {row[0] for row in rows}
    for pid, material, lon, lat, z in rows[:50]:
        f = got[pid]
        assert f["properties"]["material"] == material
        assert f["geometry"]["coordinates"][0] == pytest.approx([lon, lat, z], abs=1e-7)
    # GDAL walked the pages through the server's next links, signed in as the viewer
    log = [d for d in _requests(live_server, since) if d["path"] == "/collections/pipes/items"]
    assert len(log) >= len(rows) // int(page_size or 10)
    assert sum("cursor=" in d["query"] for d in log) >= len(log) - 2
    assert all(d["status"] == 200 and d["user"] == "viewer" for d in log)


def test_api_key_reads_a_utility(
    live_server: LiveServer, api_twin: TwinSettings, tmp_path: Path
) -> None:
    engine = open_twin(api_twin)
    try:
        with engine.begin() as conn:
            key = create_api_key(conn, "viewer", "GDAL test")
    finally:
        engine.dispose()
    out = tmp_path / "gas.geojson"
    r = ogr2ogr(live_server, f"X-API-Key: {key}", out, "pipes-rq")
    assert r.returncode == 0, r.stderr
    ids = {f["properties"]["id"] for f in json.loads(out.read_text(encoding="utf-8"))["features"]}
    assert ids == {
        i for (i,) in _sql(api_twin, "SELECT id FROM current_segment WHERE utility = 'RQ'")
    }


def test_gdal_without_sign_in_fails(live_server: LiveServer, tmp_path: Path) -> None:
    since = live_server.log.stat().st_size
    r = gdal("ogrinfo", "-ro", "-so", f"OAPIF:{live_server.url}/")
    assert r.returncode != 0
    assert "401" in r.stderr
    r = ogr2ogr(live_server, bearer("not-a-token"), tmp_path / "x.geojson", "pipes")
    assert r.returncode != 0 and "401" in r.stderr
    assert not (tmp_path / "x.geojson").exists()
    log = _requests(live_server, since)
    assert log and all(d["status"] == 401 for d in log)


def test_gdal_pushes_filters_to_the_server(
    live_server: LiveServer, token: str, api_twin: TwinSettings, tmp_path: Path
) -> None:
    """GDAL reads the queryables from /api and sends -where (as CQL text) and -spat to the server."""
    ((x0, y0, x1, y1),) = _sql(
        api_twin,
        "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
        "(SELECT ST_Extent(ST_Transform(geom, 4326)) e FROM current_segment) s",
    )
    w, s = x0 + 0.2113 * (x1 - x0), y0 + 0.1877 * (y1 - y0)
    e, n = x0 + 0.7291 * (x1 - x0), y0 + 0.6653 * (y1 - y0)
    expected = {
        i
        for (i,) in _sql(
            api_twin,
            "SELECT id FROM current_segment WHERE utility = 'RQ' AND "
            f"ST_Intersects(ST_Transform(geom, 4326), ST_MakeEnvelope({w}, {s}, {e}, {n}, 4326))",
        )
    }
    assert expected
    out = tmp_path / "gas.geojson"
    since = live_server.log.stat().st_size
    r = ogr2ogr(
        live_server, bearer(token), out, "pipes", "-where", "utility = 'RQ'", "-spat",
        str(w), str(s), str(e), str(n),
    )
    assert r.returncode == 0, r.stderr
    assert {
        f["properties"]["id"] for f in json.loads(out.read_text(encoding="utf-8"))["features"]
    } == expected
    pages = [d for d in _requests(live_server, since) if d["path"] == "/collections/pipes/items"]
    assert len(pages) >= 2 and all(
        "filter=" in d["query"] and "RQ" in unquote(d["query"]) and "bbox=" in d["query"]
        for d in pages[1:]
    )
    assert all(d["status"] == 200 for d in _requests(live_server, since))


@pytest.mark.parametrize(
    "where",
    [
        # GDAL 3.6 types the fields from the first page (ducts, without diameters): where
        # clauses on fields typed there
        "utility = 'JS' AND built_year >= 2000",
        "(utility = 'RQ' OR utility = 'RL') AND built_year < 2005",
        "material LIKE 'P%' AND NOT (road = '东昌路')",
        "owner IS NULL OR built_year BETWEEN 1990 AND 2000",
    ],
)
def test_ogrinfo_where_is_pushed_down_as_cql(
    live_server: LiveServer, token: str, api_twin: TwinSettings, where: str
) -> None:
    """ogrinfo -where counts what SQL counts, and the server received the filter (CQL text)."""
    ((count,),) = _sql(api_twin, f"SELECT count(*) FROM current_segment WHERE {where}")
    assert count
    since = live_server.log.stat().st_size
    r = gdal("ogrinfo", "-ro", "-al", "-so", "--config", "GDAL_HTTP_HEADERS", bearer(token),
             "-oo", "PAGE_SIZE=1000", "-where", where, f"OAPIF:{live_server.url}/", "pipes")
    assert r.returncode == 0, r.stderr
    assert f"Feature Count: {count}" in r.stdout, r.stdout[-2000:]
    pages = [d for d in _requests(live_server, since) if d["path"] == "/collections/pipes/items"]
    sent = [parse_qs(d["query"]) for d in pages][1:]  # the first page tells GDAL the fields
    assert sent and all(q.get("filter") and q.get("filter-lang") == ["cql-text"] for q in sent)
    assert all(d["status"] == 200 for d in pages)
