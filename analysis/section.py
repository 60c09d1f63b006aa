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
                raise InputError(f"a section line takes pairs EASTING,NORTHING; got {len(vals)} numbers")
            pts = np.asarray(vals, dtype=float).reshape(-1, 2)
        elif isinstance(line, shapely.Geometry):
            pts = shapely.get_coordinates(line)
        else:
            pts = np.asarray(line, dtype=float)
            if pts.ndim != 2 or pts.shape[1] < 2:
                raise InputError("a section line is a list of (easting, northing) points")
            pts = pts[:, :2]
    except ValueError as exc:
        raise InputError(f"a section line takes numbers: {exc}") from None
    if not np.isfinite(pts).all():
        raise InputError("the section line has a coordinate that is not a number")
    if len(pts):
        keep = np.r_[True, np.hypot(*np.diff(pts, axis=0).T) > 1e-6]
        pts = pts[keep]
    if len(pts) < 2:
        raise InputError("a section line needs at least two distinct points (EASTING,NORTHING,EASTING,NORTHING)")
    if (np.abs(pts[:, 0]) <= 180).all() and (np.abs(pts[:, 1]) <= 90).all():
        raise InputError("the section line looks like longitude/latitude; give easting,northing in the twin CRS")
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
    ).all()
    return np.asarray(rows, dtype=float).reshape(-1, 3)


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
        depth_reference=str(row.get("depth_reference") or "top"),
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


def section_svg(sec: CrossSection, *, width_px: float = 1000.0, title: str = "Cross-section 横断面") -> str:
    """An SVG drawing of the section at true scale (same horizontal and vertical scale).

    Pipes are their true cuts in utility colours (circles, ellipses for skewed or sloped
    crossings, boxes), with the ground line, elevation axis, spacing dimensions, a label
    table under the drawing (id, utility and size, top/bottom elevation, cover, offset),
    a scale bar and a title block. The root element carries ``data-px-per-m``,
    ``data-origin-x``, ``data-origin-y`` and ``data-origin-z``: a point at chainage ``o`` and
    elevation ``z`` is drawn at ``(origin_x + o * k, origin_y - (z - origin_z) * k)``.
    """
    length = sec.length_m
    n_scale = _map_scale(length, width_px)
    k = 1000.0 / n_scale * svg.PX_PER_MM
    zs = [p.top_z for p in sec.pipes] + [p.bottom_z for p in sec.pipes]
    g_ok = np.isfinite(sec.ground_z)
    zs += list(sec.ground_z[g_ok])
    zmax = (max(zs) if zs else 0.0) + 0.5
    zmin = (min(zs) if zs else -1.0) - 0.5
    left, top = 115.0, 50.0
    plot_w, plot_h = length * k, (zmax - zmin) * k
    ox, oy, oz = left, top + plot_h, zmin
    X = lambda o: ox + o * k  # noqa: E731
    Y = lambda z: oy - (z - oz) * k  # noqa: E731
    body: list[str] = [svg.text(left, 24, f"{title}  ·  1:{n_scale} (true scale, H = V)", class_="title")]
    body.append(svg.elevation_grid(ox, plot_w, zmin, zmax, Y))
    body.append(svg.text(ox - 6, top - 8, "elev. (m)", class_="small", text_anchor="end"))
    body.append(svg.el("rect", x=ox, y=float(top), width=plot_w, height=plot_h, fill="none",
                       stroke="#999", stroke_width=0.5))
    if g_ok.sum() >= 2:
        body.append(svg.polyline(zip(X(sec.ground_offset_m[g_ok]), Y(sec.ground_z[g_ok]), strict=True),
                                 class_="ground", data_kind="ground"))
        body.append(svg.text(ox + 4, Y(sec.ground_z[g_ok][0]) - 4, "ground 地面", class_="small"))
    body.append(svg.el("g", "".join(_pipe_cuts(sec.pipes, X, Y, k)), class_="pipes"))
    # spacing dimensions just under the plot
    dim_y = oy + 14
    body.append(_spacing_dimensions(sec, X, dim_y))
    table, yy = _label_table(sec.pipes, X, Y, ox, plot_w, dim_y + 24)
    body.append(table)
    # scale bar and title block
    bottom = yy + 20
    body.append(svg.scale_bar(ox, bottom + 14, k))
    a, b = sec.line[0], sec.line[-1]
    rows_tb = [
        ("line (E, N)", f"{a[0]:.2f}, {a[1]:.2f} → {b[0]:.2f}, {b[1]:.2f}"
                        + (f" ({len(sec.line)} points)" if len(sec.line) > 2 else "")),
        ("length", f"{length:.2f} m; {len(sec.pipes)} pipes cut"),
        ("scale", f"1:{n_scale} horizontal and vertical"),
        ("CRS", sec.crs or "twin CRS"),
        ("date", sec.created_at[:19].replace("T", " ")),
        ("note", "skewed/sloped pipes: true cut (ellipse)"),
    ]
    tb_w = 380.0
    total_w = max(ox + plot_w + 20, ox + 180 + tb_w + 20)
    tb, tb_h = svg.title_block(total_w - tb_w - 20, bottom, tb_w, rows_tb, title=title)
    body.append(tb)
    total_h = bottom + tb_h + 20
    return svg.document(total_w, total_h, body, title=title, data_px_per_m=f"{k:.10g}", data_origin_x=f"{ox:.10g}",
                        data_origin_y=f"{oy:.10g}", data_origin_z=f"{oz:.10g}", data_scale=f"1:{n_scale}")


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


