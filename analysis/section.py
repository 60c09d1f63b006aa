"""Cross-section (横断面): every pipe a plan line cuts, with elevations, sizes and clear distances.

A section line is a plan polyline (two or more points, easting/northing in the twin CRS).
The pipes it crosses are gathered through the GiST index (``load_network(near=...)``), then
every straight piece of every candidate centreline is intersected with every piece of the
section line in one vectorised step. Per crossing:

- ``offset_m``: chainage along the section line (from its first point);
- ``centre_z``, ``top_z``, ``bottom_z``: elevations of the cut at the crossing. The cut of a
  pipe by the vertical section plane is exact: for a circular pipe of radius ``r`` crossing
  at plan angle ``theta`` with slope ``alpha`` it is an ellipse with half-width along the
  section ``r / sin(theta)`` and half-height ``r * sqrt(1 - cos²theta cos²alpha) /
  (cos(alpha) sin(theta))`` (a circle of radius ``r`` for a level pipe crossed square),
  tilted slightly only when the pipe is both skewed and sloped. A box section (vertical
  sides) cuts as a parallelogram. The drawing shows these true cuts at true scale, so a
  pipe crossed at 45 degrees appears 1.41 times wider than it is; the table gives the
  pipe's own size and the plan angle beside it;
- clear distances to the neighbours along the section, outer wall to outer wall, measured on
  the cuts (what a tape along the trench wall would show), and the vertical clearance when
  two cuts overlap in plan (one pipe above another).

Pipes running along the section line (plan angle under :data:`MIN_ANGLE_DEG`) have no
meaningful cut; they are listed under ``along`` instead. The ground line is interpolated
from the ground elevations of the survey points near the line (inverse-distance weights of
the nearest :data:`GROUND_NEIGHBOURS` points).
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import shapely
import sqlalchemy as sa
from scipy.spatial import cKDTree

from analysis import svg
from analysis.network import Network, load_network
from twin.db import twin_srid
from twin.domain import name_zh
from twin.errors import InputError

__all__ = [
    "SectionPipe",
    "Spacing",
    "CrossSection",
    "cross_section",
    "section_of_network",
    "parse_line",
    "ground_points",
    "idw_ground",
    "section_svg",
    "size_label",
    "MIN_ANGLE_DEG",
    "GROUND_NEIGHBOURS",
]

#: Plan angles (degrees) below this count as running along the section, not across it.
MIN_ANGLE_DEG = 5.0
#: Survey points used for each ground elevation (inverse-distance weights).
GROUND_NEIGHBOURS = 6
#: How far from the section line survey points are gathered for the ground (m).
GROUND_RADIUS_M = 60.0

Ground = Callable[[np.ndarray], np.ndarray]


@dataclass
class SectionPipe:
    """One pipe cut by the section line."""

    id: str
    utility: str
    subtype: str | None
    shape: str
    size_text: str
    diameter_mm: float | None
    width_mm: float | None
    height_mm: float | None
    material: str | None
    status: str
    owner: str | None
    offset_m: float
    x: float
    y: float
    centre_z: float
    top_z: float
    bottom_z: float
    ground_z: float | None
    cover_m: float | None
    angle_deg: float
    slope_permille: float
    cut_half_width_m: float
    cut_half_height_m: float
    cut_tilt_deg: float
    cut_semi_axes_m: tuple[float, float]
    left_id: str | None = None
    clear_left_m: float | None = None
    right_id: str | None = None
    clear_right_m: float | None = None
    depth_reference: str = "top"
    road: str | None = None  # the pipe's road name (道路名称) as surveyed

    @property
    def depth_m(self) -> float | None:
        """The surveyed depth at the crossing: ground to the top, or to the invert for drainage."""
        if self.ground_z is None:
            return None
        return self.ground_z - (self.bottom_z if self.depth_reference == "invert" else self.top_z)

    def as_dict(self) -> dict:
        """JSON-ready fields, rounded to millimetres."""
        d = asdict(self)
        d["depth_m"] = self.depth_m
        d["cut_semi_axes_m"] = [round(v, 4) for v in self.cut_semi_axes_m]
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}


@dataclass
class Spacing:
    """Clear distance between two neighbouring cuts along the section (outer wall to outer wall)."""

    left_id: str
    right_id: str
    horizontal_m: float
    vertical_m: float | None  # when the cuts overlap in plan: bottom of the upper minus top of the lower

    def as_dict(self) -> dict:
        """JSON-ready fields."""
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class CrossSection:
    """The result of :func:`cross_section`: the cuts in chainage order, spacings and ground line."""

    line: np.ndarray  # (n, 2) easting, northing
    pipes: list[SectionPipe]
    spacings: list[Spacing]
    ground_offset_m: np.ndarray
    ground_z: np.ndarray
    along: list[str] = field(default_factory=list)
    crs: str = ""
    created_at: str = field(default_factory=lambda: dt.datetime.now().astimezone().isoformat(timespec="seconds"))

    @property
    def length_m(self) -> float:
        """Plan length of the section line."""
        return float(np.hypot(*np.diff(self.line, axis=0).T).sum())

    @property
    def roads(self) -> list[str]:
        """The roads the line crosses: the cut pipes' road names, most common first."""
        return [r for r, _n in Counter(p.road for p in self.pipes if p.road).most_common()]

    def as_dict(self) -> dict:
        """JSON-ready report."""
        g = np.isfinite(self.ground_z)
        return {
            "kind": "cross_section",
            "crs": self.crs,
            "created_at": self.created_at,
            "line": [[round(float(x), 3), round(float(y), 3)] for x, y in self.line],
            "length_m": round(self.length_m, 3),
            "pipes": [p.as_dict() for p in self.pipes],
            "spacings": [s.as_dict() for s in self.spacings],
            "along": list(self.along),
            "ground": [[round(float(o), 3), round(float(z), 3)]
                       for o, z in zip(self.ground_offset_m[g], self.ground_z[g], strict=True)],
        }

    def to_svg(self, **kwargs: object) -> str:
        """The drawing: see :func:`section_svg`."""
        return section_svg(self, **kwargs)  # type: ignore[arg-type]


