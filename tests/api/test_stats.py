"""Statistics over HTTP on the demo district, checked against pandas over the raw rows."""

from __future__ import annotations

import csv
import io

import numpy as np
import pandas as pd
import pytest
import shapely
from pyproj import Transformer

from tests.api.conftest import Api
from twin.crs import twin_crs
from twin.db import make_engine


@pytest.fixture(scope="module")
def network(api: Api) -> dict[str, pd.DataFrame]:
    """The current network's rows, read plainly, for pandas to group."""
    engine = make_engine(api.settings)
    with engine.connect() as conn:
        seg = pd.read_sql(
            "SELECT id, utility, subtype, material, built_year, owner, road, status, length_m, "
            "ST_AsBinary(ST_Force2D(geom)) AS wkb FROM current_segment", conn)
        nodes = pd.read_sql("SELECT utility, ST_AsBinary(ST_Force2D(geom)) AS wkb FROM current_node", conn)
        valves = pd.read_sql("SELECT utility, ST_AsBinary(ST_Force2D(geom)) AS wkb FROM current_valve", conn)
    engine.dispose()
    for df in (seg, nodes, valves):
        df["geom"] = shapely.from_wkb(df.pop("wkb").map(bytes).to_numpy())
    seg["decade"] = seg["built_year"].map(lambda y: None if pd.isna(y) else f"{int(y) // 10 * 10}s")
    return {"segment": seg, "node": nodes, "valve": valves}


def expected(seg: pd.DataFrame, by: list[str]) -> dict[tuple, tuple[int, float]]:
    g = seg.groupby(by, dropna=False).agg(segments=("id", "size"), length_m=("length_m", "sum"))
    return {tuple(None if pd.isna(v) else v for v in (k if isinstance(k, tuple) else (k,))):
            (int(r.segments), float(r.length_m) / 1000) for k, r in g.iterrows()}


def as_table(rows: list[dict], by: list[str]) -> dict[tuple, tuple[int, float]]:
    return {tuple(r[d] for d in by): (r["segments"], r["length_km"]) for r in rows}


def assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for k, (n, km) in want.items():
        assert got[k][0] == n, k
        assert got[k][1] == pytest.approx(km, abs=0.0006), k


@pytest.mark.parametrize("by", [["material"], ["decade"], ["owner"], ["road"], ["status"], ["subtype"],
                                ["utility", "material"], ["decade", "utility", "status"]])
