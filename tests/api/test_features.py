"""OGC API - Features over the demo district: collections, paging, filters, CRSs, history.

Every expectation is computed independently: from SQL on the twin's tables, from the survey
tables the demo district was generated from, or with pyproj.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import quote, urlsplit

import pytest
import sqlalchemy as sa
from pyproj import Transformer

from analysis.proposal_workflow import submit_proposal
from ingest.sample import generate_district
from tests.api.conftest import Api, collection_ids, make_twin, open_api
from tests.conftest import drop_schema
from twin.db import open_twin
from twin.domain import UTILITIES

CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
EPSG4548 = "http://www.opengis.net/def/crs/EPSG/0/4548"
EPSG4326 = "http://www.opengis.net/def/crs/EPSG/0/4326"


def sql(api: Api, text: str, **params) -> list:
    with api.client.app.state.engine.connect() as conn:
        return conn.execute(sa.text(text), params).all()


def path_of(href: str) -> str:
    """The path and query of an absolute link (the in-process client's is http://testserver)."""
    parts = urlsplit(href)
    assert parts.scheme == "http" and parts.netloc == "testserver", href
    return parts.path + ("?" + parts.query if parts.query else "")


def walk(api: Api, path: str) -> Iterator[dict]:
    """Every page of an items request, following `next` links."""
    while path:
        r = api.get(path)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/geo+json"
        page = r.json()
        assert page["numberReturned"] == len(page["features"])
        yield page
        nxt = [link["href"] for link in page["links"] if link["rel"] == "next"]
        path = path_of(nxt[0]) if nxt else ""


def all_ids(api: Api, path: str) -> list:
    return [f["id"] for page in walk(api, path) for f in page["features"]]


# -- collections ----------------------------------------------------------------------------------
def test_collections(api: Api) -> None:
    r = api.get("/collections")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    doc = r.json()
    utilities = [u for (u,) in sql(api, "SELECT DISTINCT utility FROM current_segment ORDER BY 1")]
    assert len(utilities) >= 5
    ids = [c["id"] for c in doc["collections"]]
    assert set(ids) == collection_ids(utilities)
    assert len(ids) == len(set(ids))
    by_id = {c["id"]: c for c in doc["collections"]}
    for u in utilities:
        assert UTILITIES[u].name_en in by_id[f"pipes-{u.lower()}"]["title"]
    for c in doc["collections"]:
        assert c["itemType"] == "feature"
        assert c["crs"][0] == CRS84 and EPSG4548 in c["crs"] and c["storageCrs"] == EPSG4548
        rels = {link["rel"]: link for link in c["links"]}
        assert rels["items"]["type"] == "application/geo+json"
        assert rels["items"]["href"] == f"http://testserver/collections/{c['id']}/items"
        assert rels["self"]["type"] == "application/json"
        assert all(
            link["href"].startswith("http://testserver/") and link["type"] for link in c["links"]
        )
    # extents: every current feature lies inside its collection's CRS84 box
    for cid, table, where in [
        ("pipes", "current_segment", "true"),
        ("nodes", "current_node", "true"),
        ("valves", "current_valve", "true"),
        *((f"pipes-{u.lower()}", "current_segment", f"utility = '{u}'") for u in utilities),
    ]:
        ((x0, y0, x1, y1),) = sql(
            api,
            "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
            f"(SELECT ST_Extent(ST_Transform(geom, 4326)) e FROM {table} WHERE {where}) s",
        )
        w, s, e, n = by_id[cid]["extent"]["spatial"]["bbox"][0]
        assert w <= x0 and s <= y0 and e >= x1 and n >= y1, cid
        assert x0 - w < 1e-4 and y0 - s < 1e-4 and e - x1 < 1e-4 and n - y1 < 1e-4, cid  # tight
    # the proposals are empty in the demo: no extent, still a collection
    assert "extent" not in by_id["proposals"]


def test_one_collection_and_unknown(api: Api) -> None:
    doc = api.get("/collections/pipes-js").json()
    assert doc["id"] == "pipes-js" and "water supply" in doc["title"]
    absent = sorted(
        set(UTILITIES) - {u for (u,) in sql(api, "SELECT DISTINCT utility FROM current_segment")}
    )
    assert absent, "the demo district has every utility"
    for path in (
        "/collections/nope",
        f"/collections/pipes-{absent[0].lower()}",
        f"/collections/pipes-{absent[0].lower()}/items",
        "/collections/nope/items",
        "/collections/nope/queryables",
        "/collections/nope/items/x",
    ):
        r = api.get(path)
        assert r.status_code == 404, path
        assert r.json()["code"] == "NOT_FOUND"


# -- items: paging --------------------------------------------------------------------------------
def test_paging_walks_every_current_pipe_once(api: Api) -> None:
    expected = {i for (i,) in sql(api, "SELECT id FROM current_segment")}
    pages = list(walk(api, "/collections/pipes/items?limit=100"))
    ids = [f["id"] for p in pages for f in p["features"]]
    assert len(ids) == len(set(ids)) == len(expected)
    assert set(ids) == expected
    assert len(pages) == -(-len(expected) // 100)
    assert all(p["numberMatched"] == len(expected) for p in pages)
    assert all(len(p["features"]) == 100 for p in pages[:-1])
    assert "next" not in {link["rel"] for link in pages[-1]["links"]}
    # ids come in the database's order, and offset paging agrees with it
    ordered = [
        i for (i,) in sql(api, "SELECT id FROM current_segment ORDER BY id LIMIT 30 OFFSET 40")
    ]
    assert ids[40:70] == ordered
    page = api.get("/collections/pipes/items?limit=30&offset=40").json()
    assert [f["id"] for f in page["features"]] == ordered
    prev = [link for link in page["links"] if link["rel"] == "prev"]
    assert [f["id"] for f in api.get(path_of(prev[0]["href"])).json()["features"]] == ids[10:40]


def test_item_pages_format(api: Api) -> None:
    r = api.get("/collections/pipes/items")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/geo+json"
    assert r.headers["content-crs"] == f"<{CRS84}>"
    doc = r.json()
    assert (
        doc["type"] == "FeatureCollection"
        and doc["numberReturned"] == 10
        and doc["timeStamp"].endswith("Z")
    )
    rels = {link["rel"]: link for link in doc["links"]}
    assert {"self", "next", "collection"} <= set(rels)
    assert all(
        link["href"].startswith("http://testserver/") and link["type"] for link in doc["links"]
    )
    f = doc["features"][0]
    assert f["type"] == "Feature" and f["geometry"]["type"] == "LineString"
    assert {
        "utility",
        "diameter_mm",
        "material",
        "status",
        "from_node",
        "to_node",
        "from_depth_m",
        "to_depth_m",
        "from_z",
        "to_z",
        "length_m",
        "owner",
        "road",
        "built_year",
    } <= set(f["properties"])
    lon, lat, z = f["geometry"]["coordinates"][0]
    assert 115 < lon < 118 and 36 < lat < 37  # CRS84: longitude first
    assert z == pytest.approx(f["properties"]["from_z"], abs=1e-6)
    # the page size is clamped
    doc = api.get("/collections/nodes/items?limit=50000").json()
    assert "limit=10000" in next(link["href"] for link in doc["links"] if link["rel"] == "self")
    assert (
        doc["numberReturned"]
        == doc["numberMatched"]
        == sql(api, "SELECT count(*) FROM current_node")[0][0]
    )


def test_every_collection_pages(api: Api) -> None:
    for cid, table in [
        ("nodes", "current_node"),
        ("valves", "current_valve"),
        ("sources", "current_source"),
        ("customers", "current_customer"),
        ("pipes-ps", "current_segment WHERE utility = 'PS'"),
    ]:
        expected = {i for (i,) in sql(api, f"SELECT id FROM {table}")}
        ids = all_ids(api, f"/collections/{cid}/items?limit=97")
        assert len(ids) == len(set(ids)) and set(ids) == expected, cid
    assert all_ids(api, "/collections/proposals/items") == []


# -- items: filters -------------------------------------------------------------------------------
def _box(api: Api) -> tuple[float, float, float, float]:
    """The middle of the district in CRS84, edges at odd fractions so nothing grazes them."""
    ((x0, y0, x1, y1),) = sql(
        api,
        "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
        "(SELECT ST_Extent(ST_Transform(geom, 4326)) e FROM current_segment) s",
    )
    w, h = x1 - x0, y1 - y0
    return x0 + 0.3137 * w, y0 + 0.2719 * h, x0 + 0.6481 * w, y0 + 0.5923 * h


def pipes_in_box(
    api: Api, box: tuple[float, float, float, float], srid: int = 4326, where: str = "TRUE"
) -> set[str]:
    """PostGIS's answer: the current pipes meeting ``box`` (min x, min y, max x, max y in
    EPSG:``srid``, its x the easting) that satisfy ``where``."""
    w, s, e, n = box
    return {
        i
        for (i,) in sql(
            api,
            f"SELECT id FROM current_segment WHERE ({where}) AND ST_Intersects("
            f"ST_Transform(geom, {srid}), ST_MakeEnvelope(:w, :s, :e, :n, {srid}))",
            w=w,
            s=s,
            e=e,
            n=n,
        )
    }


def test_bbox_equals_postgis(api: Api) -> None:
    w, s, e, n = _box(api)
    expected = pipes_in_box(api, (w, s, e, n))
    total = sql(api, "SELECT count(*) FROM current_segment")[0][0]
    assert 20 < len(expected) < total / 2
    pages = list(walk(api, f"/collections/pipes/items?bbox={w},{s},{e},{n}&limit=50"))
    ids = [f["id"] for p in pages for f in p["features"]]
    assert len(ids) == len(set(ids)) and set(ids) == expected
    assert pages[0]["numberMatched"] == len(expected)
    # the same box as EPSG:4326, latitude first
    ids = all_ids(
        api, f"/collections/pipes/items?bbox={s},{w},{n},{e}&bbox-crs={EPSG4326}&limit=1000"
    )
    assert set(ids) == expected
    # a box in the twin's CRS: northing, easting (the survey's X, Y)
    ((e0, n0, e1, n1),) = sql(
        api,
        "SELECT ST_XMin(b) + 101.3, ST_YMin(b) + 87.1, ST_XMin(b) + 402.9, "
        "ST_YMin(b) + 333.3 FROM (SELECT ST_Extent(geom) b FROM current_segment) s",
    )
    expected = pipes_in_box(api, (e0, n0, e1, n1), 4548)
    assert expected
    ids = all_ids(
        api, f"/collections/pipes/items?bbox={n0},{e0},{n1},{e1}&bbox-crs={EPSG4548}&limit=1000"
    )
    assert set(ids) == expected
    # a box far away, and one larger than the twin CRS's area of use
    assert api.get("/collections/pipes/items?bbox=10,10,11,11").json()["numberMatched"] == 0
    assert api.get("/collections/pipes/items?bbox=-180,-90,180,90").json()["numberMatched"] == total


def test_bbox_with_heights(api: Api) -> None:
    w, s, e, n = _box(api)
    heights = "ST_ZMax(geom) >= 33 AND ST_ZMin(geom) <= 33.5"
    expected = pipes_in_box(api, (w, s, e, n), where=heights)
    assert expected
    assert (
        set(all_ids(api, f"/collections/pipes/items?bbox={w},{s},33,{e},{n},33.5&limit=1000"))
        == expected
    )


def test_property_filters(api: Api) -> None:
    ((material,),) = sql(
        api,
        "SELECT material FROM current_segment WHERE utility = 'JS' "
        "GROUP BY material ORDER BY count(*) DESC LIMIT 1",
    )
    expected = {
        i
        for (i,) in sql(
            api, "SELECT id FROM current_segment WHERE utility = 'JS' AND material = :m", m=material
        )
    }
    assert expected
    assert (
        set(all_ids(api, f"/collections/pipes/items?utility=JS&material={material}&limit=1000"))
        == expected
    )
    assert (
        set(all_ids(api, f"/collections/pipes-js/items?material={material}&limit=1000")) == expected
    )
    # a repeated parameter: any of its values
    expected = {
        i for (i,) in sql(api, "SELECT id FROM current_segment WHERE utility IN ('RQ', 'RL')")
    }
    assert (
        set(all_ids(api, "/collections/pipes/items?utility=RQ&utility=RL&limit=1000")) == expected
    )
    # integers and booleans
    ((year,),) = sql(
        api,
        "SELECT built_year FROM current_segment WHERE built_year IS NOT NULL "
        "GROUP BY 1 ORDER BY count(*) DESC LIMIT 1",
    )
    expected = {
        i for (i,) in sql(api, "SELECT id FROM current_segment WHERE built_year = :y", y=year)
    }
    page = api.get(f"/collections/pipes/items?built_year={year}&limit=1000").json()
    assert (
        page["numberMatched"] == len(expected) and {f["id"] for f in page["features"]} == expected
    )
    expected = {i for (i,) in sql(api, "SELECT id FROM current_valve WHERE NOT operable")}
    assert expected
    assert set(all_ids(api, "/collections/valves/items?operable=false&limit=1000")) == expected
    # filters and a box together
    w, s, e, n = _box(api)
    expected = pipes_in_box(api, (w, s, e, n), where="utility = 'PS'")
    assert (
        set(all_ids(api, f"/collections/pipes/items?utility=PS&bbox={w},{s},{e},{n}")) == expected
    )
    # a value that matches nothing
    assert api.get("/collections/pipes/items?owner=nobody-at-all").json()["numberMatched"] == 0


@pytest.mark.parametrize(
    "query",
    [
        "bbox=1,2,3",
        "bbox=1,2,0,3",
        "bbox=a,b,c,d",
        "bbox=nan,1,2,3",
        "bbox=1,95,2,96",
        "bbox=-200,1,2,3",
        "bbox=116,36,117,37&bbox-crs=EPSG:3857",
        "crs=EPSG:3857",
        "crs=nonsense",
        "datetime=yesterday",
        "datetime=2020-01-01/2021-01-01",
        "material=PE&colour=red",
        "built_year=abc",
        "diameter_mm=inf",
        "cursor=!!!",
        "cursor=",
    ],
)
def test_bad_items_requests_are_400(api: Api, query: str) -> None:
    r = api.get(f"/collections/pipes/items?{query}")
    assert r.status_code == 400, (query, r.text)
    assert r.json()["code"] == "INPUT" and r.json()["description"]


@pytest.mark.parametrize(
    "path",
    [
        "/collections/nodes/items?material=PE",  # not a queryable of nodes
        "/collections/pipes-js/items?utility=PS",  # fixed by the collection
        "/collections/valves/items?operable=maybe",
        "/collections/proposals/items?datetime=2024-01-01T00:00:00Z",  # proposals are not versioned
        "/collections/proposals/items?cursor=YWJj",  # "abc": proposal ids are numbers
    ],
)
def test_bad_requests_per_collection_are_400(api: Api, path: str) -> None:
    r = api.get(path)
    assert r.status_code == 400, (path, r.text)


@pytest.mark.parametrize("query", ["limit=0", "limit=-1", "offset=-1", "f=html", "limit=x"])
def test_out_of_bounds_parameters_are_422(api: Api, query: str) -> None:
    assert api.get(f"/collections/pipes/items?{query}").status_code == 422


# -- one feature ----------------------------------------------------------------------------------
def test_single_item(api: Api) -> None:
    row = sql(
        api,
        "SELECT id, utility, material, diameter_mm, from_z, to_z, from_depth_m, length_m, "
        "ST_X(ST_StartPoint(g)) lon, ST_Y(ST_StartPoint(g)) lat FROM (SELECT *, "
        "ST_Transform(geom, 4326) g FROM current_segment WHERE utility = 'JS') s "
        "ORDER BY length_m DESC LIMIT 1",
    )[0]
    r = api.get(f"/collections/pipes/items/{row.id}")
    assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
    f = r.json()
    assert f["type"] == "Feature" and f["id"] == row.id
    p = f["properties"]
    assert (p["utility"], p["material"], p["diameter_mm"]) == (
        row.utility,
        row.material,
        row.diameter_mm,
    )
    assert p["from_z"] == pytest.approx(row.from_z) and p["length_m"] == pytest.approx(row.length_m)
    start, end = f["geometry"]["coordinates"][0], f["geometry"]["coordinates"][-1]
    assert start[:2] == pytest.approx([row.lon, row.lat], abs=1e-8)
    assert (start[2], end[2]) == pytest.approx((row.from_z, row.to_z), abs=1e-6)
    rels = {link["rel"]: link["href"] for link in f["links"]}
    assert rels["collection"] == "http://testserver/collections/pipes"
    assert rels["self"] == f"http://testserver/collections/pipes/items/{row.id}"
    # through its utility's collection; not through another's
    assert api.get(f"/collections/pipes-js/items/{row.id}").json()["id"] == row.id
    assert api.get(f"/collections/pipes-ps/items/{row.id}").status_code == 404
    assert api.get("/collections/pipes/items/no-such-pipe").status_code == 404
    assert api.get("/collections/proposals/items/12345").status_code == 404
    assert api.get("/collections/proposals/items/abc").status_code == 404


# -- queryables and schema ------------------------------------------------------------------------
def test_queryables_and_schema(api: Api) -> None:
    r = api.get("/collections/pipes/queryables")
    assert r.status_code == 200 and r.headers["content-type"] == "application/schema+json"
    doc = r.json()
    assert (
        doc["type"] == "object" and doc["$id"] == "http://testserver/collections/pipes/queryables"
    )
    props = doc["properties"]
    assert props["utility"]["type"] == "string" and set(props["utility"]["enum"]) == set(UTILITIES)
    assert props["built_year"]["type"] == "integer" and props["diameter_mm"]["type"] == "number"
    assert {"material", "status", "owner", "road"} <= set(props)
    assert "utility" not in api.get("/collections/pipes-js/queryables").json()["properties"]
    assert (
        api.get("/collections/valves/queryables").json()["properties"]["operable"]["type"]
        == "boolean"
    )
    # every queryable filters without a 400
    for name, spec in props.items():
        if name == "geometry":
            continue
        value = {
            "string": (spec.get("enum") or ["x"])[0],
            "integer": "1",
            "number": "1.5",
            "boolean": "true",
        }[spec["type"]]
        assert api.get(f"/collections/pipes/items?{name}={value}").status_code == 200, name
    # the schema names every property a feature carries, with its type
    schema = api.get("/collections/pipes/schema").json()["properties"]
    feature = api.get("/collections/pipes/items?limit=1").json()["features"][0]
    kinds = {"string": str, "integer": int, "number": (int, float), "boolean": bool}
    for name, value in feature["properties"].items():
        assert name in schema, name
        assert value is None or isinstance(value, kinds[schema[name]["type"]]), name


# -- coordinate reference systems -----------------------------------------------------------------
@pytest.fixture(scope="module")
def survey_points(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, tuple[float, float, float]]:
    """The demo district's point table (as api_twin generated it): id -> X, Y, ground."""
    out = tmp_path_factory.mktemp("survey")
    generate_district(out, scale=1, seed=0)
    with (out / "points.csv").open(encoding="utf-8-sig") as f:
        return {
            r["物探点号"]: (float(r["X"]), float(r["Y"]), float(r["地面高程"]))
            for r in csv.DictReader(f)
        }


def test_crs_follows_the_crs_axis_order(api: Api, survey_points: dict) -> None:
    to_lonlat = Transformer.from_crs("EPSG:4548", "OGC:CRS84", always_xy=True)
    r = api.get(f"/collections/nodes/items?crs={EPSG4548}&limit=10000")
    assert r.headers["content-crs"] == f"<{EPSG4548}>"
    gk = {f["id"]: f["geometry"]["coordinates"] for f in r.json()["features"]}
    lonlat = {
        f["id"]: f["geometry"]["coordinates"]
        for f in api.get("/collections/nodes/items?limit=10000").json()["features"]
    }
    latlon = {
        f["id"]: f["geometry"]["coordinates"]
        for f in api.get("/collections/nodes/items?crs=EPSG:4326&limit=10000").json()["features"]
    }
    common = sorted(set(gk) & set(survey_points))
    assert len(common) > 100
    for pid in common:
        x, y, ground = survey_points[pid]  # X is northing, Y easting
        assert gk[pid] == pytest.approx([x, y, ground], abs=1e-3)  # EPSG:4548: northing, easting
        lon, lat = to_lonlat.transform(y, x)
        assert lonlat[pid] == pytest.approx([lon, lat, ground], abs=1e-7)
        assert latlon[pid] == pytest.approx([lat, lon, ground], abs=1e-7)
    # a single item in the twin's CRS
    pid = common[0]
    one = api.get(f"/collections/nodes/items/{pid}?crs=urn:ogc:def:crs:EPSG::4548")
    assert one.headers["content-crs"] == f"<{EPSG4548}>"
    assert one.json()["geometry"]["coordinates"][:2] == pytest.approx(
        survey_points[pid][:2], abs=1e-3
    )


# -- sign-in --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path",
    [
        "/collections",
        "/collections/pipes",
        "/collections/pipes/items",
        "/collections/pipes/queryables",
        "/collections/pipes/schema",
        "/collections/nodes/items/JS0001",
        "/collections/pipes-js/items",
    ],
)
def test_no_token_401(api: Api, path: str) -> None:
    r = api.client.get(path)
    assert r.status_code == 401
    assert "features" not in r.text and r.json()["code"] == "UNAUTHORIZED"
    assert api.client.get(path, headers={"Authorization": "Bearer nonsense"}).status_code == 401


# -- history and proposals on a twin of their own -----------------------------------------
@pytest.fixture(scope="module")
def hist_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    settings = make_twin(
        "test_api_features_hist", tmp_path_factory.mktemp("features_hist"), data="small"
    )
    yield from open_api(settings)
    drop_schema(settings)


def test_datetime_reads_the_network_as_it_stood(hist_api: Api) -> None:
    api = hist_api
    ids = {i for (i,) in sql(api, "SELECT id FROM current_segment")}
    (imported,) = sql(api, "SELECT min(valid_from) FROM segment")[0]
    before = (imported - timedelta(seconds=1)).isoformat()
    r = api.get("/collections/pipes/items", params={"datetime": before, "limit": 1000})
    assert r.status_code == 200 and r.json()["numberMatched"] == 0 and r.json()["features"] == []
    assert (
        api.get("/collections/nodes/items", params={"datetime": "2000-01-01"}).json()[
            "numberMatched"
        ]
        == 0
    )
    assert set(all_ids(api, "/collections/pipes/items?limit=1000")) == ids
    assert api.get("/collections/pipes/items?limit=1").json()["numberMatched"] == len(ids)

    # a new version of one pipe, and another pipe retired
    changed, retired = sorted(ids)[:2]
    between = sql(api, "SELECT clock_timestamp()")[0][0]  # before the change's transaction begins
    with api.client.app.state.engine.begin() as conn:
        old = conn.execute(
            sa.text("SELECT material FROM segment WHERE id = :i"), {"i": changed}
        ).scalar()
        conn.execute(
            sa.text("UPDATE segment SET material = 'PE-test' WHERE id = :i"), {"i": changed}
        )
        conn.execute(
            sa.text("UPDATE segment SET retired_at = now(), retired_reason = 'test' WHERE id = :i"),
            {"i": retired},
        )
    now = quote(sql(api, "SELECT clock_timestamp()")[0][0].isoformat())
    when = quote(between.isoformat())

    current = {
        f["id"]: f
        for page in walk(api, "/collections/pipes/items?limit=1000")
        for f in page["features"]
    }
    assert set(current) == ids - {retired}
    assert api.get("/collections/pipes/items?limit=1").json()["numberMatched"] == len(ids) - 1
    assert current[changed]["properties"]["material"] == "PE-test"
    assert current[changed]["properties"]["version"] == 2
    assert api.get(f"/collections/pipes/items/{retired}").status_code == 404
    assert (
        api.get("/collections/pipes/items", params={"material": "PE-test"}).json()["numberMatched"]
        == 1
    )

    past = {
        f["id"]: f
        for page in walk(api, f"/collections/pipes/items?datetime={when}&limit=1000")
        for f in page["features"]
    }
    assert set(past) == ids
    assert (
        past[changed]["properties"]["material"] == old
        and past[changed]["properties"]["version"] == 1
    )
    one = api.get(f"/collections/pipes/items/{retired}", params={"datetime": between.isoformat()})
    assert one.status_code == 200 and one.json()["id"] == retired
    old_one = api.get(
        f"/collections/pipes/items/{changed}", params={"datetime": between.isoformat()}
    ).json()
    assert old_one["properties"]["material"] == old
    assert set(all_ids(api, f"/collections/pipes/items?datetime={now}&limit=1000")) == ids - {
        retired
    }


def test_proposals_collection(hist_api: Api) -> None:
    api = hist_api
    settings = api.settings
    engine = open_twin(settings)
    try:
        gk = submit_proposal(
            engine,
            {
                "type": "Feature",
                "properties": {"utility": "JS", "size": "DN200", "depth_m": 1.2},
                "geometry": {
                    "type": "LineString",
                    "coordinates": [[410010.0, 4035010.0], [410060.0, 4035010.0]],
                },
            },
            settings,
            name="in the twin CRS",
            user="tests",
        )
        to_lonlat = Transformer.from_crs("EPSG:4548", "OGC:CRS84", always_xy=True)
        lon0, lat0 = to_lonlat.transform(410010.0, 4035020.0)
        lon1, lat1 = to_lonlat.transform(410060.0, 4035020.0)
        ll = submit_proposal(
            engine,
            {
                "type": "Feature",
                "properties": {"utility": "RQ", "size": "DN100", "depth_m": 1.0},
                "geometry": {"type": "LineString", "coordinates": [[lon0, lat0], [lon1, lat1]]},
            },
            settings,
            name="in lon/lat",
            user="tests",
        )
    finally:
        engine.dispose()
    page = api.get("/collections/proposals/items").json()
    by_id = {f["id"]: f for f in page["features"]}
    assert set(by_id) == {gk.proposal_id, ll.proposal_id} and page["numberMatched"] == 2
    assert by_id[gk.proposal_id]["properties"]["name"] == "in the twin CRS"
    assert by_id[gk.proposal_id]["properties"]["status"] == "new"
    assert by_id[gk.proposal_id]["geometry"]["coordinates"][0] == pytest.approx(
        to_lonlat.transform(410010.0, 4035010.0), abs=1e-7
    )
    twin = api.get(f"/collections/proposals/items/{ll.proposal_id}?crs={EPSG4548}").json()
    start, end = twin["geometry"]["coordinates"]
    assert start == pytest.approx([4035020.0, 410010.0], abs=1e-3)  # northing, easting
    assert end == pytest.approx([4035020.0, 410060.0], abs=1e-3)
    assert [
        f["id"] for f in api.get("/collections/proposals/items?utility=RQ").json()["features"]
    ] == [ll.proposal_id]
    doc = api.get("/collections/proposals").json()
    w, s, e, n = doc["extent"]["spatial"]["bbox"][0]
    assert w <= lon0 <= e and s <= lat0 <= n


# -- filter (CQL2), sortby, properties (Part 3 and the sorting / property-selection drafts) --------
#: CQL2 text -> the same condition in SQL over current_segment, computed by PostgreSQL
CQL2_CASES = [
    ("utility = 'JS'", "utility = 'JS'"),
    ("diameter_mm > 200 AND utility <> 'PS'", "diameter_mm > 200 AND utility <> 'PS'"),
    ("utility = 'RQ' OR (utility = 'JS' AND NOT built_year >= 2000)",
     "utility = 'RQ' OR (utility = 'JS' AND NOT built_year >= 2000)"),
    ("material LIKE '球%'", "material LIKE '球%'"),
    ("road IN ('东昌路', '柳园路') AND diameter_mm <= 300",
     "road IN ('东昌路', '柳园路') AND diameter_mm <= 300"),
    ("built_year BETWEEN 1995 AND 2005", "built_year BETWEEN 1995 AND 2005"),
    ("diameter_mm IS NULL", "diameter_mm IS NULL"),
    ("NOT (owner IS NULL) AND status = 'active'", "owner IS NOT NULL AND status = 'active'"),
]


def filtered(api: Api, query: str) -> set[str]:
    return set(all_ids(api, f"/collections/pipes/items?limit=1000&{query}"))


@pytest.mark.parametrize(("cql", "where"), CQL2_CASES)
def test_cql2_text_filter_equals_sql(api: Api, cql: str, where: str) -> None:
    expected = {i for (i,) in sql(api, f"SELECT id FROM current_segment WHERE {where}")}
    assert expected, where  # every case selects something in the demo district
    got = filtered(api, f"filter={quote(cql)}")
    assert got == expected, cql


def test_cql2_json_and_spatial_filters(api: Api) -> None:
    doc = {"op": "and", "args": [
        {"op": "=", "args": [{"property": "utility"}, "JS"]},
        {"op": "in", "args": [{"property": "material"}, ["PE", "球墨铸铁"]]},
        {"op": "not", "args": [{"op": "isNull", "args": [{"property": "diameter_mm"}]}]},
    ]}
    expected = {i for (i,) in sql(
        api, "SELECT id FROM current_segment WHERE utility = 'JS' AND material IN ('PE', '球墨铸铁') "
        "AND diameter_mm IS NOT NULL")}
    assert expected
    got = filtered(api, f"filter-lang=cql2-json&filter={quote(json.dumps(doc, ensure_ascii=False))}")
    assert got == expected
    # S_INTERSECTS with a BBOX (text, JSON) and the same box as a polygon: PostGIS's answer
    w, s, e, n = _box(api)
    expected = pipes_in_box(api, (w, s, e, n), where="utility = 'PS'")
    assert expected
    text = f"utility = 'PS' AND S_INTERSECTS(geometry, BBOX({w}, {s}, {e}, {n}))"
    assert filtered(api, f"filter={quote(text)}") == expected
    polygon = f"POLYGON(({w} {s}, {e} {s}, {e} {n}, {w} {n}, {w} {s}))"
    text = f"S_INTERSECTS(geometry, {polygon}) AND utility = 'PS'"
    assert filtered(api, f"filter={quote(text)}") == expected
    doc = {"op": "and", "args": [{"op": "=", "args": [{"property": "utility"}, "PS"]}, {
        "op": "s_intersects", "args": [{"property": "geometry"}, {"bbox": [w, s, e, n]}]}]}
    assert filtered(api, f"filter-lang=cql2-json&filter={quote(json.dumps(doc))}") == expected
    # the same box in the twin's CRS (northing first) through filter-crs
    ((x0, y0, x1, y1),) = sql(api, "SELECT ST_XMin(b), ST_YMin(b), ST_XMax(b), ST_YMax(b) FROM "
                              "(SELECT ST_Transform(ST_MakeEnvelope(:w, :s, :e, :n, 4326), 4548) b) t",
                              w=w, s=s, e=e, n=n)
    box = (x0, y0, x1, y1)
    expected = pipes_in_box(api, box, srid=4548, where="utility = 'PS'")
    text = f"utility = 'PS' AND S_INTERSECTS(geometry, BBOX({y0}, {x0}, {y1}, {x1}))"
    assert filtered(api, f"filter-crs=EPSG:4548&filter={quote(text)}") == expected
    # the whole world: cut to the twin CRS's area of use, not a projection error
    world = "S_INTERSECTS(geometry, BBOX(-180, -90, 180, 90))"
    assert len(filtered(api, f"filter={quote(world)}")) == len(sql(api, "SELECT id FROM current_segment"))
    far = "S_INTERSECTS(geometry, POLYGON((0 0, 1 0, 1 1, 0 0)))"
    assert filtered(api, f"filter={quote(far)}") == set()


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("filter=" + quote("utility = = 'JS'"), "column 11"),
        ("filter=" + quote("utility = 'JS' AND"), "filter"),
        ("filter=" + quote("colour = 'red'"), "unknown property 'colour'"),
        ("filter=" + quote("diameter_mm = 'big'"), "diameter_mm takes a number"),
        ("filter=" + quote("material LIKE 3"), "material takes a string"),
        ("filter=" + quote("S_INTERSECTS(geometry, BBOX(1, 95, 2, 96))"), "latitudes"),
        ("filter=" + quote("S_INTERSECTS(material, BBOX(1, 2, 3, 4))"), "not the geometry"),
        ("filter-lang=cql2-json&filter=" + quote('{"op": "=", "args": ['), "not JSON at character"),
        ("filter-lang=cql2-json&filter=" + quote('{"op": "nope"}'), "CQL2 JSON"),
        ("filter-lang=cql9&filter=x", ""),
        ("sortby=colour", "sortby"),
        ("sortby=remarks", "sortby"),  # not a queryable
        ("properties=colour", "properties"),
        ("sortby=diameter_mm&cursor=YWJj", "cursor"),
    ],
)
def test_bad_filters_are_400_and_say_where(api: Api, query: str, says: str) -> None:
    r = api.get(f"/collections/pipes/items?{query}")
    assert r.status_code in (400, 422), (query, r.text)
    if r.status_code == 400:
        assert says in r.json()["description"], r.json()["description"]


def test_sortby_and_properties(api: Api) -> None:
    expected = [i for (i,) in sql(
        api, "SELECT id FROM current_segment WHERE utility = 'JS' "
        "ORDER BY diameter_mm DESC NULLS LAST, built_year ASC NULLS FIRST, id")]
    got = all_ids(api, "/collections/pipes-js/items?limit=97&sortby=-diameter_mm,%2Bbuilt_year")
    assert got == expected
    page = api.get("/collections/pipes/items?limit=5&properties=utility,diameter_mm").json()
    assert page["features"] and all(
        set(f["properties"]) == {"utility", "diameter_mm"} for f in page["features"])
    page = api.get("/collections/nodes/items?limit=3&properties=").json()
    assert all(f["properties"] == {} and f["geometry"] for f in page["features"])
    classes = api.get("/conformance").json()["conformsTo"]
    for c in ("ogcapi-features-3/1.0/conf/filter", "ogcapi-features-3/1.0/conf/features-filter",
              "cql2/1.0/conf/cql2-text", "cql2/1.0/conf/cql2-json", "cql2/1.0/conf/basic-cql2",
              "cql2/1.0/conf/basic-spatial-functions", "conf/sorting", "conf/property-selection"):
        assert any(k.endswith(c) for k in classes), c