# -- input ------------------------------------------------------------------------------------
def parse_line(line: str | Sequence[Sequence[float]] | np.ndarray | shapely.LineString) -> np.ndarray:
    """A section line as an ``(n, 2)`` array from ``"X1,Y1,X2,Y2,..."``, pairs or a LineString."""
    try:
        if isinstance(line, str):
            vals = [float(v) for v in line.replace(";", ",").replace(" ", ",").split(",") if v.strip()]
            if len(vals) % 2:
                raise InputError(f"a section line takes pairs EASTING,NORTHING; got {len(vals)} numbers",
                                 zh=f"断面线按 东坐标,北坐标 成对给出；收到 {len(vals)} 个数")
            pts = np.asarray(vals, dtype=float).reshape(-1, 2)
        elif isinstance(line, shapely.Geometry):
            pts = shapely.get_coordinates(line)
        else:
            pts = np.asarray(line, dtype=float)
            if pts.ndim != 2 or pts.shape[1] < 2:
                raise InputError("a section line is a list of (easting, northing) points",
                                 zh="断面线是一组（东坐标，北坐标）点")
            pts = pts[:, :2]
    except ValueError as exc:
        raise InputError(f"a section line takes numbers: {exc}", zh=f"断面线只接受数字：{exc}") from None
    if not np.isfinite(pts).all():
        raise InputError("the section line has a coordinate that is not a number",
                         zh="断面线有一个坐标不是数字")
    if len(pts):
        keep = np.r_[True, np.hypot(*np.diff(pts, axis=0).T) > 1e-6]
        pts = pts[keep]
    if len(pts) < 2:
        raise InputError("a section line needs at least two distinct points (EASTING,NORTHING,EASTING,NORTHING)",
                         zh="断面线至少需要两个不同的点（东坐标,北坐标,东坐标,北坐标）")
    if (np.abs(pts[:, 0]) <= 180).all() and (np.abs(pts[:, 1]) <= 90).all():
        raise InputError("the section line looks like longitude/latitude; give easting,northing in the twin CRS",
                         zh="断面线看起来是经纬度；请按孪生库坐标系给出 东坐标,北坐标")
    return pts


# -- ground -----------------------------------------------------------------------------------
def ground_points(conn: sa.Connection | sa.Engine, geometry: shapely.Geometry, distance_m: float, *,
                  srid: int | None = None) -> np.ndarray:
    """Survey points' ``(x, y, ground_z)`` within ``distance_m`` of a plan geometry (GiST search).

    ``srid``: the twin's, when the caller has it already (one round trip less).
    """
    if isinstance(conn, sa.Engine):
        with conn.connect() as c:
            return ground_points(c, geometry, distance_m, srid=srid)
    rows = conn.execute(
        sa.text(
            "SELECT ST_X(geom), ST_Y(geom), ground_z FROM current_node "
            "WHERE ST_DWithin(geom, ST_SetSRID(ST_GeomFromWKB(:g), :srid), :d)"
        ),
        {"g": shapely.to_wkb(geometry, output_dimension=2), "d": float(distance_m),
         "srid": twin_srid(conn) if srid is None else srid},
    )
    # tuples first: numpy reads a list of result rows element by element, 40x slower
    return np.array([tuple(r) for r in rows], dtype=float).reshape(-1, 3)


def idw_ground(points_xyz: np.ndarray, k: int = GROUND_NEIGHBOURS) -> Ground:
    """Ground elevation at plan points by inverse-distance weighting of survey points' ground."""
    pts = np.asarray(points_xyz, dtype=float).reshape(-1, 3)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if not len(pts):
        return lambda xy: np.full(len(np.atleast_2d(xy)), np.nan)
    tree = cKDTree(pts[:, :2])
    k = min(k, len(pts))

    def ground(xy: np.ndarray) -> np.ndarray:
        xy = np.atleast_2d(np.asarray(xy, dtype=float))
        d, i = tree.query(xy, k=k)
        d, i = d.reshape(len(xy), k), i.reshape(len(xy), k)
        w = 1.0 / np.maximum(d, 1e-6) ** 2
        return (w * pts[i, 2]).sum(axis=1) / w.sum(axis=1)

    return ground