def _spacing_dimensions(sec: CrossSection, X: Callable[[float], float], dim_y: float) -> str:
    """Clear distances between neighbouring cuts as dimension lines at ``dim_y``."""
    dims = []
    for s, lp, rp in zip(sec.spacings, sec.pipes[:-1], sec.pipes[1:], strict=True):
        x1, x2 = X(lp.offset_m + lp.cut_half_width_m), X(rp.offset_m - rp.cut_half_width_m)
        if s.horizontal_m < 0:
            label = f"v {s.vertical_m:.2f}" if s.vertical_m is not None else ""
        else:
            label = f"{s.horizontal_m:.2f}"
        dims.append(svg.el("line", x1=x1, y1=dim_y, x2=x2, y2=dim_y, class_="dim"))
        for xx in (x1, x2):
            dims.append(svg.el("line", x1=xx, y1=dim_y - 3, x2=xx, y2=dim_y + 3, class_="dim"))
        dims.append(svg.text((x1 + x2) / 2, dim_y + 12, label, class_="small spacing", text_anchor="middle",
                             data_left=s.left_id, data_right=s.right_id))
    return svg.el("g", "".join(dims), class_="spacings")


def _label_table(pipes: list[SectionPipe], X: Callable[[float], float], Y: Callable[[float], float],
                 ox: float, plot_w: float, ty: float) -> tuple[str, float]:
    """The label table from ``ty``: one rotated column per pipe; returns it and its bottom y."""
    rows = (("id", 90.0), ("utility / size", 80.0), ("top / bottom (m)", 70.0), ("cover · offset (m)", 70.0))
    table, yy = svg.table_frame(ox, ty, plot_w, rows)
    for p in pipes:
        cx = X(p.offset_m)
        table.append(svg.el("line", x1=cx, y1=Y(p.bottom_z), x2=cx, y2=ty, stroke="#bbb", stroke_width=0.5,
                            stroke_dasharray="2,2"))
        skew = "" if p.angle_deg >= 85 else f" ∠{p.angle_deg:.0f}°"
        cells = (p.id + (" (proposed)" if p.status == "proposed" else ""), f"{p.utility}{'/' + p.subtype if p.subtype else ''} {p.size_text}{skew}",
                 f"{p.top_z:.2f} / {p.bottom_z:.2f}",
                 f"{'' if p.cover_m is None else f'{p.cover_m:.2f}'} · {p.offset_m:.2f}")
        yy = ty
        for (_name, h), cell in zip(rows, cells, strict=True):
            table.append(svg.text(cx + 3, yy + h - 4, cell, class_="small label",
                                  transform=f"rotate(-90 {svg.fmt(cx + 3)} {svg.fmt(yy + h - 4)})",
                                  data_id=p.id))
            yy += h
    return svg.el("g", "".join(table), class_="label-table"), yy