def test_grouped_like_pandas(api: Api, network: dict, by: list[str]) -> None:
    r = api.get("/stats", params={"by": ",".join(by)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["by"] == by and body["columns"] == [*by, "segments", "length_km"]
    assert_same(as_table(body["rows"], by), expected(network["segment"], by))
    assert body["total"]["segments"] == len(network["segment"])
    assert all("nodes" not in row for row in body["rows"])


def test_by_utility_counts_nodes_and_valves(api: Api, network: dict) -> None:
    body = api.get("/stats").json()  # by=utility is the default
    assert body["by"] == ["utility"]
    assert_same(as_table(body["rows"], ["utility"]), expected(network["segment"], ["utility"]))
    nodes = network["node"]["utility"].value_counts().to_dict()
    valves = network["valve"]["utility"].value_counts().to_dict()
    for row in body["rows"]:
        assert row["nodes"] == nodes.get(row["utility"], 0)
        assert row["valves"] == valves.get(row["utility"], 0)
    assert body["total"]["valves"] == len(network["valve"]) > 0
    assert body["total"]["length_km"] == pytest.approx(network["segment"]["length_m"].sum() / 1000, abs=0.01)


def test_repeated_and_comma_lists_agree(api: Api) -> None:
    a = api.get("/stats", params=[("by", "utility"), ("by", "material")]).json()
    b = api.get("/stats", params={"by": "utility, material"}).json()
    assert a["rows"] == b["rows"] and a["by"] == ["utility", "material"]


def test_decade_label(api: Api, network: dict) -> None:
    rows = api.get("/stats", params={"by": "decade"}).json()["rows"]
    years = network["segment"]["built_year"].dropna().astype(int)
    assert {r["decade"] for r in rows} - {None} == {f"{y // 10 * 10}s" for y in years}
    assert all(r["decade"] is None or (len(r["decade"]) == 5 and r["decade"].endswith("0s")) for r in rows)


def test_utility_filter_parent_and_subtype(api: Api, network: dict) -> None:
    seg = network["segment"]
    for code in ("JS", "PS"):
        rows = api.get("/stats", params={"by": "material", "utility": code}).json()["rows"]
        assert_same(as_table(rows, ["material"]), expected(seg[seg["utility"] == code], ["material"]))
    sub = seg["subtype"].dropna().iloc[0]
    rows = api.get("/stats", params={"by": "utility", "utility": sub.lower()}).json()["rows"]
    assert sum(r["segments"] for r in rows) == int((seg["subtype"] == sub).sum())
    both = api.get("/stats", params=[("utility", "JS,RQ")]).json()["rows"]
    assert {r["utility"] for r in both if r["segments"]} == {"JS", "RQ"}


def test_bbox_filter(api: Api, network: dict) -> None:
    seg = network["segment"]
    crs = twin_crs(api.settings.crs)
    to_lonlat = Transformer.from_crs(crs.crs, "OGC:CRS84", always_xy=True)
    x0, y0, x1, y1 = shapely.total_bounds(seg["geom"].to_numpy())
    # The south-west quarter of the district, in CRS84.
    lon0, lat0 = to_lonlat.transform(x0 - 1, y0 - 1)
    lon1, lat1 = to_lonlat.transform((x0 + x1) / 2, (y0 + y1) / 2)
    box = shapely.box(lon0, lat0, lon1, lat1).segmentize(max(lon1 - lon0, lat1 - lat0) / 64)
    to_twin = Transformer.from_crs("OGC:CRS84", crs.crs, always_xy=True)
    area = shapely.transform(box, lambda xy: np.column_stack(to_twin.transform(xy[:, 0], xy[:, 1])))
    inside = seg[shapely.intersects(seg["geom"].to_numpy(), area)]
    assert 0 < len(inside) < len(seg)
    body = api.get("/stats", params={"by": "utility", "bbox": f"{lon0},{lat0},{lon1},{lat1}"}).json()
    assert_same(as_table(body["rows"], ["utility"]), expected(inside, ["utility"]))
    node_inside = network["node"][shapely.intersects(network["node"]["geom"].to_numpy(), area)]
    assert body["total"]["nodes"] == len(node_inside)
    # Far away, and outside the CRS's area of use: nothing, not an error.
    for far in ("-10,-10,-9,-9", "-180,-90,180,90"):
        r = api.get("/stats", params={"bbox": far})
        assert r.status_code == 200
    assert api.get("/stats", params={"bbox": "-10,-10,-9,-9"}).json()["rows"] == []
    whole = api.get("/stats", params={"bbox": "-180,-90,180,90"}).json()["total"]
    assert whole["segments"] == len(seg)


def test_csv(api: Api, network: dict) -> None:
    r = api.get("/stats", params={"by": "utility,material", "f": "csv"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert 'filename="pipetwin-statistics-utility-material.csv"' in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert list(rows[0]) == ["utility", "material", "segments", "length_km"]
    as_json = api.get("/stats", params={"by": "utility,material"}).json()["rows"]
    assert len(rows) == len(as_json)
    for c, j in zip(rows, as_json, strict=True):
        assert c["utility"] == j["utility"] and c["material"] == (j["material"] or "")
        assert int(c["segments"]) == j["segments"] and float(c["length_km"]) == j["length_km"]
    by_accept = api.get("/stats", headers={"Accept": "text/csv"})
    assert by_accept.headers["content-type"].startswith("text/csv")
    assert by_accept.text.splitlines()[0] == "utility,segments,length_km,nodes,valves"
    links = api.get("/stats", params={"by": "road"}).json()["links"]
    assert any(link["type"] == "text/csv" and "f=csv" in link["href"] for link in links)


@pytest.mark.parametrize("params,status,needle", [
    ({"by": "colour"}, 400, "utility, subtype, material, decade, owner, road, status"),
    ({"by": "utility,diameter"}, 400, "cannot group by 'diameter'"),
    ({"by": "utility\x00"}, 400, "NUL characters"),
    ({"by": "utility,material,decade,owner,road"}, 400, "at most 4"),
    ({"utility": "J S"}, 400, "not a utility code"),
    ({"bbox": "1,2,3"}, 400, "minx,miny,maxx,maxy"),
    ({"bbox": "116,37,115,38"}, 400, "minx < maxx"),
    ({"bbox": "116,nan,117,38"}, 400, "CRS84"),
    ({"bbox": "a,b,c,d"}, 400, "CRS84"),
    ({"f": "xml"}, 422, "f"),
])
def test_bad_input(api: Api, params: dict, status: int, needle: str) -> None:
    r = api.get("/stats", params=params)
    assert r.status_code == status, r.text
    assert needle in r.json()["description"]


def test_sign_in_required(api: Api) -> None:
    assert api.client.get("/stats").status_code == 401
    for role in ("viewer", "editor", "approver", "admin"):
        assert api.get("/stats", role).status_code == 200