# -- the section ------------------------------------------------------------------------------
def cross_section(
    engine: sa.Engine | sa.Connection,
    line: str | Sequence[Sequence[float]] | np.ndarray | shapely.LineString,
    *,
    utilities: Sequence[str] | None = None,
    include: Sequence[str] = ("active", "planned"),
    crs: str = "",
    ground_step_m: float | None = None,
) -> CrossSection:
    """Every pipe of the twin the plan line crosses, with the ground line along it."""
    pts = parse_line(line)
    geom = shapely.LineString(pts)
    if isinstance(engine, sa.Engine):
        with engine.connect() as conn:
            return cross_section(conn, pts, utilities=utilities, include=include, crs=crs,
                                 ground_step_m=ground_step_m)
    net = load_network(engine, utilities, include=include, near=geom, distance_m=0.01)
    ground = idw_ground(ground_points(engine, geom, GROUND_RADIUS_M))
    if not crs:
        crs = f"EPSG:{twin_srid(engine)}"
    return section_of_network(net, pts, ground=ground, crs=crs, ground_step_m=ground_step_m)


def section_of_network(
    net: Network,
    line: str | Sequence[Sequence[float]] | np.ndarray | shapely.LineString,
    *,
    ground: Ground | None = None,
    crs: str = "",
    ground_step_m: float | None = None,
) -> CrossSection:
    """The cross-section of an in-memory network (e.g. candidates plus a proposal) along a plan line."""
    pts = parse_line(line)
    if ground is None:
        ground = idw_ground(net.node_xyz)
    a, b = pts[:-1], pts[1:]
    sec_len = np.hypot(*(b - a).T)
    chain0 = np.r_[0.0, np.cumsum(sec_len)[:-1]]
    seg, p, q = net.pieces()
    i, j, t, u, parallel = _intersections(p, q, a, b, sec_len)
    along_ids = _along(net, seg, p, q, a, b, parallel)
    offset = chain0[j] + t * sec_len[j]
    pipes = _cut_pipes(net, seg[i], p[i], q[i], u, offset, (b - a)[j] / sec_len[j, None], ground)
    spacings = _spacings(pipes)
    step = ground_step_m or max(sec_len.sum() / 200.0, 0.25)
    go = np.unique(np.r_[np.arange(0.0, sec_len.sum(), step), sec_len.sum(), chain0,
                         [pp.offset_m for pp in pipes]])
    gz_line = ground(_point_at(pts, chain0, sec_len, go))
    return CrossSection(line=pts, pipes=pipes, spacings=spacings, ground_offset_m=go, ground_z=gz_line,
                        along=along_ids, crs=crs)


