"""Statistics of the current network: segment counts and lengths by utility, material,
decade built, owner, road or status, and cross tables of several, as JSON or CSV.

One ``GROUP BY`` over ``current_segment`` (retired pipes do not count); for a table by
utility alone, node and valve counts join in from their own grouped scans. Filters: utility
codes (a parent code such as ``PS`` or a subtype such as ``YS``) and a CRS84 bounding box,
transformed to the twin's CRS in PostGIS.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from api.auth import User, allow
from api.jobs import base_url
from api.reads import read_engine
from twin.cells import spreadsheet_safe
from twin.crs import twin_crs
from twin.errors import InputError
from twin.jsonable import plain
from twin.schema import dimensions

__all__ = ["router", "DIMENSIONS", "network_statistics"]

router = APIRouter(tags=["statistics"])

#: SQL for a dimension that groups a column into buckets rather than by its values.
_BUCKETS = {
    "decade": "CASE WHEN s.{c} IS NULL THEN NULL ELSE ((s.{c} / 10) * 10)::text || 's' END",
}
#: What a table may be grouped by (the catalogue's dimensions): name -> SQL over current_segment ``s``.
DIMENSIONS: dict[str, str] = {
    name: _BUCKETS.get(name, "s.{c}").format(c=c.name) for name, c in dimensions("segment").items()
}
MAX_DIMENSIONS = 4
_LENGTH_DECIMALS = 3


def _dimensions(by: list[str]) -> list[str]:
    names: list[str] = []
    for item in by or ["utility"]:
        for name in item.split(","):
            name = name.strip().lower()
            if not name:
                continue
            if name not in DIMENSIONS:
                raise InputError(f"cannot group by {name[:40]!r}; by is one or more of "
                                 f"{', '.join(DIMENSIONS)} (repeated or comma-separated)",
                                 zh=f"不能按 {name[:40]!r} 分组；by 取以下一项或多项：{', '.join(DIMENSIONS)}（可重复或用逗号分隔）")
            if name not in names:
                names.append(name)
    if not names:
        names = ["utility"]
    if len(names) > MAX_DIMENSIONS:
        raise InputError(f"at most {MAX_DIMENSIONS} dimensions in one table",
                         zh=f"一张统计表最多 {MAX_DIMENSIONS} 个维度")
    return names


def _utilities(values: list[str]) -> list[str]:
    codes = []
    for item in values:
        for code in item.split(","):
            code = code.strip().upper()
            if not code:
                continue
            if not code.isalnum() or len(code) > 16:
                raise InputError(f"utility {code[:20]!r} is not a utility code (JS, PS, YS, RQ, ...)",
                                 zh=f"{code[:20]!r} 不是管线类别代码（JS、PS、YS、RQ 等）")
            codes.append(code)
    return codes


def _bbox(text: str, srid: int) -> tuple[float, float, float, float] | None:
    """The bbox clipped to the twin CRS's area of use; None when it lies outside it."""
    parts = text.split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise InputError("bbox is minx,miny,maxx,maxy in longitude and latitude (CRS84)",
                         zh="bbox 为 minx,miny,maxx,maxy，经纬度（CRS84）")
    x0, y0, x1, y1 = values
    if not (-180 <= x0 < x1 <= 180 and -90 <= y0 < y1 <= 90):
        raise InputError("bbox needs -180 <= minx < maxx <= 180 and -90 <= miny < maxy <= 90 (CRS84)",
                         zh="bbox 须满足 -180 <= minx < maxx <= 180 且 -90 <= miny < maxy <= 90（CRS84）")
    area = twin_crs(f"EPSG:{srid}").crs.area_of_use
    if area is not None:
        # Outside its area of use a projection gives nonsense (or nothing); no pipe is there.
        x0, y0 = max(x0, area.west), max(y0, area.south)
        x1, y1 = min(x1, area.east), min(y1, area.north)
        if x0 >= x1 or y0 >= y1:
            return None
    return x0, y0, x1, y1


def _filters(alias: str, utilities: list[str], bbox: bool, empty: bool) -> str:
    """The WHERE condition on the feature table ``alias`` (segment s, node n, valve v)."""
    if empty:
        return "false"
    where = ["true"]
    if utilities and alias == "v":
        # Valves carry the parent code; a subtype filter reaches them through their pipe.
        where.append("(v.utility = ANY(:utilities) OR EXISTS (SELECT 1 FROM current_segment p "
                     "WHERE p.id = v.segment_id AND p.subtype = ANY(:utilities)))")
    elif utilities:
        where.append(f"({alias}.utility = ANY(:utilities) OR {alias}.subtype = ANY(:utilities))")
    if bbox:
        where.append(f"{alias}.geom && (SELECT g FROM env) AND ST_Intersects({alias}.geom, (SELECT g FROM env))")
    return " AND ".join(where)


