"""Longitudinal profile (纵断面) along one utility between two survey points.

The path is the shortest by plan length through that utility's network (pipes are
traversed either way; a gravity line's flow direction is reported, not enforced). Reading a
whole utility of a million-segment twin takes seconds, so the graph is read from a
corridor: only the utility's segments within the ellipse whose foci are the two points and
whose string length is ``D`` (a superset: segments within the ellipse's semi-minor axis of the
straight line between them, through the GiST index). Every path that leaves that ellipse is
longer than ``D``, so a path found inside it of length ``L <= D`` is the shortest of the whole
network. ``D`` starts at the straight distance plus 2 % (at least 20 m); when no path is found,
or ``L > D``, the excess grows tenfold (or ``D`` becomes ``L``) and the search repeats; the last
attempt reads the whole utility, so "no path" is a proof, not a guess.

Per node: chainage, ground, pipe top and invert (outer bottom; wall thickness is not in the
survey), depth. Per segment: length, size, slope in per mille along the path (positive:
rising), and for gravity drainage whether it falls along its flow. Crossings: every other pipe
the path cuts in plan (through :func:`analysis.section.section_of_network` along the path),
with its elevations and the vertical clear distance to the profiled pipe (outer wall to
outer wall).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
import shapely
import sqlalchemy as sa
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import dijkstra

from analysis import svg
from analysis.network import Network, load_network
from analysis.section import SectionPipe, section_of_network, size_label
from twin.db import twin_srid
from twin.domain import GRAVITY_UTILITIES
from twin.errors import InputError, NotFound

__all__ = [
    "ProfileNode",
    "ProfileSegment",
    "ProfileCrossing",
    "Profile",
    "longitudinal_profile",
    "profile_of_network",
    "shortest_path",
    "profile_svg",
]


@dataclass
class ProfileNode:
    """A survey point on the path."""

    id: str
    chainage_m: float
    x: float
    y: float
    ground_z: float
    top_z: float
    invert_z: float
    depth_m: float  # ground to the top, or to the invert for drainage
    feature: str | None = None
    appurtenance: str | None = None

    def as_dict(self) -> dict:
        """JSON-ready fields."""
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class ProfileSegment:
    """A pipe of the path, oriented along the path."""

    id: str
    from_node: str
    to_node: str
    reversed: bool  # traversed against its stored direction (its flow direction for drainage)
    chainage_start_m: float
    chainage_end_m: float
    length_m: float
    size_text: str
    material: str | None
    start_top_z: float
    end_top_z: float
    start_invert_z: float
    end_invert_z: float
    slope_permille: float  # along the path: positive rises, negative falls
    direction: str  # "rises" | "falls" | "level" along the path
    reverse_grade: bool  # gravity drainage whose invert rises along its flow

    def as_dict(self) -> dict:
        """JSON-ready fields."""
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class ProfileCrossing:
    """Another pipe the path cuts in plan, with the vertical clear distance to the profiled pipe."""

    id: str
    utility: str
    subtype: str | None
    size_text: str
    chainage_m: float
    x: float
    y: float
    centre_z: float
    top_z: float
    bottom_z: float
    path_segment: str
    path_top_z: float
    path_bottom_z: float
    position: str  # "above" | "below" the profiled pipe
    vertical_clear_m: float  # outer wall to outer wall; negative: the two overlap in height

    def as_dict(self) -> dict:
        """JSON-ready fields."""
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class Profile:
    """The result of :func:`longitudinal_profile`."""

    utility: str
    nodes: list[ProfileNode]
    segments: list[ProfileSegment]
    crossings: list[ProfileCrossing]
    chainage_m: np.ndarray  # vertex chainages along the path (plan)
    centre_z: np.ndarray  # centreline elevation at those chainages
    top_z: np.ndarray
    invert_z: np.ndarray
    crs: str = ""
    searched: dict = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: dt.datetime.now().astimezone().isoformat(timespec="seconds"))

    @property
    def length_m(self) -> float:
        """Plan length of the path."""
        return float(self.chainage_m[-1]) if len(self.chainage_m) else 0.0

    def as_dict(self) -> dict:
        """JSON-ready report."""
        return {
            "kind": "longitudinal_profile",
            "utility": self.utility,
            "crs": self.crs,
            "created_at": self.created_at,
            "from": self.nodes[0].id,
            "to": self.nodes[-1].id,
            "length_m": round(self.length_m, 3),
            "nodes": [n.as_dict() for n in self.nodes],
            "segments": [s.as_dict() for s in self.segments],
            "crossings": [c.as_dict() for c in self.crossings],
            "searched": self.searched,
        }

    def to_svg(self, **kwargs: object) -> str:
        """The drawing: see :func:`profile_svg`."""
        return profile_svg(self, **kwargs)  # type: ignore[arg-type]


# -- the path ---------------------------------------------------------------------------------
def _endpoints(conn: sa.Connection, from_node: str, to_node: str) -> pd.DataFrame:
    rows = conn.execute(
        sa.text("SELECT id, utility, ST_X(geom), ST_Y(geom) FROM current_node WHERE id = ANY(:ids)"),
        {"ids": [from_node, to_node]},
    ).all()
    found = pd.DataFrame(rows, columns=["id", "utility", "x", "y"]).set_index("id")
    for n in (from_node, to_node):
        if n not in found.index:
            raise NotFound(f"no survey point {n!r} in the twin", zh=f"孪生库中没有管点 {n!r}")
    u1, u2 = found.at[from_node, "utility"], found.at[to_node, "utility"]
    if u1 != u2:
        raise InputError(f"{from_node} is {u1} and {to_node} is {u2}: a profile follows one utility",
                         zh=f"{from_node} 属于 {u1}，{to_node} 属于 {u2}：纵断面只沿一种管线")
    if from_node == to_node:
        raise InputError("a profile needs two different points", zh="纵断面须有两个不同的管点")
    return found


def shortest_path(edges: pd.DataFrame, source: str, target: str) -> tuple[list[str], list[str], float] | None:
    """Shortest path by length over ``edges`` (id, from_node, to_node, length_m), either direction.

    Returns ``(node ids, segment ids, length)`` or None when the two are not connected.
    """
    codes, names = pd.factorize(pd.concat([edges["from_node"], edges["to_node"]], ignore_index=True))
    n = len(names)
    if source not in set(names) or target not in set(names):
        return None
    a, b = codes[: len(edges)], codes[len(edges):]
    w = np.maximum(edges["length_m"].to_numpy(float), 1e-9)  # explicit zeros are not edges
    # parallel pipes between the same two points: keep the shortest
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    order = np.lexsort((w, hi, lo))
    first = np.ones(len(order), dtype=bool)
    first[1:] = (lo[order][1:] != lo[order][:-1]) | (hi[order][1:] != hi[order][:-1])
    keep = order[first & (lo[order] != hi[order])]
    g = coo_matrix((w[keep], (lo[keep], hi[keep])), shape=(n, n)).tocsr()
    src, dst = int(names.get_loc(source)), int(names.get_loc(target))
    dist, pred = dijkstra(g, directed=False, indices=src, return_predecessors=True)
    if not np.isfinite(dist[dst]):
        return None
    path = [dst]
    while path[-1] != src:
        path.append(int(pred[path[-1]]))
    path.reverse()
    edge_of = {(int(lo[i]), int(hi[i])): i for i in keep}
    seg_ids = edges["id"].to_numpy()
    segs = [str(seg_ids[edge_of[(min(u, v), max(u, v))]]) for u, v in zip(path[:-1], path[1:], strict=True)]
    return [str(names[i]) for i in path], segs, float(dist[dst])


def _corridor_edges(conn: sa.Connection, utility: str, status: list[str], a: np.ndarray, b: np.ndarray,
                    string_m: float | None) -> pd.DataFrame:
    params: dict[str, object] = {"u": utility, "status": status}
    where = "utility = :u AND status = ANY(:status)"
    if string_m is not None:
        c = float(np.hypot(*(b - a))) / 2
        semi_minor = math.sqrt(max((string_m / 2) ** 2 - c * c, 0.0))
        params.update(line=shapely.to_wkb(shapely.LineString([a, b])), w=semi_minor + 0.01, srid=twin_srid(conn))
        where += " AND ST_DWithin(geom, ST_SetSRID(ST_GeomFromWKB(:line), :srid), :w)"
    rows = conn.execute(sa.text(f"SELECT id, from_node, to_node, length_m FROM current_segment WHERE {where}"),
                        params).all()
    return pd.DataFrame(rows, columns=["id", "from_node", "to_node", "length_m"])


def longitudinal_profile(
    engine: sa.Engine | sa.Connection,
    from_node: str,
    to_node: str,
    *,
    include: Sequence[str] = ("active", "planned"),
    crs: str = "",
) -> Profile:
    """The profile along the utility of ``from_node`` to ``to_node`` (shortest path by length)."""
    if isinstance(engine, sa.Engine):
        with engine.connect() as conn:
            return longitudinal_profile(conn, from_node, to_node, include=include, crs=crs)
    conn = engine
    ends = _endpoints(conn, from_node, to_node)
    utility = str(ends.at[from_node, "utility"])
    a = ends.loc[from_node, ["x", "y"]].to_numpy(float)
    b = ends.loc[to_node, ["x", "y"]].to_numpy(float)
    straight = float(np.hypot(*(b - a)))
    # the ellipse is fat even for a small excess over the straight distance (semi-minor axis
    # sqrt(e * (2c + e)) / 2 for excess e): start tight, then grow the excess tenfold
    excess = [max(0.02 * straight, 20.0)]
    excess += [excess[0] * 10, max(excess[0] * 100, straight)]
    attempts: list[dict] = []
    found = None
    string_m: float | None = straight + excess[0]
    for attempt in range(len(excess) + 1):
        if attempt == len(excess):
            string_m = None  # the whole utility: a missing path is then certain
        edges = _corridor_edges(conn, utility, list(include), a, b, string_m)
        found = shortest_path(edges, from_node, to_node) if len(edges) else None
        attempts.append({"string_m": None if string_m is None else round(string_m, 1), "segments": len(edges),
                         "path_m": None if found is None else round(found[2], 3)})
        if found is not None and (string_m is None or found[2] <= string_m):
            break
        if attempt + 1 < len(excess):
            # a path found but longer than the string: the ellipse of its own length proves it shortest
            string_m = max(straight + excess[attempt + 1], found[2] if found else 0.0)
    if found is None:
        raise NotFound(f"no path along {utility} between {from_node} and {to_node}", code="NO_PATH",
                       zh=f"{from_node} 与 {to_node} 之间没有沿 {utility} 管线的路径")
    node_ids, seg_ids, _length = found
    # the path's pipes, the pipes touching it and the points on it, in one GiST search
    path_geom = _path_line(conn, seg_ids)
    net = load_network(conn, include=include, near=path_geom, distance_m=0.01)
    if not crs:
        crs = f"EPSG:{twin_srid(conn)}"
    prof = profile_of_network(net, node_ids, seg_ids, crs=crs)
    prof.searched = {"corridor_attempts": attempts}
    return prof


def _path_line(conn: sa.Connection, seg_ids: list[str]) -> shapely.Geometry:
    rows = conn.execute(sa.text("SELECT ST_AsBinary(geom) FROM current_segment WHERE id = ANY(:ids)"),
                        {"ids": seg_ids}).scalars().all()
    return shapely.force_2d(shapely.multilinestrings(shapely.from_wkb(np.asarray(rows, dtype=object))))


# -- the profile ------------------------------------------------------------------------------
def profile_of_network(net: Network, node_ids: Sequence[str], seg_ids: Sequence[str], *, crs: str = "") -> Profile:
    """The profile of an in-memory network along a known path (``len(node_ids) == len(seg_ids) + 1``)."""
    if len(node_ids) != len(seg_ids) + 1 or not seg_ids:
        raise InputError("a profile path has one more point than pipes, and at least one pipe",
                         zh="纵断面路径的管点须比管线多一个，且至少有一条管线")
    segs = net.segments
    idx = net.segment_index(seg_ids)
    node_rows = net.nodes.drop_duplicates("id").set_index("id").reindex(list(node_ids)).to_dict("records")
    records = segs.iloc[idx].to_dict("records")
    hh = net.half_height_m
    utility = str(segs["utility"].iat[idx[0]])
    gravity = utility in GRAVITY_UTILITIES
    ch_all: list[np.ndarray] = []
    z_all: list[np.ndarray] = []
    h_all: list[np.ndarray] = []
    out_segs: list[ProfileSegment] = []
    start = 0.0
    for k, (si, u, v) in enumerate(zip(idx, node_ids[:-1], node_ids[1:], strict=True)):
        row = records[k]
        verts = net.vertices[net.offsets[si]:net.offsets[si + 1]]
        rev = str(row["from_node"]) != u
        if rev:
            verts = verts[::-1]
        if {str(row["from_node"]), str(row["to_node"])} != {u, v}:
            raise InputError(f"pipe {row['id']} does not join {u} and {v}",
                             zh=f"管线 {row['id']} 不连接 {u} 与 {v}")
        plan = np.r_[0.0, np.cumsum(np.hypot(*np.diff(verts[:, :2], axis=0).T))]
        ch = start + plan
        h = float(hh[si])
        ch_all.append(ch if k == 0 else ch[1:])
        z_all.append(verts[:, 2] if k == 0 else verts[1:, 2])
        h_all.append(np.full(len(ch) - (0 if k == 0 else 1), h))
        length = float(plan[-1])
        dz = float(verts[-1, 2] - verts[0, 2])
        slope = dz / length * 1000 if length > 0 else 0.0
        direction = "level" if abs(slope) < 0.05 else ("rises" if slope > 0 else "falls")
        # drainage flows from its stored from_node: its invert must not rise along that direction
        flow_rise = -dz if rev else dz
        out_segs.append(ProfileSegment(
            id=str(row["id"]), from_node=u, to_node=v, reversed=rev, chainage_start_m=start,
            chainage_end_m=start + length, length_m=length, size_text=size_label(row),
            material=None if pd.isna(row["material"]) else str(row["material"]),
            start_top_z=float(verts[0, 2] + h), end_top_z=float(verts[-1, 2] + h),
            start_invert_z=float(verts[0, 2] - h), end_invert_z=float(verts[-1, 2] - h),
            slope_permille=slope, direction=direction, reverse_grade=bool(gravity and flow_rise > 0.005),
        ))
        start += length
    chain = np.concatenate(ch_all)
    cz = np.concatenate(z_all)
    half = np.concatenate(h_all)
    out_nodes = []
    for k, nid in enumerate(node_ids):
        seg = out_segs[min(k, len(out_segs) - 1)]
        at_start = k < len(out_segs)
        top = seg.start_top_z if at_start else seg.end_top_z
        inv = seg.start_invert_z if at_start else seg.end_invert_z
        ch = seg.chainage_start_m if at_start else seg.chainage_end_m
        nrow = node_rows[k]
        gz, x, y = float(nrow["ground_z"]), float(nrow["x"]), float(nrow["y"])
        feat = None if pd.isna(nrow["feature"]) else str(nrow["feature"])
        app = None if pd.isna(nrow["appurtenance"]) else str(nrow["appurtenance"])
        depth = gz - (inv if gravity else top)
        out_nodes.append(ProfileNode(id=str(nid), chainage_m=ch, x=x, y=y, ground_z=gz, top_z=top,
                                     invert_z=inv, depth_m=depth, feature=feat, appurtenance=app))
    crossings = _crossings(net, idx, node_ids, out_segs, chain, cz, half)
    return Profile(utility=utility, nodes=out_nodes, segments=out_segs, crossings=crossings,
                   chainage_m=chain, centre_z=cz, top_z=cz + half, invert_z=cz - half, crs=crs)


def _crossings(net: Network, path_idx: np.ndarray, node_ids: Sequence[str], segs: list[ProfileSegment],
               chain: np.ndarray, cz: np.ndarray, half: np.ndarray) -> list[ProfileCrossing]:
    s = net.segments
    on_path = set(node_ids)
    other = np.ones(len(s), dtype=bool)
    other[path_idx] = False
    # pipes joined to the path at one of its points are branches, not crossings
    other &= ~(s["from_node"].isin(on_path).to_numpy() | s["to_node"].isin(on_path).to_numpy())
    if not other.any():
        return []
    keep = np.flatnonzero(other)
    sub = _subnetwork(net, keep)
    xy = _path_xy(net, path_idx, segs)
    sec = section_of_network(sub, xy, ground=lambda p: np.full(len(np.atleast_2d(p)), np.nan))
    starts = np.array([g.chainage_start_m for g in segs])
    out = []
    for p in sec.pipes:
        k = int(np.clip(np.searchsorted(starts, p.offset_m, side="right") - 1, 0, len(segs) - 1))
        z = float(np.interp(p.offset_m, chain, cz))
        h = float(np.interp(p.offset_m, chain, half))
        out.append(_crossing(p, segs[k].id, z + h, z - h))
    return out


def _crossing(p: SectionPipe, seg_id: str, top: float, bottom: float) -> ProfileCrossing:
    above = p.centre_z >= (top + bottom) / 2
    clear = p.bottom_z - top if above else bottom - p.top_z
    return ProfileCrossing(id=p.id, utility=p.utility, subtype=p.subtype, size_text=p.size_text,
                           chainage_m=p.offset_m, x=p.x, y=p.y, centre_z=p.centre_z, top_z=p.top_z,
                           bottom_z=p.bottom_z, path_segment=seg_id, path_top_z=top, path_bottom_z=bottom,
                           position="above" if above else "below", vertical_clear_m=clear)


def _path_xy(net: Network, path_idx: np.ndarray, segs: list[ProfileSegment]) -> np.ndarray:
    parts = []
    for k, (si, g) in enumerate(zip(path_idx, segs, strict=True)):
        v = net.vertices[net.offsets[si]:net.offsets[si + 1], :2]
        v = v[::-1] if g.reversed else v
        parts.append(v if k == 0 else v[1:])
    return np.concatenate(parts)


def _subnetwork(net: Network, keep: np.ndarray) -> Network:
    counts = np.diff(net.offsets)[keep]
    offsets = np.zeros(len(keep) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    take = np.concatenate([np.arange(net.offsets[i], net.offsets[i + 1]) for i in keep])
    return Network(net.segments.iloc[keep].reset_index(drop=True), net.nodes, net.node_xyz,
                   net.vertices[take], offsets)


# -- the drawing ------------------------------------------------------------------------------
def profile_svg(prof: Profile, *, width_px: float = 1200.0, plot_height_px: float = 260.0,
                title: str = "Longitudinal profile 纵断面") -> str:
    """An SVG profile: ground, pipe top and invert, crossings, and a table of points and pipes.

    The vertical scale is exaggerated (stated in the title and the title block); the root
    element carries ``data-px-per-m-h``, ``data-px-per-m-v``, ``data-origin-x``,
    ``data-origin-y`` and ``data-origin-z``.
    """
    length = max(prof.length_m, 1e-3)
    left, top = 120.0, 50.0
    kx = width_px / length
    n_h = _round_scale(1000.0 / kx * svg.PX_PER_MM)
    kx = 1000.0 / n_h * svg.PX_PER_MM
    zs = np.r_[prof.top_z, prof.invert_z, [n.ground_z for n in prof.nodes if math.isfinite(n.ground_z)],
               [c.top_z for c in prof.crossings], [c.bottom_z for c in prof.crossings]]
    zmin, zmax = float(np.nanmin(zs)) - 0.5, float(np.nanmax(zs)) + 0.5
    n_v = _round_scale((zmax - zmin) * 1000 / plot_height_px * svg.PX_PER_MM, up=True)
    ky = 1000.0 / n_v * svg.PX_PER_MM
    plot_w, plot_h = length * kx, (zmax - zmin) * ky
    ox, oy, oz = left, top + plot_h, zmin
    X = lambda c: ox + np.asarray(c) * kx  # noqa: E731
    Y = lambda z: oy - (np.asarray(z) - oz) * ky  # noqa: E731
    body = [svg.text(left, 24, f"{title}  ·  {prof.utility}  {prof.nodes[0].id} → {prof.nodes[-1].id}  ·  "
                     f"H 1:{n_h}, V 1:{n_v} (vertical ×{n_h / n_v:g})", class_="title")]
    body.append(svg.elevation_grid(ox, plot_w, zmin, zmax, Y))
    body.append(svg.el("rect", x=ox, y=top, width=plot_w, height=plot_h, fill="none", stroke="#999",
                       stroke_width=0.5))
    g = [(n.chainage_m, n.ground_z) for n in prof.nodes if math.isfinite(n.ground_z)]
    if len(g) >= 2:
        body.append(svg.polyline([(float(X(c)), float(Y(zz))) for c, zz in g], class_="ground", data_kind="ground"))
    body += _pipe_lines(prof, X, Y)
    body.append(_crossing_marks(prof.crossings, X, Y, kx, ky))
    table, bottom = _profile_table(prof, X, ox, top, oy + 20, plot_w)
    body.append(table)
    bottom += 20
    body.append(svg.scale_bar(ox, bottom + 14, kx))
    rows_tb = [
        ("utility", f"{prof.utility}; {len(prof.segments)} pipes, {len(prof.nodes)} points"),
        ("from → to", f"{prof.nodes[0].id} → {prof.nodes[-1].id}, {length:.2f} m"),
        ("scale", f"H 1:{n_h}, V 1:{n_v} (vertical exaggeration ×{n_h / n_v:g})"),
        ("crossings", f"{len(prof.crossings)} pipes cross the path"),
        ("CRS", prof.crs or "twin CRS"),
        ("date", prof.created_at[:19].replace("T", " ")),
    ]
    tb_w = 400.0
    total_w = max(ox + plot_w + 20, ox + 200 + tb_w + 20)
    tb, tb_h = svg.title_block(total_w - tb_w - 20, bottom, tb_w, rows_tb, title=title)
    body.append(tb)
    return svg.document(total_w, bottom + tb_h + 20, body, title=title, data_px_per_m_h=f"{kx:.10g}",
                        data_px_per_m_v=f"{ky:.10g}", data_origin_x=f"{ox:.10g}", data_origin_y=f"{oy:.10g}",
                        data_origin_z=f"{oz:.10g}", data_scale=f"H 1:{n_h} V 1:{n_v}")


def _pipe_lines(prof: Profile, X: Callable[[object], np.ndarray], Y: Callable[[object], np.ndarray]) -> list[str]:
    """The profiled pipe: a band between its top and invert, and the two lines."""
    colour = svg.utility_colour(prof.utility)
    top = [(float(X(c)), float(Y(zz))) for c, zz in zip(prof.chainage_m, prof.top_z, strict=True)]
    band = top + [(float(X(c)), float(Y(zz)))
                  for c, zz in zip(prof.chainage_m[::-1], prof.invert_z[::-1], strict=True)]
    return [
        svg.el("polygon", points=" ".join(f"{svg.fmt(x)},{svg.fmt(y)}" for x, y in band), fill=colour,
               fill_opacity=0.35, stroke="none", class_="pipe-band"),
        svg.polyline(top, fill="none", stroke=colour, stroke_width=1.4, class_="pipe-top", data_kind="top"),
        svg.polyline([(float(X(c)), float(Y(zz))) for c, zz in zip(prof.chainage_m, prof.invert_z, strict=True)],
                     fill="none", stroke="#000", stroke_width=0.9, class_="pipe-invert", data_kind="invert"),
    ]


def _crossing_marks(crossings: list[ProfileCrossing], X: Callable[[object], np.ndarray],
                    Y: Callable[[object], np.ndarray], kx: float, ky: float) -> str:
    """Each crossing pipe as an ellipse, labelled with its clearance where there is room."""
    cross = []
    last_label = -1e9
    for c in crossings:
        cx, cy = float(X(c.chainage_m)), float(Y(c.centre_z))
        ry = max((c.top_z - c.bottom_z) / 2 * ky, 1.5)
        cross.append(svg.el("ellipse", cx=cx, cy=cy, rx=max(ry * kx / ky, 2.0), ry=ry,
                            fill=svg.utility_colour(c.subtype or c.utility), stroke="#000", stroke_width=0.5,
                            class_="crossing", data_id=c.id))
        if cx - last_label < 9:
            continue
        last_label = cx
        cross.append(svg.text(cx + 3, cy - ry - 3, f"{c.utility} {c.size_text} {c.vertical_clear_m:+.2f}",
                              class_="small", transform=f"rotate(-60 {svg.fmt(cx + 3)} {svg.fmt(cy - ry - 3)})"))
    return svg.el("g", "".join(cross), class_="crossings")


def _profile_table(prof: Profile, X: Callable[[object], np.ndarray], ox: float, top: float, ty: float,
                   plot_w: float) -> tuple[str, float]:
    """The table under the plot from ``ty``: per point and per pipe; returns it and its bottom y."""
    rows = (("point", 70.0), ("chainage (m)", 50.0), ("ground (m)", 50.0), ("top (m)", 50.0),
            ("invert (m)", 50.0), ("depth (m)", 42.0), ("pipe · slope ‰", 80.0))
    table, _ = svg.table_frame(ox, ty, plot_w, rows, label_dy=3)
    min_gap = 11.0  # px: closer points are drawn but not labelled, to stay legible
    last_x = -1e9
    for n in prof.nodes:
        x = float(X(n.chainage_m))
        table.append(svg.el("line", x1=x, y1=top, x2=x, y2=ty, stroke="#ccc", stroke_width=0.5))
        if x - last_x < min_gap and n is not prof.nodes[-1]:
            continue
        last_x = x
        cells = (n.id, f"{n.chainage_m:.2f}", f"{n.ground_z:.2f}", f"{n.top_z:.2f}", f"{n.invert_z:.2f}",
                 f"{n.depth_m:.2f}")
        yy = ty
        for (_name, h), cell in zip(rows[:-1], cells, strict=True):
            table.append(svg.text(x + 3, yy + h - 3, cell, class_="small label", data_id=n.id,
                                  transform=f"rotate(-90 {svg.fmt(x + 3)} {svg.fmt(yy + h - 3)})"))
            yy += h
    yy = ty + sum(h for _n, h in rows[:-1])
    last_x = -1e9
    for s in prof.segments:
        x1, x2 = float(X(s.chainage_start_m)), float(X(s.chainage_end_m))
        xm = (x1 + x2) / 2
        if xm - last_x < min_gap:
            continue
        last_x = xm
        arrow = {"rises": "↗", "falls": "↘", "level": "→"}[s.direction]
        label = f"{s.size_text} {arrow}{abs(s.slope_permille):.2f}" + (" ⚠" if s.reverse_grade else "")
        table.append(svg.text(xm + 3, yy + 76, label, class_="small slope", data_id=s.id,
                              transform=f"rotate(-90 {svg.fmt(xm + 3)} {svg.fmt(yy + 76)})"))
    return svg.el("g", "".join(table), class_="profile-table"), ty + sum(h for _n, h in rows)


def _round_scale(n: float, up: bool = True) -> int:
    """The next round map scale (1, 2, 2.5, 5 x 10^k) at or above ``n``."""
    n = max(n, 1.0)
    k = 10 ** math.floor(math.log10(n))
    for m in (1, 2, 2.5, 5, 10):
        if m * k >= n - 1e-9:
            return int(round(m * k))
    return int(10 * k)