def _intersections(p: np.ndarray, q: np.ndarray, a: np.ndarray, b: np.ndarray, sec_len: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every network piece ``p -> q`` against every section piece ``a -> b``, in one step.

    Returns the crossing pairs (network piece ``i``, section piece ``j``) at a plan angle of
    at least :data:`MIN_ANGLE_DEG`, the fractions along the section piece (``t``) and along
    the network piece (``u``) where they cross, and the (n, m) mask of pairs running along
    each other.
    """
    r = (b - a)[None, :, :]                      # (1, m, 2)
    s = (q - p)[:, None, :2]                     # (n, 1, 2)
    ap = p[:, None, :2] - a[None, :, :]          # (n, m, 2)
    denom = r[..., 0] * s[..., 1] - r[..., 1] * s[..., 0]
    s_len = np.hypot(s[..., 0], s[..., 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        sin_theta = np.abs(denom) / (sec_len[None, :] * s_len)
        t = (ap[..., 0] * s[..., 1] - ap[..., 1] * s[..., 0]) / denom   # along the section piece
        u = (ap[..., 0] * r[..., 1] - ap[..., 1] * r[..., 0]) / denom   # along the pipe piece
    eps = 1e-9
    hit = (t >= -eps) & (t <= 1 + eps) & (u >= -eps) & (u <= 1 + eps) & (s_len > 1e-9)
    across = hit & (sin_theta >= math.sin(math.radians(MIN_ANGLE_DEG)))
    with np.errstate(invalid="ignore"):
        parallel = ~(sin_theta >= math.sin(math.radians(MIN_ANGLE_DEG)))
    i, j = np.nonzero(across)
    return i, j, t[i, j], u[i, j], parallel


def _cut_pipes(net: Network, si: np.ndarray, pi: np.ndarray, qi: np.ndarray, u: np.ndarray,
               offset: np.ndarray, e: np.ndarray, ground: Ground) -> list[SectionPipe]:
    """The cut of each crossing, in chainage order, one per segment and place.

    Per crossing: its segment ``si``, the piece ``pi -> qi`` crossed at fraction ``u``, the
    chainage ``offset`` and the unit direction ``e`` of the section piece.
    """
    xyz = pi + u[:, None] * (qi - pi)
    plan = np.hypot(qi[:, 0] - pi[:, 0], qi[:, 1] - pi[:, 1])
    slope = (qi[:, 2] - pi[:, 2]) / plan
    alpha = np.arctan(slope)
    d2 = (qi[:, :2] - pi[:, :2]) / plan[:, None]         # pipe plan direction (unit)
    cos_theta = np.abs((e * d2).sum(axis=1))
    # one crossing per segment and place (a line through a shared vertex hits two pieces)
    order = np.lexsort((np.round(offset, 3), si))
    keep = np.ones(len(order), dtype=bool)
    if len(order) > 1:
        keep[1:] = ~((si[order][1:] == si[order][:-1])
                     & (np.abs(np.diff(offset[order])) < 1e-3))
    sel = order[keep]
    sel = sel[np.argsort(offset[sel], kind="stable")]
    hw, hh = net.half_width_m, net.half_height_m
    circ = (net.segments["shape"].to_numpy() == "circular")
    cut = [_cut(bool(circ[si[k]]), hw[si[k]], hh[si[k]], e[k], d2[k], alpha[k]) for k in sel]
    g = ground(xyz[sel, :2]) if len(sel) else np.empty(0)
    records = _records(net.segments, si[sel])
    return [_section_pipe(records[n], cut[n], g[n], offset[k], xyz[k],
                          float(np.degrees(np.arccos(np.clip(cos_theta[k], 0, 1)))), slope[k])
            for n, k in enumerate(sel)]


def _records(segments: pd.DataFrame, rows: np.ndarray) -> list[dict]:
    """Some segment rows as ``segments.iloc[rows].to_dict("records")`` gives them, built a column
    at a time (the records of a frame cut out first cost more than the section)."""
    values = {c: segments[c].to_numpy(object)[rows] for c in segments.columns}
    return [{c: v[n] for c, v in values.items()} for n in range(len(rows))]


def _section_pipe(row: dict, cut: tuple[float, float, float, np.ndarray | None], ground_z: float,
                  offset: float, xyz: np.ndarray, angle_deg: float, slope: float) -> SectionPipe:
    """One pipe's record at its crossing (centre ``xyz``) from its segment row and its cut."""
    half_a, half_b, tilt, axes = cut
    gz = float(ground_z) if np.isfinite(ground_z) else None
    top = float(xyz[2] + half_b)
    return SectionPipe(
        id=str(row["id"]), utility=str(row["utility"]), subtype=_opt(row["subtype"]),
        shape=str(row["shape"]), size_text=size_label(row), diameter_mm=_optf(row["diameter_mm"]),
        width_mm=_optf(row["width_mm"]), height_mm=_optf(row["height_mm"]),
        material=_opt(row["material"]), status=str(row["status"]), owner=_opt(row["owner"]),
        offset_m=float(offset), x=float(xyz[0]), y=float(xyz[1]), centre_z=float(xyz[2]),
        top_z=top, bottom_z=float(xyz[2] - half_b), ground_z=gz,
        cover_m=None if gz is None else gz - top,
        angle_deg=angle_deg,
        slope_permille=float(slope * 1000), cut_half_width_m=float(half_a),
        cut_half_height_m=float(half_b), cut_tilt_deg=float(tilt),
        cut_semi_axes_m=(float(axes[0]), float(axes[1])),
        depth_reference=str(row.get("depth_reference") or "top"), road=_opt(row.get("road")),
    )


def _point_at(pts: np.ndarray, chain0: np.ndarray, sec_len: np.ndarray, offset: np.ndarray) -> np.ndarray:
    j = np.clip(np.searchsorted(chain0, offset, side="right") - 1, 0, len(sec_len) - 1)
    t = (offset - chain0[j]) / sec_len[j]
    return pts[j] + t[:, None] * (pts[j + 1] - pts[j])


def _along(net: Network, seg: np.ndarray, p: np.ndarray, q: np.ndarray, a: np.ndarray, b: np.ndarray,
           parallel: np.ndarray) -> list[str]:
    """Pipes whose pieces run along a section piece, within their half width of it."""
    i, j = np.nonzero(parallel)
    if not len(i):
        return []
    pipe = shapely.linestrings(np.stack([p[i, :2], q[i, :2]], axis=1))
    line = shapely.linestrings(np.stack([a[j], b[j]], axis=1))
    near = shapely.distance(pipe, line) <= np.maximum(net.half_width_m[seg[i]], 1e-3)
    ids = net.segments["id"].to_numpy()
    return sorted({str(ids[seg[k]]) for k in i[near]})


def _cut(circular: bool, hw: float, hh: float, e: np.ndarray, d2: np.ndarray, alpha: float
         ) -> tuple[float, float, float, np.ndarray | None]:
    """Half-width along the section, half-height, tilt (deg) and the semi-axes ``(rx, ry)`` of the cut.

    Coordinates of the cut: ``a`` along the section direction ``e``, ``b`` up.
    """
    ca, sa_ = math.cos(alpha), math.sin(alpha)
    k = float(e @ d2) * ca                       # e . D with D the pipe axis (3D, unit)
    if circular:
        # cylinder: |w|^2 - (w.D)^2 = r^2 with w = a e + b z  ->  w^T M w = r^2
        m = np.array([[1 - k * k, -k * sa_], [-k * sa_, ca * ca]])
        inv = np.linalg.inv(m)
        half_a, half_b = hw * math.sqrt(inv[0, 0]), hw * math.sqrt(inv[1, 1])
        vals, vecs = np.linalg.eigh(m)
        # the semi-axis nearer the horizontal is drawn as rx, tilted by at most 45 degrees
        h = 0 if abs(vecs[0, 0]) >= abs(vecs[0, 1]) else 1
        v = vecs[:, h] * (1 if vecs[0, h] >= 0 else -1)
        tilt = math.degrees(math.atan2(v[1], v[0]))
        rx, ry = hw / math.sqrt(vals[h]), hw / math.sqrt(vals[1 - h])
        if abs(rx - ry) < 1e-9 or abs(tilt) < 1e-9:
            tilt = 0.0
        return half_a, half_b, tilt, np.array([rx, ry])
    # box with vertical sides: corners of its own section, carried along the axis to the plane
    axis = np.array([d2[0] * ca, d2[1] * ca, sa_])
    horiz = np.array([-d2[1], d2[0], 0.0])
    up = np.array([-d2[0] * sa_, -d2[1] * sa_, ca])
    n = np.array([-e[1], e[0], 0.0])             # section plane normal
    corners = np.array([sx * hw * horiz + sy * hh * up for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))])
    lam = -(corners @ n) / (axis @ n)
    w = corners + lam[:, None] * axis
    a = w[:, :2] @ e
    b = w[:, 2]
    return float(np.abs(a).max()), float(np.abs(b).max()), 0.0, np.array([np.abs(a).max(), np.abs(b).max()])