def network_statistics(conn: sa.Connection, by: list[str], *, srid: int, utilities: Sequence[str] = (),
                       bbox: tuple[float, float, float, float] | None = None,
                       empty: bool = False) -> list[dict]:
    """Rows of segment counts and lengths (km, unrounded) of the current network grouped by ``by``;
    grouped by utility alone, node and valve counts too. ``empty`` answers no rows (a bbox
    outside the CRS's area of use)."""
    params: dict[str, object] = {"srid": srid, "utilities": list(utilities)}
    env = ""
    if bbox is not None:
        x0, y0, x1, y1 = bbox
        # Densified so that the envelope's edges follow the projection's curvature.
        env = ("env AS (SELECT ST_Transform(ST_Segmentize(ST_MakeEnvelope(:x0, :y0, :x1, :y1, 4326), "
               ":step), :srid) AS g), ")
        params.update(x0=x0, y0=y0, x1=x1, y1=y1, step=max(x1 - x0, y1 - y0) / 64)

    def where(alias: str) -> str:
        return _filters(alias, list(utilities), bbox is not None, empty)

    keys = ", ".join(f"{DIMENSIONS[d]} AS {d}" for d in by)
    group = ", ".join(str(i + 1) for i in range(len(by)))
    seg = (f"seg AS (SELECT {keys}, count(*) AS segments, "
           "coalesce(sum(s.length_m), 0) / 1000 AS length_km "
           f"FROM current_segment s WHERE {where('s')} GROUP BY {group})")
    if by == ["utility"]:
        sql = (
            f"WITH {env}{seg}, "
            f"nod AS (SELECT n.utility, count(*) AS nodes FROM current_node n WHERE {where('n')} GROUP BY 1), "
            f"val AS (SELECT v.utility, count(*) AS valves FROM current_valve v WHERE {where('v')} GROUP BY 1) "
            "SELECT utility, coalesce(seg.segments, 0) AS segments, "
            "coalesce(seg.length_km, 0) AS length_km, "
            "coalesce(nod.nodes, 0) AS nodes, coalesce(val.valves, 0) AS valves "
            "FROM seg FULL JOIN nod USING (utility) FULL JOIN val USING (utility) "
            "ORDER BY utility NULLS LAST"
        )
    else:
        order = ", ".join(f"{d} NULLS LAST" for d in by)
        sql = f"WITH {env}{seg} SELECT * FROM seg ORDER BY {order}"
    return [plain(dict(r)) for r in conn.execute(sa.text(sql), params).mappings()]


def _rounded(rows: list[dict]) -> list[dict]:
    return [{**r, "length_km": round(r["length_km"], _LENGTH_DECIMALS)} for r in rows]


def _csv(rows: list[dict], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\r\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows({k: spreadsheet_safe(v) for k, v in r.items()} for r in rows)
    return out.getvalue()


@router.get(
    "/stats",
    summary="Segment counts and lengths by utility, material, decade, owner, road or status",
    response_model=None,
    responses={200: {"description": "The table", "content": {
        "application/json": {}, "text/csv": {"schema": {"type": "string"}}}}},
)
def statistics(
    request: Request,
    by: list[str] = Query(["utility"], max_length=MAX_DIMENSIONS * 4,
                          description=f"Group by one or more of {', '.join(DIMENSIONS)}: repeated "
                          "(by=utility&by=material) or comma-separated (by=utility,material)."),
    utility: list[str] = Query([], max_length=20,
                               description="Only these utilities (parent or subtype codes)."),
    bbox: str | None = Query(None, max_length=200, description="minx,miny,maxx,maxy in CRS84."),
    f: str | None = Query(None, pattern="^(json|csv)$", description="json (default) or csv."),
    user: User = Depends(allow("read")),
) -> Response:
    if any(len(b) > 200 for b in by) or any(len(u) > 200 for u in utility):
        raise InputError("a by or utility value is at most 200 characters",
                         zh="by 或 utility 的值最多 200 个字符")
    dims = _dimensions(by)
    codes = _utilities(utility)
    settings = request.app.state.settings
    srid = twin_crs(settings.crs).srid
    box = _bbox(bbox, srid) if bbox is not None else None
    with read_engine(request).connect() as conn:
        rows = network_statistics(conn, dims, srid=srid, utilities=codes, bbox=box,
                                  empty=bbox is not None and box is None)
    columns = [*dims, "segments", "length_km"] + (["nodes", "valves"] if dims == ["utility"] else [])
    accept = request.headers.get("accept", "")
    if f == "csv" or (f is None and "text/csv" in accept and "application/json" not in accept):
        name = "pipetwin-statistics-" + "-".join(dims) + ".csv"
        return Response(_csv(_rounded(rows), columns), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
    total = {"segments": sum(r["segments"] for r in rows),
             "length_km": round(sum(r["length_km"] for r in rows), _LENGTH_DECIMALS)}
    rows = _rounded(rows)
    if dims == ["utility"]:
        total.update(nodes=sum(r["nodes"] for r in rows), valves=sum(r["valves"] for r in rows))
    query = str(request.url.query)
    base = f"{base_url(request)}/stats"
    return JSONResponse({
        "by": dims,
        "filters": {"utility": codes or None, "bbox": bbox},
        "columns": columns,
        "rows": rows,
        "total": total,
        "links": [
            {"href": f"{base}?{query}" if query else base, "rel": "self", "type": "application/json"},
            {"href": f"{base}?{query + '&' if query else ''}f=csv", "rel": "alternate", "type": "text/csv"},
        ],
    })
