"""Dig-site hazards (抢险分析): what a repair crew must not hit, and what else to watch for.

For a plan point and radius: every other pipe and cable within it (utility, size, depth of
its top at the point nearest the site, plan distance), the nearest valves of the burst
utility, pipes past their expected service life by material (``analysis/data/service_life.csv``,
each row with its source and a ``verified`` flag; ``TWIN_SERVICE_LIFE`` replaces it) and pipes
whose cover is below the minimum (:func:`analysis.cover.cover_depths`).
Candidates come from PostGIS through the GiST indexes, so the site's size, not the network's,
sets the cost.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
import sqlalchemy as sa

from analysis.cover import CoverViolation, cover_depths, load_cover_rules
from analysis.ground import load_ground
from analysis.network import Network, load_network
from analysis.rule_tables import RuleSource, open_source, read_error, rule_source
from twin.db import twin_srid
from twin.domain import PRESSURISED_UTILITIES, UTILITIES
from twin.errors import InputError
from twin.jsonable import plain
from twin.settings import TwinSettings

__all__ = ["Hazards", "hazards", "load_service_life", "service_life_years", "DEFAULT_SERVICE_LIFE"]

DEFAULT_SERVICE_LIFE = Path(__file__).with_name("data") / "service_life.csv"


@dataclass
class Hazards:
    """What lies within a dig site."""

    x: float
    y: float
    radius_m: float
    utility: str | None
    pipes: list[dict]
    valves: list[dict]
    old_pipes: list[str]
    shallow_pipes: list[str]
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        """Plain JSON-ready dict."""
        return plain(asdict(self))


def load_service_life(path: Path | str | RuleSource | None = None, settings: TwinSettings | None = None, *,
                      db: sa.Engine | sa.Connection | None = None) -> pd.DataFrame:
    """The service-life table: material, utility (empty: any), life_years, source, verified.

    ``path``, else the table stored in the twin ``db``, else ``settings.service_life``, else the
    shipped one (see :mod:`analysis.rule_tables`).
    """
    path = rule_source("service_life", path or None, getattr(settings, "service_life", None),
                       DEFAULT_SERVICE_LIFE, db)
    try:
        table = pd.read_csv(open_source(path), comment="#", dtype={"material": str, "utility": str, "source": str})
    except (OSError, ValueError) as exc:  # pandas' ParserError and EmptyDataError are ValueErrors
        raise InputError(f"cannot read the service-life table {path}: {read_error(exc)}",
                         zh=f"无法读取使用年限表 {path}：{read_error(exc)}") from None
    missing = {"material", "utility", "life_years", "source", "verified"} - set(table.columns)
    if missing:
        raise InputError(f"the service-life table {path} lacks column(s) {', '.join(sorted(missing))}",
                         zh=f"使用年限表 {path} 缺少列：{'、'.join(sorted(missing))}")
    years = pd.to_numeric(table["life_years"], errors="coerce")
    if years.isna().any():
        row = int(np.flatnonzero(years.isna())[0])
        raise InputError(f"the service-life table {path}: row {row + 1} ({table['material'].iat[row]}): "
                         f"life_years {table['life_years'].iat[row]!r} is not a number of years",
                         zh=f"使用年限表 {path}：第 {row + 1} 行（{table['material'].iat[row]}）："
                            f"life_years 使用年限 {table['life_years'].iat[row]!r} 不是年数")
    table["life_years"] = years
    table["utility"] = table["utility"].fillna("")
    return table


def service_life_years(material: pd.Series, utility: pd.Series, table: pd.DataFrame) -> np.ndarray:
    """Expected life (years) per pipe: a row for its utility first, else the any-utility row."""
    own = table[table["utility"] != ""].set_index(["material", "utility"])["life_years"]
    anyu = table[table["utility"] == ""].drop_duplicates("material").set_index("material")["life_years"]
    keys = pd.MultiIndex.from_arrays([material.fillna(""), utility.fillna("")])
    life = own.reindex(keys).to_numpy(float)
    fallback = anyu.reindex(material.fillna("")).to_numpy(float)
    return np.where(np.isfinite(life), life, fallback)


def _size(seg: pd.DataFrame) -> np.ndarray:
    circ = seg["shape"].to_numpy() == "circular"
    d = seg["diameter_mm"].to_numpy(float)
    w, h = seg["width_mm"].to_numpy(float), seg["height_mm"].to_numpy(float)
    return np.where(circ, [f"DN{v:g}" for v in np.nan_to_num(d)], [f"{a:g}×{b:g}" for a, b in
                                                                   zip(np.nan_to_num(w), np.nan_to_num(h),
                                                                       strict=True)])


def _lines(net: Network) -> np.ndarray:
    n = np.diff(net.offsets)
    if not len(n):
        return np.empty(0, dtype=object)
    return shapely.linestrings(net.vertices, indices=np.repeat(np.arange(len(n)), n))


def hazards(
    engine: sa.Engine,
    x: float,
    y: float,
    radius_m: float,
    *,
    utility: str | None = None,
    settings: TwinSettings | None = None,
    valves: int = 6,
    today: dt.date | None = None,
) -> Hazards:
    """Pipes, cables, valves and weak spots within ``radius_m`` of the plan point (twin CRS)."""
    if not (np.isfinite(x) and np.isfinite(y)):
        raise InputError("the dig site needs a finite easting and northing", zh="开挖点须有有限的东坐标和北坐标")
    if not (0 < radius_m <= 500):
        raise InputError("the dig-site radius must be more than 0 and at most 500 m",
                         zh="开挖半径须大于 0 且不超过 500 米")
    if utility is not None and utility not in UTILITIES:
        raise InputError(f"unknown utility {utility!r}: one of {', '.join(UTILITIES)}",
                         zh=f"未知管线类别 {utility!r}：取 {'、'.join(UTILITIES)} 之一")
    site = shapely.Point(x, y)
    year = (today or dt.date.today()).year
    net = load_network(engine, near=site, distance_m=radius_m, include=("active", "planned", "abandoned"))
    seg = net.segments
    notes: list[str] = []
    lines = _lines(net)
    flat = shapely.force_2d(lines)
    dist = shapely.distance(flat, site) if len(seg) else np.empty(0)
    at = shapely.line_interpolate_point(lines, shapely.line_locate_point(flat, site)) if len(seg) else lines
    cz = shapely.get_coordinates(at, include_z=True)[:, 2] if len(seg) else np.empty(0)
    ground = load_ground(engine, site, radius_m + 150.0) if len(seg) else None
    gz = ground(np.full(len(seg), x), np.full(len(seg), y)) if ground is not None else np.empty(0)
    top_depth = gz - (cz + net.half_height_m)
    life = service_life_years(seg["material"], seg["utility"], load_service_life(settings=settings, db=engine))
    age = year - seg["built_year"].to_numpy(float)
    old = np.isfinite(age) & np.isfinite(life) & (age > life)
    shallow_by: dict[str, CoverViolation] = {}
    if len(seg):
        cover = cover_depths(net, rules=load_cover_rules(None, settings, db=engine), settings=settings,
                             ground=ground)
        shallow_by = {v.id: v for v in cover.violations}
    if utility is None and len(seg):
        pressurised = np.isin(seg["utility"].to_numpy(), list(PRESSURISED_UTILITIES))
        if pressurised.any():
            utility = str(seg["utility"].to_numpy()[pressurised][np.argmin(dist[pressurised])])
    flags = _pipe_flags(seg, old, age, life, shallow_by)
    sizes = _size(seg) if len(seg) else []
    pipes = [_pipe_record(seg.iloc[i], flags[i], sizes[i], dist[i], cz[i] + net.half_height_m[i], top_depth[i])
             for i in np.argsort(dist, kind="stable")]
    valve_rows = []
    if utility is not None:
        valve_rows = _nearest_valves(engine, x, y, utility, valves)
        if not valve_rows:
            notes.append(f"{UTILITIES[utility].name_zh}管网没有阀门记录 "
                         f"no valves are recorded on the {UTILITIES[utility].name_en} network")
    if not len(seg):
        notes.append(f"{radius_m:g} 米内没有管线或电缆记录 no pipe or cable is recorded within {radius_m:g} m")
    return Hazards(x=float(x), y=float(y), radius_m=float(radius_m), utility=utility, pipes=pipes,
                   valves=valve_rows, old_pipes=seg["id"].to_numpy()[old].tolist(),
                   shallow_pipes=sorted(shallow_by), notes=notes)


def _pipe_flags(seg: pd.DataFrame, old: np.ndarray, age: np.ndarray, life: np.ndarray,
                shallow_by: dict[str, CoverViolation]) -> list[list[str]]:
    """What to watch for on each pipe: not active, past its service life, too little cover."""
    out = []
    for i, (status, pid, material) in enumerate(zip(seg["status"], seg["id"], seg["material"], strict=True)):
        flags = []
        if status != "active":
            flags.append(status)
        if old[i]:
            flags.append(f"past service life ({int(age[i])} a > {int(life[i])} a for {material})")
        if pid in shallow_by:
            v = shallow_by[pid]
            flags.append(f"cover {v.cover_m:.2f} m < {v.required_m:.2f} m")
        out.append(flags)
    return out


def _pipe_record(s: pd.Series, flags: list[str], size: str | None, distance_m: float, top_z: float,
                 top_depth_m: float) -> dict:
    """One pipe of the site, as reported."""
    return {
        "id": s["id"], "utility": s["utility"], "subtype": s["subtype"], "size": s["size_text"] or size,
        "material": s["material"], "status": s["status"], "built_year": None if pd.isna(s["built_year"])
        else int(s["built_year"]), "owner": s["owner"], "road": s["road"],
        "distance_m": round(float(distance_m), 3), "top_z": round(float(top_z), 3),
        "top_depth_m": None if not np.isfinite(top_depth_m) else round(float(top_depth_m), 3),
        "flags": flags,
    }


def _nearest_valves(engine: sa.Engine, x: float, y: float, utility: str, k: int) -> list[dict]:
    """The ``k`` valves of ``utility`` nearest the plan point (GiST search)."""
    with engine.connect() as conn:
        srid = twin_srid(conn)
        rows = conn.execute(sa.text(
            "WITH p AS (SELECT ST_SetSRID(ST_MakePoint(:x, :y), :srid) AS g) "
            "SELECT v.id, v.segment_id, v.node_id, v.operable, v.normally_closed, "
            "ST_Distance(v.geom, p.g) AS d, ST_X(v.geom) AS vx, ST_Y(v.geom) AS vy "
            "FROM current_valve v, p WHERE v.utility = :u ORDER BY v.geom <-> p.g LIMIT :k"),
            {"x": x, "y": y, "srid": srid, "u": utility, "k": k}).all()
    return [{"id": r.id, "pipe": r.segment_id, "node": r.node_id, "operable": r.operable,
             "normally_closed": r.normally_closed, "distance_m": round(float(r.d), 3),
             "x": float(r.vx), "y": float(r.vy)} for r in rows]