def _spacings(pipes: list[SectionPipe]) -> list[Spacing]:
    out: list[Spacing] = []
    for left, right in zip(pipes[:-1], pipes[1:], strict=True):
        h = (right.offset_m - right.cut_half_width_m) - (left.offset_m + left.cut_half_width_m)
        v = None
        if h < 0:
            upper, lower = (left, right) if left.centre_z >= right.centre_z else (right, left)
            v = upper.bottom_z - lower.top_z
        out.append(Spacing(left.id, right.id, h, v))
        left.right_id, left.clear_right_m = right.id, h
        right.left_id, right.clear_left_m = left.id, h
    return out


def _opt(v: object) -> str | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) or v == "" else str(v)


def _optf(v: object) -> float | None:
    try:
        f = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def size_label(row: Mapping[str, object]) -> str:
    """A segment's size as the survey tables write it: ``DN300`` or ``600X400`` (width X height, mm).

    >>> size_label({"shape": "rect", "width_mm": 600.0, "height_mm": 400.0})
    '600X400'
    >>> size_label({"shape": "circular", "diameter_mm": 300.0})
    'DN300'
    """
    if row["shape"] == "rect":
        return f"{row['width_mm']:g}X{row['height_mm']:g}"
    return f"DN{row['diameter_mm']:g}"


# -- the drawing ------------------------------------------------------------------------------
MAP_SCALES = (20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000)


def _map_scale(length_m: float, target_px: float) -> int:
    for n in MAP_SCALES:
        if length_m * 1000 / n * svg.PX_PER_MM <= target_px:
            return n
    return MAP_SCALES[-1]


#: Font sizes of the drawing's labels (px, as :func:`analysis.svg.document`'s CSS sets them).
SMALL_PX, TITLE_PX = 9.0, 14.0
#: Radius of a numbered callout (px) and the gap kept between labels.
CALLOUT_R, LABEL_GAP = 7.0, 3.0
#: The label table under the drawing: (Chinese, English) headings, one row per pipe.
TABLE_HEADINGS = (("序号", "No."), ("编号", "id"), ("管线", "utility"), ("代码 规格 夹角", "code size angle"),
                  ("管顶 / 管底", "top / bottom (m)"), ("覆土 / 埋深", "cover / depth (m)"),
                  ("里程", "offset (m)"), ("道路", "road"))
ROW_H, HEAD_H = 14.0, 26.0


@dataclass
class _Frame:
    """Where the plot is drawn: ``k`` px per metre at map scale 1:``n``, chainage 0 and elevation
    ``oz`` at (``ox``, ``oy``), the plot ``w`` by ``h`` px from ``top``."""

    k: float
    n: int
    ox: float
    oy: float
    oz: float
    top: float
    w: float
    h: float

    def x(self, offset_m: float) -> float:
        return self.ox + offset_m * self.k

    def y(self, z: float) -> float:
        return self.oy - (z - self.oz) * self.k


def section_svg(sec: CrossSection, *, width_px: float = 1000.0, title: str = "横断面 Cross-section") -> str:
    """An SVG drawing of the section at true scale (same horizontal and vertical scale).

    Pipes are their true cuts in utility colours (circles, ellipses for skewed or sloped
    crossings, boxes), with the ground line, elevation axis, the line's ends A and B (A its
    first point), each pipe's number in a callout on a leader line (callouts spread so no two
    overlap, even where cuts touch or collide), spacing dimensions, the label table of the
    numbered pipes (id, utility, code and size with the plan angle ``∠``, top/bottom, cover and
    depth, offset, road), a legend of the symbols, a scale bar and a title block; the title
    names the roads the line crosses. Labels are placed by their estimated boxes
    (:func:`analysis.svg.text_box`): none overprints another. The root element carries
    ``data-px-per-m``, ``data-origin-x``, ``data-origin-y`` and ``data-origin-z``: a point at
    chainage ``o`` and elevation ``z`` is drawn at ``(origin_x + o * k, origin_y - (z - origin_z) * k)``.
    """
    f = _section_frame(sec, width_px)
    roads = "、".join(sec.roads)
    heading = f"{title}{f' — {roads}' if roads else ''}  ·  1:{f.n} (横竖同比 true scale, H = V)"
    body = [svg.text(f.ox, 24, heading, class_="title"), *_plot(sec, f)]
    callouts, right, y = _callouts(sec.pipes, f)
    dims, right2, y = _spacing_dimensions(sec, f, y + 12)
    table, right3, y = _label_table(sec.pipes, f.ox, y + 10)
    legend, right4, y = _legend(sec, f.ox, y + 16)
    body += [callouts, dims, table, legend, svg.scale_bar(f.ox, y + 24, f.k)]
    rows_tb = _title_rows(sec, f, roads)
    tb_w = max(380.0, max(svg.text_width(v, SMALL_PX) for _, v in rows_tb)
               + max(110.0, max(svg.text_width(k, SMALL_PX) for k, _ in rows_tb) + 16.0) + 12.0)
    total_w = max(f.ox + f.w + 20, right + 20, right2 + 20, right3 + 20, right4 + 20, f.ox + svg.nice_step(150 / f.k, 1) * f.k + 40 + tb_w + 20,
                  f.ox + svg.text_width(heading, TITLE_PX, bold=True) + 20)
    tb, tb_h = svg.title_block(total_w - tb_w - 20, y + 10, tb_w, rows_tb, title=title)
    body.append(tb)
    return svg.document(total_w, y + 10 + tb_h + 20, body, title=title, data_px_per_m=f"{f.k:.10g}",
                        data_origin_x=f"{f.ox:.10g}", data_origin_y=f"{f.oy:.10g}",
                        data_origin_z=f"{f.oz:.10g}", data_scale=f"1:{f.n}")


def _section_frame(sec: CrossSection, width_px: float) -> _Frame:
    """The scale (the largest map scale that fits ``width_px``) and the plot's place."""
    n = _map_scale(sec.length_m, width_px)
    k = 1000.0 / n * svg.PX_PER_MM
    g = sec.ground_z[np.isfinite(sec.ground_z)]
    zs = [p.top_z for p in sec.pipes] + [p.bottom_z for p in sec.pipes] + list(g)
    zmax = (max(zs) if zs else 0.0) + 0.5
    zmin = (min(zs) if zs else -1.0) - 0.5
    left, top = 115.0, 62.0
    h = (zmax - zmin) * k
    return _Frame(k=k, n=n, ox=left, oy=top + h, oz=zmin, top=top, w=sec.length_m * k, h=h)


def _plot(sec: CrossSection, f: _Frame) -> list[str]:
    """The plot: elevation grid, frame, ground line, the pipes' cuts and the ends A and B."""
    out = [svg.elevation_grid(f.ox, f.w, f.oz, f.oz + f.h / f.k, f.y),
           svg.text(f.ox - 12, f.top - 8, "高程 elev. (m)", class_="small", text_anchor="end"),
           svg.el("rect", x=f.ox, y=f.top, width=f.w, height=f.h, fill="none", stroke="#999", stroke_width=0.5)]
    g_ok = np.isfinite(sec.ground_z)
    if g_ok.sum() >= 2:
        out.append(svg.polyline(zip(f.x(sec.ground_offset_m[g_ok]), f.y(sec.ground_z[g_ok]), strict=True),
                                class_="ground", data_kind="ground"))
        out.append(svg.text(f.ox + 10, f.y(sec.ground_z[g_ok][0]) - 4, "地面 ground", class_="small"))
    out.append(svg.el("g", "".join(_pipe_cuts(sec.pipes, f.x, f.y, f.k)), class_="pipes"))
    ends = []
    for name, xx in (("A", f.ox), ("B", f.ox + f.w)):
        ends.append(svg.el("line", x1=xx, y1=f.top - 6, x2=xx, y2=f.oy, stroke="#000", stroke_width=1.2))
        ends.append(svg.text(xx, f.top - 9, name, class_="title",
                             text_anchor="middle", data_end=name))
    out.append(svg.el("g", "".join(ends), class_="ends"))
    return out
def _pipe_cuts(pipes: list[SectionPipe], X: Callable[[float], float], Y: Callable[[float], float],
               k: float) -> list[str]:
    """Each pipe's true cut (box, circle or tilted ellipse); proposed pipes dashed in red."""
    out = []
    for p in pipes:
        colour = svg.utility_colour(p.subtype or p.utility)
        cx, cy = X(p.offset_m), Y(p.centre_z)
        proposed = p.status == "proposed"
        common = dict(fill=colour, fill_opacity=0.5 if proposed else 0.85, stroke="#c00000" if proposed else "#000",
                      stroke_width=1.4 if proposed else 0.6, stroke_dasharray="3,2" if proposed else None,
                      class_="pipe", data_id=p.id, data_utility=p.utility, data_status=p.status)
        if p.shape == "rect":
            hw, hh = p.cut_half_width_m * k, p.cut_half_height_m * k
            out.append(svg.el("rect", x=cx - hw, y=cy - hh, width=2 * hw, height=2 * hh, **common))
        elif abs(p.cut_half_width_m - p.cut_half_height_m) < 1e-6:
            out.append(svg.el("circle", cx=cx, cy=cy, r=p.cut_half_width_m * k, **common))
        else:
            rx, ry = p.cut_semi_axes_m
            out.append(svg.el("ellipse", cx=cx, cy=cy, rx=rx * k, ry=ry * k,
                              transform=f"rotate({svg.fmt(-p.cut_tilt_deg)} {svg.fmt(cx)} {svg.fmt(cy)})"
                              if abs(p.cut_tilt_deg) > 0.05 else None, **common))
    return out


def _callouts(pipes: list[SectionPipe], f: _Frame) -> tuple[str, float, float]:
    """Each pipe's number in a circle under the plot on a leader line from its cut.

    The circles are spread along rows so none overlaps another (:func:`analysis.svg.spread_rows`),
    in chainage order. Returns the group, its right edge and its bottom.
    """
    if not pipes:
        return "", f.ox, f.oy
    labels = [str(n) for n in range(1, len(pipes) + 1)]
    r = max(CALLOUT_R, svg.text_width(labels[-1], SMALL_PX) / 2 + 2.5)
    cx = [f.x(p.offset_m) for p in pipes]
    centres, rows = svg.spread_rows(cx, [2 * r] * len(pipes), lo=f.ox - 20, hi=f.ox + f.w + 20,
                                    gap=LABEL_GAP)
    leaders, marks = [], []
    for p, label, x0, bx, row in zip(pipes, labels, cx, centres, rows, strict=True):
        by = f.oy + 8 + r + row * (2 * r + LABEL_GAP)
        ax, ay = _leader_anchor(p, f, x0, bx - x0, by - r - f.y(p.centre_z))
        colour = svg.utility_colour(p.subtype or p.utility)
        leaders.append(svg.el("line", x1=ax, y1=ay, x2=bx, y2=by - r, stroke="#444", stroke_width=0.6))
        leaders.append(svg.el("circle", cx=ax, cy=ay, r=1.3, fill="#000"))
        marks.append(svg.el("g", svg.el("circle", cx=bx, cy=by, r=r, fill="#fff", stroke=colour, stroke_width=1.4)
                            + svg.text(bx, by + 0.33 * SMALL_PX, label, class_="small", text_anchor="middle"),
                            class_="callout", data_id=p.id, data_n=label))
    bottom = f.oy + 8 + (max(rows) + 1) * (2 * r + LABEL_GAP)
    return (svg.el("g", "".join(leaders) + "".join(marks), class_="callouts"),
            max(centres) + r, bottom)


def _leader_anchor(p: SectionPipe, f: _Frame, cx: float, dx: float, dy: float) -> tuple[float, float]:
    """Where a leader from the centre of a cut towards ``(dx, dy)`` leaves the cut's outline."""
    a, b = max(p.cut_half_width_m * f.k, 1e-6), max(p.cut_half_height_m * f.k, 1e-6)
    norm = math.hypot(dx, dy) or 1.0
    ux, uy = dx / norm, dy / norm
    if p.shape == "rect":
        t = min(a / abs(ux) if abs(ux) > 1e-9 else math.inf, b / abs(uy) if abs(uy) > 1e-9 else math.inf)
    else:
        t = 1.0 / math.sqrt((ux / a) ** 2 + (uy / b) ** 2)
    return cx + t * ux, f.y(p.centre_z) + t * uy


def _spacing_dimensions(sec: CrossSection, f: _Frame, dim_y: float) -> tuple[str, float, float]:
    """Clear distances between neighbouring cuts as dimension lines at ``dim_y``.

    The values are spread along rows under the line so none overprints another; one moved off
    its dimension is tied to it by a leader. Returns the group, its right edge and its bottom.
    """
    if not sec.spacings:
        return "", f.ox, dim_y - 12
    dims, spans, labels = [], [], []
    for s, lp, rp in zip(sec.spacings, sec.pipes[:-1], sec.pipes[1:], strict=True):
        x1, x2 = f.x(lp.offset_m + lp.cut_half_width_m), f.x(rp.offset_m - rp.cut_half_width_m)
        if s.horizontal_m < 0:
            label = f"v {s.vertical_m:.2f}" if s.vertical_m is not None else "—"
        else:
            label = f"{s.horizontal_m:.2f}"
        dims.append(svg.el("line", x1=x1, y1=dim_y, x2=x2, y2=dim_y, class_="dim"))
        for xx in (x1, x2):
            dims.append(svg.el("line", x1=xx, y1=dim_y - 3, x2=xx, y2=dim_y + 3, class_="dim"))
        spans.append((x1, x2))
        labels.append(label)
    widths = [svg.text_width(t, SMALL_PX) for t in labels]
    ideal = [(x1 + x2) / 2 for x1, x2 in spans]
    centres, rows = svg.spread_rows(ideal, widths, lo=f.ox - 40, hi=f.ox + f.w + 40, gap=LABEL_GAP)
    for s, label, (x1, x2), x, row in zip(sec.spacings, labels, spans, centres, rows, strict=True):
        base = dim_y + 12 + row * 11
        if abs(x - (x1 + x2) / 2) > max(abs(x2 - x1) / 2, 2.0) or row:
            dims.append(svg.el("line", x1=(x1 + x2) / 2, y1=dim_y, x2=x, y2=base - 0.85 * SMALL_PX - 1,
                               stroke="#888", stroke_width=0.4))
        dims.append(svg.text(x, base, label, class_="small spacing", text_anchor="middle",
                             data_left=s.left_id, data_right=s.right_id))
    right = max(c + w / 2 for c, w in zip(centres, widths, strict=True))
    return svg.el("g", "".join(dims), class_="spacings"), right, dim_y + 12 + max(rows) * 11 + 4


def _table_cells(n: int, p: SectionPipe) -> tuple[str, ...]:
    skew = "" if p.angle_deg >= 85 else f" ∠{p.angle_deg:.0f}°"
    code = p.utility + (f"/{p.subtype}" if p.subtype else "")
    dash = "—"
    return (str(n), p.id + (" 拟建 proposed" if p.status == "proposed" else ""),
            name_zh(p.subtype or p.utility) or name_zh(p.utility) or p.utility,
            f"{code} {p.size_text}{skew}", f"{p.top_z:.2f} / {p.bottom_z:.2f}",
            f"{dash if p.cover_m is None else f'{p.cover_m:.2f}'} / "
            f"{dash if p.depth_m is None else f'{p.depth_m:.2f}'}",
            f"{p.offset_m:.2f}", p.road or dash)


def _label_table(pipes: list[SectionPipe], x: float, ty: float) -> tuple[str, float, float]:
    """The table of the numbered pipes from ``ty``: headings Chinese over English, a row per pipe.

    Columns are as wide as their widest text. Returns the table, its right edge and its bottom.
    """
    cells = [_table_cells(n, p) for n, p in enumerate(pipes, start=1)]
    widths = [max(svg.text_width(t, SMALL_PX) for t in (*head, *(c[i] for c in cells))) + 8
              for i, head in enumerate(TABLE_HEADINGS)]
    lefts = list(np.cumsum([x, *widths]))
    right, bottom = lefts[-1], ty + HEAD_H + ROW_H * max(len(pipes), 1)
    out = [svg.el("rect", x=x, y=ty, width=right - x, height=bottom - ty, fill="none", stroke="#999",
                  stroke_width=0.5)]
    for i, (zh, en) in enumerate(TABLE_HEADINGS):
        out.append(svg.text(lefts[i] + 4, ty + 11, zh, class_="small"))
        out.append(svg.text(lefts[i] + 4, ty + 22, en, class_="small", fill="#555"))
        if i:
            out.append(svg.el("line", x1=lefts[i], y1=ty, x2=lefts[i], y2=bottom, stroke="#bbb", stroke_width=0.5))
    for r, (p, row) in enumerate(zip(pipes, cells, strict=True)):
        yy = ty + HEAD_H + r * ROW_H
        out.append(svg.el("line", x1=x, y1=yy, x2=right, y2=yy, stroke="#bbb", stroke_width=0.5))
        for i, cell in enumerate(row):
            out.append(svg.text(lefts[i] + 4, yy + 10, cell, class_="small label", data_id=p.id))
    if not pipes:
        out.append(svg.text(x + 4, ty + HEAD_H + 10, "未切到管线 no pipe cut", class_="small"))
    return svg.el("g", "".join(out), class_="label-table"), float(right), bottom


def _legend(sec: CrossSection, x: float, y: float) -> tuple[str, float, float]:
    """What the drawing's symbols mean, a line each; returns it, its right edge and its bottom."""
    lines = ["A → B 剖面线起点 → 终点 section line from its first point to its last",
             "① 圆圈数字：管线序号，见上表 numbered circles: the pipe's No. in the table"]
    skewed = [p.angle_deg for p in sec.pipes if p.angle_deg < 85]
    if skewed:
        lines.append(f"∠{skewed[0]:.0f}° 管线与剖面线夹角（90° 为正交）"
                     "angle between the pipe and the section line (90° = square)")
    if any(s.horizontal_m < 0 for s in sec.spacings):
        lines.append("v 0.12 切面重叠处上下净距 vertical clearance where the cuts overlap in plan")
    if any(p.status == "proposed" for p in sec.pipes):
        lines.append("红色虚线 拟建管线 red dashed outline: proposed pipe")
    if sec.along:
        lines.append("沿剖面线（未切到）along the line, not cut: " + ", ".join(sec.along))
    # the callout's symbol drawn as in the drawing (fonts may lack the circled digits)
    out = [svg.el("g", svg.el("circle", cx=x + 6, cy=y + 9, r=5.5, fill="#fff", stroke="#444", stroke_width=1)
                  + svg.text(x + 6, y + 9 + 0.33 * SMALL_PX, "1", class_="small", text_anchor="middle"),
                  class_="callout-key")]
    lines[1] = lines[1].removeprefix("① ")
    out += [svg.text(x + (16 if i == 1 else 0), y + 12 * i, t, class_="small legend")
            for i, t in enumerate(lines)]
    right = x + 16 + max(svg.text_width(t, SMALL_PX) for t in lines)
    return svg.el("g", "".join(out), class_="legend"), right, y + 12 * (len(lines) - 1) + 4


def _title_rows(sec: CrossSection, f: _Frame, roads: str) -> list[tuple[str, str]]:
    """The title block's rows, Chinese first."""
    a, b = sec.line[0], sec.line[-1]
    more = f" ({len(sec.line)} 点 points)" if len(sec.line) > 2 else ""
    return [
        ("剖面线 A → B (E, N)", f"{a[0]:.2f}, {a[1]:.2f} → {b[0]:.2f}, {b[1]:.2f}{more}"),
        ("长度 length", f"{sec.length_m:.2f} m; 切到 {len(sec.pipes)} 条管线 pipes cut"),
        ("道路 road", roads or "—"),
        ("比例 scale", f"1:{f.n} 横竖同比 horizontal and vertical"),
        ("坐标系 CRS", sec.crs or "twin CRS"),
        ("日期 date", sec.created_at[:19].replace("T", " ")),
        ("说明 note", "斜交、有坡管线画真实切面（椭圆）skewed/sloped: true cut"),
    ]
