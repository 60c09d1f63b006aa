"""3D pictures rendered on the server with pyvista, off-screen (VTK through OSMesa/EGL: no GPU,
no display): a finding's two pipes and their surroundings, a shutoff's valves and isolated
pipes, a dig site with every utility within reach. Pipes are shaped by the 3D Tiles' own mesh
code (:mod:`tiles.mesh`), so a pipe looks the same in the viewer and on paper.

- :class:`Camera`: where the picture was taken from, in the twin's CRS (easting, northing,
  height; BCF viewpoints are written from it).
- :class:`Picture`: the PNG bytes, its size, the camera, the labels drawn, and
  :meth:`Picture.project` giving the pixel of a twin-CRS point (VTK's own pinhole: the view
  angle is the vertical field of view; tests check pipes' pixels lie where the camera puts them).
- :class:`ExtraPipe`: a pipe that is not in the twin (a proposal); :func:`proposal_extras`
  makes them from a read proposal.
- :func:`finding_picture`, :func:`shutoff_picture`, :func:`site_picture`.

How a picture is made: the pipes around the place are read through the GiST index
(:func:`analysis.network.load_network` with ``near``), clipped in plan to the square of the
picture (vectorised Liang-Barsky, so a 70 m pipe crossing a 10 m dig site is drawn where it
is), swept at true size by :func:`tiles.mesh.sweep` around their centrelines and coloured
per vertex in the CJJ 61 utility colours; the ground is the inverse-distance surface of the
survey points' ground heights (:func:`analysis.section.idw_ground`), translucent. Labels are
2D text placed at the pixels :meth:`Picture.project` gives (:func:`label_font`: Noto Sans CJK,
else :func:`documents.fonts.cjk_font`), moved apart when they would overlap. Everything is
drawn in a frame shifted to the picture's centre (float precision); the camera is kept in the
twin's CRS. pyvista makes the window; the actors are plain VTK (faster to set up).

One off-screen window per process is kept between pictures (a new one compiles its shaders
again) and used under one lock, since VTK is not thread-safe: ``twin serve``'s job threads
take turns; a forked child makes its own window.
"""

from __future__ import annotations

import io
import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyvista as pv
import shapely
import sqlalchemy as sa
from PIL import Image
from vtkmodules.util.numpy_support import vtk_to_numpy
from vtkmodules.vtkCommonCore import VTK_FONT_FILE, vtkUnsignedCharArray
from vtkmodules.vtkRenderingCore import (
    vtkActor,
    vtkActor2D,
    vtkPolyDataMapper,
    vtkPolyDataMapper2D,
    vtkTextActor,
)

from analysis.network import Network, load_network
from analysis.pieces import segment_closest_points
from analysis.section import ground_points, idw_ground
from documents.fonts import cjk_font
from tiles.mesh import (
    OCTAHEDRON,
    Mesh,
    circle_profile,
    concat,
    instances,
    rect_profile,
    sides_for_diameter,
    sweep,
)
from twin.domain import UTILITIES
from twin.errors import InputError

__all__ = [
    "Camera",
    "Picture",
    "ExtraPipe",
    "finding_picture",
    "shutoff_picture",
    "site_picture",
    "proposal_extras",
    "place_camera",
    "label_font",
    "KIND_LABELS",
    "VIEW_ANGLE_DEG",
    "FINDING_ELEVATION_DEG",
    "FINDING_VIEW_HALF_M",
]

#: Vertical field of view of every picture (degrees).
VIEW_ANGLE_DEG = 30.0
#: Height of the view above the horizontal (degrees): oblique enough to show vertical gaps.
FINDING_ELEVATION_DEG = 28.0
SITE_ELEVATION_DEG = 40.0
SHUTOFF_ELEVATION_DEG = 55.0
#: Half the side of the square a finding's picture frames around its place (m), at most.
FINDING_VIEW_HALF_M = 3.0
#: Ground heights are gathered this far around the picture's square (m).
GROUND_MARGIN_M = 30.0
#: Ground surface grid (cells per side) and look.
GROUND_CELLS = 24
GROUND_RGB = (150, 125, 95)
GROUND_OPACITY = 0.28
BACKGROUND_RGB = (246, 247, 249)
#: Pipes around the subject: their colour mixed this much towards light grey.
DIM_MIX = 0.65
DIM_GREY = (205, 205, 205)
BURST_RGB = (230, 0, 0)
VALVE_RGB = (255, 205, 0)
FAILED_VALVE_RGB = (70, 70, 70)
DIMENSION_RGB = (20, 20, 20)
#: Pipes thinner than this on screen (px) are drawn as centre lines too.
MIN_PIPE_PX = 3.0
#: Finding kinds in Chinese and English (proposal and whole-network findings alike).
KIND_LABELS = {
    "collision": "碰撞 collision",
    "hard": "碰撞 collision",
    "duplicate": "重复 duplicate",
    "clearance_vertical": "垂直净距 vertical clearance",
    "vertical": "垂直净距 vertical clearance",
    "clearance_horizontal": "水平净距 horizontal clearance",
    "horizontal": "水平净距 horizontal clearance",
    "cover": "覆土 cover",
    "no_rule": "无规则 no rule",
    "clearance": "净距 clearance",
}

#: Label fonts, best first: VTK draws a label in one font, so it needs Latin and CJK glyphs
#: both (Noto Sans CJK has them; the Droid fallback has CJK only, its Latin comes out blank).
LABEL_FONTS = (Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),)

_LOCK = threading.Lock()
_PROFILES = {s: circle_profile(s) for s in (8, 12, 16)}
_RECT = rect_profile()


@dataclass(frozen=True)
class Camera:
    """A perspective camera in the twin's CRS (x = easting, y = northing, z = height, metres)."""

    position: tuple[float, float, float]
    focal_point: tuple[float, float, float]
    up: tuple[float, float, float]
    view_angle_deg: float  # vertical field of view

    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(right, true up, forward) unit vectors; the up is made square to the view as VTK does."""
        f = np.subtract(self.focal_point, self.position).astype(float)
        f /= np.linalg.norm(f)
        r = np.cross(f, np.asarray(self.up, float))
        r /= np.linalg.norm(r)
        return r, np.cross(r, f), f


@dataclass
class Picture:
    """A rendered PNG and how it was taken.

    ``labels`` lists the text drawn: ``{"text", "xyz" (twin CRS), "kind", "px" (column, row of
    the label's anchor)}``; kinds are ``pipe``, ``subject`` (the finding's or burst's pipes),
    ``valve`` (numbered in closing order), ``dimension``.
    """

    png: bytes
    width: int
    height: int
    camera: Camera
    title: str = ""
    labels: list[dict] = field(default_factory=list)

    def project(self, xyz: np.ndarray) -> np.ndarray:
        """Pixel (column, row from the top-left) of each twin-CRS point ``(n, 3)``.

        VTK's pinhole: the view angle is the vertical field of view, the aspect the picture's;
        points behind the camera come out as NaN.

        >>> cam = Camera((0.0, -10.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 1.0), 90.0)
        >>> points = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 5.0]])
        >>> Picture(b"", 640, 480, cam).project(points).round(6).tolist()
        [[320.0, 240.0], [320.0, 120.0]]
        """
        return _project(self.camera, self.width, self.height, xyz)


@dataclass
class ExtraPipe:
    """A pipe not in the twin (a proposal): its centreline with heights of the centre, in the
    twin's CRS, and its size (a circle of ``diameter_mm`` or a ``width_mm`` x ``height_mm`` box)."""

    id: str
    utility: str
    coords: np.ndarray  # (n, 3)
    diameter_mm: float | None = None
    width_mm: float | None = None
    height_mm: float | None = None
    label: str = ""
    attrs: dict = field(default_factory=dict)


def _project(camera: Camera, width: int, height: int, xyz: np.ndarray) -> np.ndarray:
    p = np.atleast_2d(np.asarray(xyz, dtype=float))
    r, u, f = camera.axes()
    d = p - np.asarray(camera.position, float)
    zc = d @ f
    t = math.tan(math.radians(camera.view_angle_deg) / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        ndc_x = (d @ r) / (zc * t * width / height)
        ndc_y = (d @ u) / (zc * t)
    px = np.column_stack([(ndc_x + 1) / 2 * width, (1 - ndc_y) / 2 * height])
    px[zc <= 0] = np.nan
    return px


# -- pipes as arrays ---------------------------------------------------------------------------
@dataclass
class _Pipes:
    """Pipes to draw: one row each; centreline ``vertices[offsets[i]:offsets[i + 1]]``."""

    ids: np.ndarray
    utility: np.ndarray
    circular: np.ndarray
    half: np.ndarray  # (k, 2): half width, half height (m)
    size: np.ndarray
    depth_m: np.ndarray
    proposed: np.ndarray
    vertices: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def index(self, ids: Sequence[str]) -> np.ndarray:
        """Positions of ``ids`` present (in the order given), unknown ones left out."""
        pos = pd.Index(self.ids).get_indexer(list(ids))
        return pos[pos >= 0]


def _size_text(circular: np.ndarray, d: np.ndarray, w: np.ndarray, h: np.ndarray) -> np.ndarray:
    def fmt(v: np.ndarray) -> np.ndarray:
        return np.array([f"{x:g}" if np.isfinite(x) else "?" for x in v], dtype=object)

    return np.where(circular, "DN" + fmt(d), fmt(w) + "X" + fmt(h))


def _pipes_of(net: Network) -> _Pipes:
    s = net.segments
    circ = s["shape"].to_numpy() == "circular"
    d, w, h = (s[c].to_numpy(float) for c in ("diameter_mm", "width_mm", "height_mm"))
    given = s["size_text"].fillna("").astype(str).to_numpy(object)
    size = np.where(given != "", given, _size_text(circ, d, w, h))
    ends = np.column_stack([s["from_depth_m"].to_numpy(float), s["to_depth_m"].to_numpy(float)])
    known = np.isfinite(ends).sum(axis=1)
    depth = np.where(known > 0, np.nansum(ends, axis=1) / np.maximum(known, 1), np.nan)
    half = np.column_stack([net.half_width_m, net.half_height_m]) if len(s) else np.zeros((0, 2))
    return _Pipes(
        s["id"].astype(str).to_numpy(object),
        s["utility"].astype(str).to_numpy(object),
        circ,
        np.nan_to_num(half, nan=0.05),
        size,
        depth,
        s["status"].to_numpy() == "proposed",
        net.vertices,
        net.offsets,
    )


def _pipes_of_extra(extra: Sequence[ExtraPipe], ground: object) -> _Pipes:
    coords = [np.asarray(e.coords, dtype=float).reshape(-1, 3) for e in extra]
    for e, c in zip(extra, coords, strict=True):
        if len(c) < 2 or not np.isfinite(c).all():
            raise InputError(f"pipe {e.id!r} to draw needs two or more finite (x, y, z) vertices",
                             zh=f"要绘制的管线 {e.id!r} 需要两个或更多有限的 (x, y, z) 顶点")
    if not extra:
        return _Pipes(
            *(np.zeros(0, object) for _ in range(2)),
            np.zeros(0, bool),
            np.zeros((0, 2)),
            np.zeros(0, object),
            np.zeros(0),
            np.zeros(0, bool),
            np.zeros((0, 3)),
            np.zeros(1, np.int64),
        )
    circ = np.array([e.diameter_mm is not None for e in extra])
    d = np.array([e.diameter_mm if e.diameter_mm is not None else np.nan for e in extra], float)
    w = np.array([e.width_mm if e.width_mm is not None else np.nan for e in extra], float)
    h = np.array([e.height_mm if e.height_mm is not None else np.nan for e in extra], float)
    half = np.where(circ[:, None], np.column_stack([d, d]), np.column_stack([w, h])) / 2000.0
    half = np.nan_to_num(half, nan=0.05)
    # depth to the top at the middle vertex, under the survey ground there
    mid = np.array([c[len(c) // 2] for c in coords])
    depth = ground(mid[:, :2]) - (mid[:, 2] + half[:, 1])
    given = np.array([e.attrs.get("depth_m", np.nan) for e in extra], float)
    offsets = np.concatenate([[0], np.cumsum([len(c) for c in coords])]).astype(np.int64)
    return _Pipes(
        np.array([e.id for e in extra], object),
        np.array([e.utility for e in extra], object),
        circ,
        half,
        _size_text(circ, d, w, h),
        np.where(np.isfinite(given), given, depth),
        np.ones(len(extra), bool),
        np.vstack(coords),
        offsets,
    )


def _join(a: _Pipes, b: _Pipes) -> _Pipes:
    if not len(b):
        return a
    return _Pipes(
        *(
            np.concatenate([getattr(a, f), getattr(b, f)])
            for f in (
                "ids",
                "utility",
                "circular",
                "half",
                "size",
                "depth_m",
                "proposed",
                "vertices",
            )
        ),
        np.concatenate([a.offsets[:-1], b.offsets + a.offsets[-1]]),
    )


def proposal_extras(proposal: Network) -> list[ExtraPipe]:
    """The pipes of a read proposal (:func:`analysis.proposal_input.read_proposal`) as extras."""
    p = _pipes_of(proposal)
    return [
        ExtraPipe(
            str(p.ids[i]),
            str(p.utility[i]),
            p.vertices[p.offsets[i] : p.offsets[i + 1]],
            diameter_mm=p.half[i, 0] * 2000 if p.circular[i] else None,
            width_mm=None if p.circular[i] else p.half[i, 0] * 2000,
            height_mm=None if p.circular[i] else p.half[i, 1] * 2000,
            attrs={"depth_m": float(p.depth_m[i])} if np.isfinite(p.depth_m[i]) else {},
        )
        for i in range(len(p))
    ]


def _pieces(p: _Pipes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pipe index, start, end) of every straight piece."""
    n_vert = np.diff(p.offsets)
    seg = np.repeat(np.arange(len(n_vert)), np.maximum(n_vert - 1, 0))
    last = np.zeros(len(p.vertices), bool)
    last[p.offsets[1:] - 1] = True
    starts = np.flatnonzero(~last)
    return seg, p.vertices[starts], p.vertices[starts + 1]


def _clip(p: _Pipes, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The centrelines cut to the plan box ``lo``-``hi`` (Liang-Barsky on every piece at once).

    Returns polylines as ``(points, starts, pipe of each polyline)``: a pipe leaving the box
    and coming back is two polylines.
    """
    seg, a, b = _pieces(p)
    d = b - a
    t0, t1 = np.zeros(len(a)), np.ones(len(a))
    ok = np.ones(len(a), bool)
    for axis in (0, 1):
        for pp, qq in ((-d[:, axis], a[:, axis] - lo[axis]), (d[:, axis], hi[axis] - a[:, axis])):
            flat = np.abs(pp) < 1e-12
            ok &= ~(flat & (qq < 0))
            with np.errstate(divide="ignore", invalid="ignore"):
                r = np.where(flat, 0.0, qq / np.where(flat, 1.0, pp))
            t0 = np.where(~flat & (pp < 0), np.maximum(t0, r), t0)
            t1 = np.where(~flat & (pp > 0), np.minimum(t1, r), t1)
    k = np.flatnonzero(ok & (t1 - t0 > 1e-9))
    if not len(k):
        return np.zeros((0, 3)), np.zeros(1, np.int64), np.zeros(0, np.int64)
    pa, pb = a[k] + d[k] * t0[k, None], a[k] + d[k] * t1[k, None]
    new_run = np.ones(len(k), bool)
    new_run[1:] = ~(
        (k[1:] == k[:-1] + 1) & (seg[k[1:]] == seg[k[:-1]]) & (t1[k[:-1]] >= 1) & (t0[k[1:]] <= 0)
    )
    is_last = np.append(new_run[1:], True)
    n_out = 1 + is_last
    idx = np.repeat(np.arange(len(k)), n_out)
    first_out = np.cumsum(n_out) - n_out
    second = (np.arange(len(idx)) - first_out[idx]) == 1
    points = np.where(second[:, None], pb[idx], pa[idx])
    starts = np.append(first_out[new_run], len(points)).astype(np.int64)
    return points, starts, seg[k][new_run]


def _pipe_mesh(p: _Pipes, points: np.ndarray, starts: np.ndarray, line_pipe: np.ndarray) -> Mesh:
    """Sweep the clipped polylines at true size; vertices carry their pipe's index."""
    sides = np.where(p.circular, sides_for_diameter(p.half[:, 0] * 2000), 0)[line_pipe]
    per_line = np.diff(starts)
    line_of_point = np.repeat(np.arange(len(line_pipe)), per_line)
    meshes = []
    for s in np.unique(sides):
        rows = np.flatnonzero(sides == s)
        pts = points[(sides == s)[line_of_point]]
        st = np.concatenate([[0], np.cumsum(per_line[rows])])
        mesh, _ = sweep(
            pts,
            st,
            _RECT if s == 0 else _PROFILES[int(s)],
            p.half[line_pipe[rows]],
            feature=line_pipe[rows],
        )
        meshes.append(mesh)
    return concat(meshes)


def _polydata(mesh: Mesh, origin: np.ndarray, rgb: np.ndarray | None = None) -> pv.PolyData:
    faces = np.column_stack(
        [np.full(len(mesh.indices), 3, np.int64), mesh.indices.astype(np.int64)]
    )
    poly = pv.PolyData(mesh.positions - origin, faces.ravel())
    poly.point_data["Normals"] = mesh.normals
    poly.point_data.active_normals_name = "Normals"
    if rgb is not None:
        poly.point_data["rgb"] = rgb.astype(np.uint8)
    return poly


def _rgb(utility: str) -> np.ndarray:
    u = UTILITIES.get(utility) or UTILITIES["QT"]
    return np.asarray(u.rgb, float)


def _dim(rgb: np.ndarray) -> np.ndarray:
    return rgb * (1 - DIM_MIX) + np.asarray(DIM_GREY, float) * DIM_MIX


def _label_text(p: _Pipes, i: int) -> str:
    u = UTILITIES.get(str(p.utility[i]))
    name = u.name_zh if u else str(p.utility[i])
    depth = f" 埋深{p.depth_m[i]:.2f}m" if np.isfinite(p.depth_m[i]) else ""
    mark = "拟建 " if p.proposed[i] else ""
    return f"{mark}{name} {p.size[i]}{depth}\n{p.ids[i]}"


# -- the scene ---------------------------------------------------------------------------------
@dataclass
class _Scene:
    """What one picture draws, in the twin CRS, before the camera and VTK."""

    origin: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    pipes: _Pipes
    pipe_rgb: np.ndarray  # (k, 3) per pipe
    clipped: tuple[np.ndarray, np.ndarray, np.ndarray]
    ground: object
    labels: list[dict] = field(default_factory=list)
    extra_meshes: list[tuple[Mesh, tuple[int, int, int]]] = field(default_factory=list)
    lines: list[tuple[np.ndarray, tuple[int, int, int], float]] = field(default_factory=list)
    legend: str = ""


def _read_area(
    engine: sa.Engine, area: shapely.Geometry, margin_m: float
) -> tuple[Network, object]:
    """The live and planned pipes within ``margin_m`` of ``area`` and the ground around it."""
    with engine.connect() as conn:
        net = load_network(conn, near=area, distance_m=margin_m)
        pts = ground_points(conn, area, margin_m + GROUND_MARGIN_M)
    return net, idw_ground(pts)


def _scene(
    pipes: _Pipes, ground: object, lo: np.ndarray, hi: np.ndarray, pipe_rgb: np.ndarray
) -> _Scene:
    clipped = _clip(pipes, lo, hi)
    zs = clipped[0][:, 2] if len(clipped[0]) else np.zeros(1)
    origin = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, float(np.median(zs))])
    g = ground
    if not np.isfinite(
        g(origin[None, :2])
    ).all():  # no survey points: a level ground above the pipes
        top = float(np.max(zs)) + 1.2

        def g(xy: np.ndarray) -> np.ndarray:
            return np.full(len(np.atleast_2d(xy)), top)

    return _Scene(origin, lo, hi, pipes, pipe_rgb, clipped, g)


def _z_range(scene: _Scene) -> tuple[float, float]:
    """Lowest pipe bottom and highest ground of the scene (m)."""
    pts = scene.clipped[0]
    low = float(np.min(pts[:, 2]) - 1.0) if len(pts) else scene.origin[2] - 1.0
    corners = np.array([scene.lo, scene.hi, [scene.lo[0], scene.hi[1]], [scene.hi[0], scene.lo[1]]])
    return low, float(np.max(scene.ground(corners)))


def _ground_poly(scene: _Scene) -> pv.PolyData:
    """The ground over the picture's square: a grid of quads at the surveyed ground heights."""
    n = GROUND_CELLS + 1
    xs = np.linspace(scene.lo[0], scene.hi[0], n)
    ys = np.linspace(scene.lo[1], scene.hi[1], n)
    gx, gy = np.meshgrid(xs, ys)
    xy = np.column_stack([gx.ravel(), gy.ravel()])
    pts = np.column_stack([xy, scene.ground(xy)]) - scene.origin
    corner = (np.arange(n - 1)[:, None] * n + np.arange(n - 1)[None, :]).ravel()
    quads = np.column_stack(
        [np.full(len(corner), 4), corner, corner + 1, corner + n + 1, corner + n]
    )
    return pv.PolyData(pts, quads.ravel())


def _anchor(
    scene: _Scene, i: int, fraction: float, camera: Camera, size: tuple[int, int]
) -> np.ndarray | None:
    """A point of pipe ``i``'s clipped centreline that shows in the picture: of the points along
    it that project inside the frame (a margin kept), the one at ``fraction`` of them."""
    points, starts, line_pipe = scene.clipped
    lines = np.flatnonzero(line_pipe == i)
    if not len(lines):
        return None
    samples = []
    for j in lines:  # a pipe has one or two parts in the picture
        pts = points[starts[j] : starts[j + 1]]
        chain = np.concatenate([[0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
        at = np.linspace(0, chain[-1], 41)
        samples.append(np.column_stack([np.interp(at, chain, pts[:, c]) for c in range(3)]))
    xyz = np.vstack(samples)
    px = _project(camera, *size, xyz)
    margin = 0.08 * np.asarray(size, float)
    inside = np.flatnonzero(np.all((px >= margin) & (px <= np.asarray(size) - margin), axis=1))
    if not len(inside):
        return None
    return xyz[inside[min(int(fraction * len(inside)), len(inside) - 1)]]


def _label_pipes(
    scene: _Scene,
    rows: Sequence[int],
    kind: str,
    fractions: Sequence[float],
    camera: Camera,
    size: tuple[int, int],
) -> None:
    for n, i in enumerate(rows):
        xyz = _anchor(scene, int(i), fractions[n % len(fractions)], camera, size)
        if xyz is not None:
            scene.labels.append(
                {
                    "text": _label_text(scene.pipes, int(i)),
                    "xyz": xyz,
                    "kind": kind,
                    "id": str(scene.pipes.ids[i]),
                }
            )


def _look_at(
    focal: np.ndarray,
    azimuth: np.ndarray,
    elevation_deg: float,
    frame: np.ndarray,
    size: tuple[int, int],
    fill: float = 0.92,
) -> Camera:
    """A camera looking at ``focal`` along the plan direction ``azimuth``, down at
    ``elevation_deg``, just far enough for every point of ``frame`` ``(n, 3)`` to show (within
    ``fill`` of the picture's half width and height)."""
    h = np.asarray(azimuth, float)[:2]
    h = h / np.linalg.norm(h)
    el = math.radians(elevation_deg)
    f = np.array([h[0] * math.cos(el), h[1] * math.cos(el), -math.sin(el)])
    r = np.cross(f, [0.0, 0.0, 1.0])
    r /= np.linalg.norm(r)
    u = np.cross(r, f)
    q = np.atleast_2d(frame) - focal
    t = math.tan(math.radians(VIEW_ANGLE_DEG) / 2) * fill
    # a point shows when |x| <= depth * t * aspect and |y| <= depth * t, depth = q.f + distance
    need = np.maximum(np.abs(q @ r) / (t * size[0] / size[1]), np.abs(q @ u) / t) - q @ f
    dist = max(float(need.max()), 1.0)
    pos = np.asarray(focal, float) - f * dist
    return Camera(tuple(map(float, pos)), tuple(map(float, focal)), (0.0, 0.0, 1.0), VIEW_ANGLE_DEG)


def place_camera(
    x: float,
    y: float,
    z: float,
    *,
    size: tuple[int, int] = (1280, 960),
    half_m: float = FINDING_VIEW_HALF_M,
) -> Camera:
    """The camera of a finding's picture when only its place is known (no pipes read): from the
    south, :data:`FINDING_ELEVATION_DEG` down, framing ``half_m`` around (x, y, z)."""
    focal = np.array([x, y, z], dtype=float)
    return _look_at(
        focal,
        np.array([0.0, 1.0]),
        FINDING_ELEVATION_DEG,
        _box_corners(focal[:2] - half_m, focal[:2] + half_m, z - 1, z + 1),
        _check_size(size),
    )


def _box_corners(lo: np.ndarray, hi: np.ndarray, z_lo: float, z_hi: float) -> np.ndarray:
    """The eight corners of a plan box between two heights."""
    return np.array(
        [[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (z_lo, z_hi)]
    )


# -- labels and overlays -----------------------------------------------------------------------
@cache
def label_font() -> str:
    """The font file labels are drawn with: Noto Sans CJK, or the documents' CJK font."""
    return str(next((p for p in LABEL_FONTS if p.is_file()), None) or cjk_font())


def _text_box(text: str, font_px: float) -> tuple[float, float]:
    """Width and height (px) a label will take, estimated (CJK glyphs square, others narrow)."""
    lines = text.split("\n")
    width = max(
        sum(font_px if ord(ch) > 0x2E80 else font_px * 0.6 for ch in line) for line in lines
    )
    return width + 8, len(lines) * font_px * 1.3 + 6


_PRIORITY = {"valve": 0, "dimension": 1, "subject": 2, "pipe": 3}


def _place_labels(
    labels: list[dict], camera: Camera, size: tuple[int, int], font_px: float
) -> list[dict]:
    """Give each label a box near its anchor's pixel that overlaps no box placed before it
    (valves, then the dimension, then the subject pipes, then the others; others that find no
    room are left out)."""
    width, height = size
    if not labels:
        return []
    px = _project(camera, width, height, np.array([lb["xyz"] for lb in labels]))
    placed: list[dict] = []
    boxes: list[tuple[float, float, float, float]] = []
    for n in sorted(range(len(labels)), key=lambda k: _PRIORITY.get(labels[k]["kind"], 9)):
        lb, (cx, cy) = labels[n], px[n]
        if not (np.isfinite(cx) and 0 <= cx < width and 0 <= cy < height):
            continue
        fs = font_px * (1.4 if lb["kind"] == "valve" else 1.0)
        w, h = _text_box(lb["text"], fs)
        lift = 0.0 if lb["kind"] == "dimension" else h / 2 + 8
        side = w / 2 + 14 if lb["kind"] == "dimension" else 0.0  # beside the dimension line
        box = None
        for dy in (-lift, -lift - h - 4, lift, lift + h + 4, -lift - 2 * h - 8, lift + 2 * h + 8):
            x0 = min(max(cx + side - w / 2, 2), width - w - 2)
            y0 = min(max(cy + dy - h / 2, 2), height - h - 2)
            cand = (x0, y0, x0 + w, y0 + h)
            if not any(
                cand[0] < b[2] and b[0] < cand[2] and cand[1] < b[3] and b[1] < cand[3]
                for b in boxes
            ):
                box = cand
                break
        if box is None:
            if lb["kind"] == "pipe":
                continue
            box = cand
        boxes.append(box)
        placed.append(
            {
                **lb,
                "xyz": [float(v) for v in lb["xyz"]],
                "px": [float(cx), float(cy)],
                "box": [float(v) for v in box],
                "font_px": fs,
            }
        )
    return placed


_LABEL_STYLE = {  # text colour, background, frame
    "valve": ((0, 0, 0), VALVE_RGB, (0, 0, 0)),
    "failed_valve": ((255, 255, 255), FAILED_VALVE_RGB, (0, 0, 0)),
    "dimension": ((255, 255, 255), DIMENSION_RGB, DIMENSION_RGB),
    "subject": ((0, 0, 0), (255, 255, 255), (0, 0, 0)),
    "pipe": ((60, 60, 60), (255, 255, 255), (170, 170, 170)),
    "title": ((0, 0, 0), BACKGROUND_RGB, BACKGROUND_RGB),
    "legend": ((50, 50, 50), BACKGROUND_RGB, BACKGROUND_RGB),
}


def _text_actor(
    text: str, col: float, row: float, height: int, font_px: float, kind: str, align: str = "center"
) -> vtkTextActor:
    """A text box at pixel (column, row): centred on it, or its top-left corner there (``left``).

    Plain VTK: pyvista's text and colour classes cost 4 ms a colour, a tenth of a picture."""
    fg, bg, frame = _LABEL_STYLE.get(kind, _LABEL_STYLE["pipe"])
    actor = vtkTextActor()
    actor.SetInput(text)
    prop = actor.GetTextProperty()
    prop.SetFontFamily(VTK_FONT_FILE)
    prop.SetFontFile(label_font())
    prop.SetFontSize(int(round(font_px)))
    prop.SetColor(*[c / 255 for c in fg])
    prop.SetBackgroundColor(*[c / 255 for c in bg])
    prop.SetBackgroundOpacity(0.92)
    prop.SetFrame(kind != "title")
    prop.SetFrameColor(*[c / 255 for c in frame])
    if align == "center":
        prop.SetJustificationToCentered()
        prop.SetVerticalJustificationToCentered()
    else:
        prop.SetJustificationToLeft()
        prop.SetVerticalJustificationToTop()
    actor.SetPosition(col, height - row)
    return actor


def _overlay(
    segments_px: np.ndarray, height: int, rgb: tuple[int, int, int], width_px: float
) -> vtkActor2D:
    """2D line segments ``(n, 2, 2)`` of (column, row) pixels, drawn over everything."""
    seg = np.asarray(segments_px, float).reshape(-1, 2)
    pts = np.column_stack([seg[:, 0], height - seg[:, 1], np.zeros(len(seg))])
    lines = np.column_stack(
        [np.full(len(seg) // 2, 2), np.arange(0, len(seg), 2), np.arange(1, len(seg), 2)]
    )
    mapper = vtkPolyDataMapper2D()
    mapper.SetInputData(pv.PolyData(pts, lines=lines.ravel()))
    actor = vtkActor2D()
    actor.SetMapper(mapper)
    actor.GetProperty().SetColor(*[c / 255 for c in rgb])
    actor.GetProperty().SetLineWidth(width_px)
    return actor


# -- rendering ---------------------------------------------------------------------------------
def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise InputError(f"a picture size is two whole numbers of pixels, not {size!r}",
                         zh=f"图片尺寸为两个整数像素值，而不是 {size!r}") from None
    if not (64 <= width <= 8192 and 64 <= height <= 8192):
        raise InputError(f"a picture is 64 to 8192 pixels wide and high, not {width}x{height}",
                         zh=f"图片宽高须为 64 到 8192 像素，而不是 {width}x{height}")
    return width, height


def _actors(scene: _Scene, camera: Camera, size: tuple[int, int]) -> tuple[list, list[dict]]:
    """The preparation before the lock: meshes as PolyData (shifted to the scene's origin),
    labels placed. Returns ``([(poly, style for _mesh_actor)], placed labels)``."""
    o = scene.origin
    meshes: list[tuple[pv.DataSet, dict]] = []
    pipe_mesh = _pipe_mesh(scene.pipes, *scene.clipped) if len(scene.clipped[0]) else Mesh.empty()
    if len(pipe_mesh.positions):
        rgb = scene.pipe_rgb[pipe_mesh.feature]
        meshes.append((_polydata(pipe_mesh, o, rgb), {"rgb": True}))
    for mesh, colour in scene.extra_meshes:
        if len(mesh.positions):
            meshes.append((_polydata(mesh, o), {"colour": colour}))
    # thin pipes (a few px on screen) also as centre lines, so a long view still shows them
    points, starts, line_pipe = scene.clipped
    dist = np.linalg.norm(np.subtract(camera.focal_point, camera.position))
    px_per_m = size[1] / (2 * dist * math.tan(math.radians(camera.view_angle_deg) / 2))
    thin = np.flatnonzero(2 * scene.pipes.half[line_pipe, 1] * px_per_m < MIN_PIPE_PX)
    if len(thin):
        per_line = np.diff(starts)
        sel = np.isin(np.repeat(np.arange(len(line_pipe)), per_line), thin)
        counts = per_line[thin]
        cells = np.concatenate(
            [
                [c, *range(s, s + c)]
                for c, s in zip(counts, np.concatenate([[0], np.cumsum(counts)[:-1]]), strict=True)
            ]
        )
        poly = pv.PolyData(points[sel] - o, lines=cells)
        poly.point_data["rgb"] = scene.pipe_rgb[np.repeat(line_pipe[thin], counts)].astype(np.uint8)
        meshes.append((poly, {"rgb": True, "line_width": 3}))
    for pts, colour, width in scene.lines:
        meshes.append(
            (pv.lines_from_points(np.asarray(pts) - o), {"colour": colour, "line_width": width})
        )
    meshes.append((_ground_poly(scene), {"colour": GROUND_RGB, "opacity": GROUND_OPACITY}))
    font_px = max(10.0, size[1] / 64)
    return meshes, _place_labels(scene.labels, camera, size, font_px)


def _mesh_actor(
    poly: pv.PolyData,
    *,
    rgb: bool = False,
    colour: tuple[int, int, int] = (128, 128, 128),
    opacity: float = 1.0,
    line_width: float = 1.0,
) -> vtkActor:
    """A plain VTK actor: per-vertex ``rgb`` colours or one ``colour``; the point normals
    shade smoothly (pyvista's ``add_mesh`` costs 60 ms more per mesh in its set-up)."""
    mapper = vtkPolyDataMapper()
    mapper.SetInputData(poly)
    if rgb:
        mapper.SetScalarModeToUsePointFieldData()
        mapper.SelectColorArray("rgb")
        mapper.SetColorModeToDirectScalars()
        mapper.ScalarVisibilityOn()
    else:
        mapper.ScalarVisibilityOff()
    actor = vtkActor()
    actor.SetMapper(mapper)
    prop = actor.GetProperty()
    prop.SetColor(*[c / 255 for c in colour])
    prop.SetOpacity(opacity)
    prop.SetLineWidth(line_width)
    return actor


class _Window:
    """The process's one off-screen window, kept between pictures: a new OpenGL context
    compiles its shaders again (0.3-0.5 s with llvmpipe), a kept one draws the next picture
    at once. Used under :data:`_LOCK` only; a forked child makes its own."""

    plotter: pv.Plotter | None = None
    pid: int = 0


def _plotter(width: int, height: int) -> pv.Plotter:
    """The kept window, emptied and sized ``width`` x ``height`` (call under the lock)."""
    if _Window.plotter is None or _Window.pid != os.getpid():
        # the window class is read when a window is made: OSMesa unless the deployment chose EGL
        os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkOSOpenGLRenderWindow")
        plotter = pv.Plotter(off_screen=True, window_size=(width, height))
        plotter.ren_win.SetMultiSamples(0)  # MSAA triples llvmpipe's time; edges stay sharp enough
        plotter.set_background([c / 255 for c in BACKGROUND_RGB])
        _Window.plotter, _Window.pid = plotter, os.getpid()
    plotter = _Window.plotter
    if tuple(plotter.window_size) != (width, height):
        plotter.window_size = (width, height)
    return plotter


def _render(
    scene: _Scene,
    camera: Camera,
    size: tuple[int, int],
    title: str,
    *,
    overlays: Sequence[tuple[np.ndarray, tuple[int, int, int], float]] = (),
) -> Picture:
    """Draw the scene through the camera, off-screen, and encode the PNG."""
    width, height = size
    meshes, labels = _actors(scene, camera, size)
    o = scene.origin
    with _LOCK:  # VTK is not thread-safe
        plotter = _plotter(width, height)
        try:
            for poly, style in meshes:
                plotter.renderer.AddActor(_mesh_actor(poly, **style))
            for segs, colour, w in overlays:
                plotter.renderer.AddViewProp(_overlay(segs, height, colour, w))
            for lb in labels:
                x0, y0, x1, y1 = lb["box"]
                plotter.renderer.AddViewProp(
                    _text_actor(
                        lb["text"],
                        (x0 + x1) / 2,
                        (y0 + y1) / 2,
                        height,
                        lb["font_px"],
                        lb.get("style", lb["kind"]),
                    )
                )
            if title:
                plotter.renderer.AddViewProp(
                    _text_actor(title, 12, 10, height, max(11.0, height / 50), "title", "left")
                )
            if scene.legend:
                n = scene.legend.count("\n") + 1
                fs = max(9.0, height / 80)
                plotter.renderer.AddViewProp(
                    _text_actor(
                        scene.legend, 12, height - 10 - n * fs * 1.3, height, fs, "legend", "left"
                    )
                )
            plotter.camera_position = [
                tuple(np.subtract(camera.position, o)),
                tuple(np.subtract(camera.focal_point, o)),
                camera.up,
            ]
            plotter.camera.view_angle = camera.view_angle_deg
            plotter.renderer.ResetCameraClippingRange()
            plotter.ren_win.Render()
            pixels = vtkUnsignedCharArray()
            plotter.ren_win.GetPixelData(0, 0, width - 1, height - 1, 1, pixels, 0)
            img = vtk_to_numpy(pixels).reshape(height, width, 3)[::-1]  # rows from the top
        finally:
            plotter.clear_actors()
            plotter.renderer.RemoveAllViewProps()
    buf = io.BytesIO()
    Image.fromarray(np.asarray(img)).save(buf, format="PNG", compress_level=1)
    return Picture(buf.getvalue(), width, height, camera, title, labels)


# -- findings ----------------------------------------------------------------------------------
def _place_of(finding: Mapping) -> tuple[float, float]:
    try:
        x, y = float(finding["x"]), float(finding["y"])
    except (KeyError, TypeError, ValueError):
        raise InputError("a finding's picture needs its place: x and y in the twin's CRS",
                         zh="检查结果的图片需要其位置：孪生库坐标参照系中的 x 和 y") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise InputError("a finding's place (x, y) is not a pair of finite numbers",
                         zh="检查结果的位置 (x, y) 不是两个有限数值")
    return x, y


def _finding_ids(finding: Mapping) -> list[str]:
    ids = finding.get("ids") or [finding.get("a_id"), finding.get("b_id")]
    return [str(i) for i in ids if i not in (None, "")]


def _plan_direction(p: _Pipes, i: int, xy: np.ndarray) -> np.ndarray:
    """Unit plan direction of pipe ``i``'s piece nearest the plan point ``xy``."""
    seg, a, b = _pieces(p)
    k = np.flatnonzero(seg == i)
    s, _, d = segment_closest_points(
        a[k, :2], b[k, :2], np.atleast_2d(xy).repeat(len(k), 0), np.atleast_2d(xy).repeat(len(k), 0)
    )
    j = k[int(np.argmin(d))]
    v = (b[j] - a[j])[:2]
    n = np.linalg.norm(v)
    return v / n if n > 0 else np.array([1.0, 0.0])


def _finding_azimuth(p: _Pipes, subject: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Look across both pipes: along their bisector when they cross, 35 degrees off their
    direction when they run side by side (the gap then shows as in a section)."""
    if not len(subject):
        return np.array([0.0, 1.0])
    a = _plan_direction(p, int(subject[0]), xy)
    if len(subject) == 1:
        az = np.array([-a[1], a[0]])
    else:
        b = _plan_direction(p, int(subject[1]), xy)
        if abs(a @ b) > math.cos(math.radians(30)):
            c, s = math.cos(math.radians(35)), math.sin(math.radians(35))
            az = np.array([c * a[0] - s * a[1], s * a[0] + c * a[1]])
        else:
            b = b if a @ b >= 0 else -b
            az = a + b
    az = az / np.linalg.norm(az)
    return az if az[1] >= -1e-9 else -az  # from the south side, so north is away from the viewer


def _support(p: _Pipes, i: int, t: np.ndarray, d: np.ndarray) -> float:
    """How far pipe ``i``'s outer wall reaches from its centre along unit ``d`` (its axis ``t``)."""
    if p.circular[i]:
        return float(p.half[i, 0])
    w = np.cross(t, [0.0, 0.0, 1.0])
    w = w / np.linalg.norm(w) if np.linalg.norm(w) > 1e-9 else np.array([1.0, 0.0, 0.0])
    v = np.cross(w, t)
    return float(p.half[i, 0] * abs(d @ w) + p.half[i, 1] * abs(d @ v))


def _gap(p: _Pipes, i: int, j: int, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The outer-wall points of pipes ``i`` and ``j`` where they come closest (the place nearest
    ``xy`` among pairs within a millimetre of the least distance)."""
    seg, a, b = _pieces(p)
    ki, kj = np.flatnonzero(seg == i), np.flatnonzero(seg == j)
    ii, jj = np.repeat(ki, len(kj)), np.tile(kj, len(ki))
    s, t, d = segment_closest_points(a[ii], b[ii], a[jj], b[jj])
    cp = a[ii] + (b[ii] - a[ii]) * s[:, None]
    cq = a[jj] + (b[jj] - a[jj]) * t[:, None]
    near = np.flatnonzero(d <= d.min() + 1e-3)
    m = near[np.argmin(np.linalg.norm((cp[near] + cq[near])[:, :2] / 2 - xy, axis=1))]
    u = cq[m] - cp[m]
    n = np.linalg.norm(u)
    u = u / n if n > 1e-9 else np.array([0.0, 0.0, 1.0])
    ti = (b[ii[m]] - a[ii[m]]) / max(np.linalg.norm(b[ii[m]] - a[ii[m]]), 1e-12)
    tj = (b[jj[m]] - a[jj[m]]) / max(np.linalg.norm(b[jj[m]] - a[jj[m]]), 1e-12)
    return cp[m] + u * _support(p, i, ti, u), cq[m] - u * _support(p, j, tj, -u)


def _cover_gap(p: _Pipes, i: int, xy: np.ndarray, ground: object) -> tuple[np.ndarray, np.ndarray]:
    """The pipe's top nearest the plan point ``xy`` and the ground above it."""
    seg, a, b = _pieces(p)
    k = np.flatnonzero(seg == i)
    s, _, d = segment_closest_points(
        a[k, :2], b[k, :2], np.atleast_2d(xy).repeat(len(k), 0), np.atleast_2d(xy).repeat(len(k), 0)
    )
    m = int(np.argmin(d))
    c = a[k[m]] + (b[k[m]] - a[k[m]]) * s[m]
    top = c + [0.0, 0.0, p.half[i, 1]]
    return top, np.array([c[0], c[1], float(ground(c[None, :2])[0])])


def _dimension_text(finding: Mapping, gap_m: float) -> str:
    measured, required = finding.get("measured_m"), finding.get("required_m")
    m = float(measured) if measured is not None else gap_m
    what = "覆土 cover" if finding.get("kind") == "cover" else "净距 clearance"
    if m < 0:
        text = f"重叠 overlap {-m:.3f} m"
    else:
        text = f"{what} {m:.2f} m"
    if required is not None and math.isfinite(float(required)):
        text += f"\n要求 required ≥ {float(required):.2f} m"
    elif finding.get("kind") == "no_rule" or finding.get("verdict") == "no_rule":
        text += "\n无规则 no rule"
    return text


def _dimension_overlay(
    a: np.ndarray, b: np.ndarray, camera: Camera, size: tuple[int, int]
) -> np.ndarray:
    """The dimension line between two points and a tick across each end, in pixels."""
    pa, pb = _project(camera, *size, np.array([a, b]))
    v = pb - pa
    n = np.linalg.norm(v)
    perp = np.array([-v[1], v[0]]) / n if n > 1e-6 else np.array([1.0, 0.0])
    tick = perp * max(6.0, size[1] / 120)
    return np.array([[pa, pb], [pa - tick, pa + tick], [pb - tick, pb + tick]])


def finding_picture(
    engine: sa.Engine,
    finding: Mapping,
    *,
    extra: Sequence[ExtraPipe] = (),
    size: tuple[int, int] = (1280, 960),
    radius_m: float = 10.0,
    view_half_m: float | None = None,
) -> Picture:
    """The finding's pipes (``ids``, or ``a_id``/``b_id``; some may be ``extra``) and every pipe
    within ``radius_m`` of its place (``x``, ``y``, ``z``) at true size; the ground translucent;
    the clearance (``measured_m`` vs ``required_m``) drawn as a dimension; labels with ids,
    sizes and depths.

    The finding's pipes keep their utility colours, the others are dimmed; the camera looks
    across them from the south side, 28 degrees down, framing ``view_half_m`` (at most 6 m)
    around the dimension. A pipe of ``ids`` in neither the twin nor ``extra`` (retired since)
    is left out. Reads ``kind``, ``verdict``, ``measured_m`` and ``required_m`` for the texts.
    """
    size = _check_size(size)
    x, y = _place_of(finding)
    xy = np.array([x, y])
    ids = _finding_ids(finding)
    net, ground = _read_area(engine, shapely.Point(x, y), radius_m)
    pipes = _join(_pipes_of(net), _pipes_of_extra(extra, ground))
    subject = pipes.index(ids)
    rgb = np.array([_dim(_rgb(u)) for u in pipes.utility]).reshape(-1, 3)
    rgb[subject] = np.array([_rgb(u) for u in pipes.utility[subject]]).reshape(-1, 3)
    scene = _scene(pipes, ground, xy - radius_m, xy + radius_m, rgb)
    gap = None
    if len(subject) >= 2:
        gap = _gap(pipes, int(subject[0]), int(subject[1]), xy)
    elif len(subject) == 1 and finding.get("kind") == "cover":
        gap = _cover_gap(pipes, int(subject[0]), xy, scene.ground)
    z = finding.get("z")
    focal = (
        (gap[0] + gap[1]) / 2
        if gap is not None
        else np.array([x, y, float(z) if z is not None else scene.origin[2]])
    )
    half = view_half_m or min(radius_m, FINDING_VIEW_HALF_M)
    camera = _look_at(
        focal,
        _finding_azimuth(pipes, subject, xy),
        FINDING_ELEVATION_DEG,
        _box_corners(focal[:2] - half, focal[:2] + half, focal[2] - 1, focal[2] + 1),
        size,
    )
    overlays = []
    if gap is not None:
        overlays.append((_dimension_overlay(*gap, camera, size), DIMENSION_RGB, 3.0))
        scene.labels.append(
            {
                "text": _dimension_text(finding, float(np.linalg.norm(gap[1] - gap[0]))),
                "xyz": focal,
                "kind": "dimension",
            }
        )
    _label_pipes(scene, subject, "subject", (0.8, 0.2), camera, size)
    _label_pipes(scene, np.setdiff1d(np.arange(len(pipes)), subject), "pipe", (0.5,), camera, size)
    kind = str(finding.get("kind", ""))
    title = f"{KIND_LABELS.get(kind, kind)}: {' – '.join(ids)}"
    scene.legend = (
        "亮色: 本项管线 the finding's pipes · 淡色: 周边管线 pipes around · "
        "地面半透明 ground translucent"
    )
    return _render(scene, camera, size, title, overlays=overlays)


# -- dig sites and shutoffs --------------------------------------------------------------------
def _ring(centre: np.ndarray, radius_m: float, ground: object) -> np.ndarray:
    """A circle on the ground (a little above it, so it is not lost in the surface)."""
    a = np.linspace(0, 2 * np.pi, 73)
    xy = centre[None, :2] + radius_m * np.column_stack([np.cos(a), np.sin(a)])
    return np.column_stack([xy, ground(xy) + 0.02])


def site_picture(
    engine: sa.Engine,
    x: float,
    y: float,
    *,
    radius_m: float = 10.0,
    highlight: Sequence[str] = (),
    size: tuple[int, int] = (1280, 960),
    title: str = "",
) -> Picture:
    """A dig site: every utility within ``radius_m`` of (x, y), the ``highlight`` pipes
    emphasised, the ground translucent, labels with ids, sizes and depths.

    The site is the red circle on the ground; pipes are drawn out to the square around it,
    in their colours (the highlighted ones full, the others a little lighter); the camera looks
    north, 40 degrees down.
    """
    size = _check_size(size)
    x, y = _place_of({"x": x, "y": y})
    if not (math.isfinite(radius_m) and 0 < radius_m <= 500):
        raise InputError(f"a dig site's radius is more than 0 and at most 500 m, not {radius_m}",
                         zh=f"开挖点半径须大于 0 且不超过 500 米，而不是 {radius_m}")
    xy = np.array([x, y])
    net, ground = _read_area(engine, shapely.Point(x, y), radius_m)
    pipes = _pipes_of(net)
    subject = pipes.index(list(highlight))
    full = np.array([_rgb(u) for u in pipes.utility]).reshape(-1, 3)
    rgb = full * 0.55 + np.asarray(DIM_GREY, float) * 0.45
    rgb[subject] = full[subject]
    scene = _scene(pipes, ground, xy - radius_m, xy + radius_m, rgb)
    scene.lines.append((_ring(xy, radius_m, scene.ground), BURST_RGB, 2.0))
    focal = np.array([x, y, scene.origin[2]])
    camera = _look_at(
        focal,
        np.array([0.0, 1.0]),
        SITE_ELEVATION_DEG,
        _box_corners(xy - radius_m, xy + radius_m, *_z_range(scene)),
        size,
    )
    _label_pipes(scene, subject, "subject", (0.5,), camera, size)
    _label_pipes(
        scene, np.setdiff1d(np.arange(len(pipes)), subject), "pipe", (0.35, 0.65), camera, size
    )
    scene.legend = (
        f"红圈: 开挖范围 {radius_m:g} m dig site · 亮色: 抢修管线 pipes worked on · "
        f"{len(pipes)} 条管线 pipes within {radius_m:g} m"
    )
    return _render(scene, camera, size, title or f"开挖现场 dig site ({x:.1f}, {y:.1f})")


def _extent(engine: sa.Engine, ids: Sequence[str]) -> np.ndarray | None:
    """(xmin, ymin, xmax, ymax) of the named pipes (current or retired), or None."""
    if not ids:
        return None
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT ST_XMin(e), ST_YMin(e), ST_XMax(e), ST_YMax(e) FROM "
                "(SELECT ST_Extent(geom) AS e FROM current_segment WHERE id = ANY(:ids)) q"
            ),
            {"ids": list(ids)},
        ).first()
    return None if row is None or row[0] is None else np.array(row, dtype=float)


def _valve_points(pipes: _Pipes, valves: Sequence[Mapping]) -> np.ndarray:
    """(x, y, z) of valves: z of their pipe's centreline vertex nearest them (or of any pipe)."""
    out = np.full((len(valves), 3), np.nan)
    for n, v in enumerate(valves):  # a few valves per shutoff
        xy = np.array([float(v["x"]), float(v["y"])])
        own = pipes.index([str(v.get("pipe"))])
        span = (
            pipes.vertices[pipes.offsets[own[0]] : pipes.offsets[own[0] + 1]]
            if len(own)
            else pipes.vertices
        )
        z = span[np.argmin(np.linalg.norm(span[:, :2] - xy, axis=1)), 2] if len(span) else 0.0
        out[n] = [xy[0], xy[1], z]
    return out


def shutoff_picture(
    engine: sa.Engine,
    answer: Mapping,
    *,
    size: tuple[int, int] = (1280, 960),
    margin_m: float = 10.0,
) -> Picture:
    """A shutoff answer (:func:`analysis.shutoff.shutoff` as a dict): the burst, the valves to
    close numbered in order, the isolated pipes highlighted.

    Reads ``pipe`` (the burst, red), ``valves`` (``id``, ``pipe``, ``x``, ``y``, ``order``:
    yellow, labelled with their order), ``failed_valves`` (grey, labelled ×), ``isolated_pipes``
    (their utility colour, full) and ``outage_pipes`` (lighter); everything else is dimmed.
    The view frames the burst, the isolated pipes and the valves with ``margin_m`` around.
    """
    size = _check_size(size)
    valves = [v for v in answer.get("valves") or [] if v.get("x") is not None]
    failed = [v for v in answer.get("failed_valves") or [] if v.get("x") is not None]
    burst = [str(answer["pipe"])] if answer.get("pipe") else []
    isolated = [str(i) for i in answer.get("isolated_pipes") or []]
    box = _extent(engine, burst + isolated)
    pts = np.array([[float(v["x"]), float(v["y"])] for v in valves + failed]).reshape(-1, 2)
    if box is None and not len(pts):
        raise InputError("a shutoff picture needs the burst pipe, isolated pipes or valves to show",
                         zh="关阀图需要显示爆管管线、被隔离的管线或阀门")
    lo = np.min(np.vstack([pts, box.reshape(2, 2)]) if box is not None else pts, axis=0) - margin_m
    hi = np.max(np.vstack([pts, box.reshape(2, 2)]) if box is not None else pts, axis=0) + margin_m
    net, ground = _read_area(engine, shapely.box(*lo, *hi), 0.0)
    pipes = _pipes_of(net)
    full = np.array([_rgb(u) for u in pipes.utility]).reshape(-1, 3)
    rgb = _dim(full)
    outage = pipes.index([str(i) for i in answer.get("outage_pipes") or []])
    rgb[outage] = full[outage] * 0.6 + np.asarray(DIM_GREY, float) * 0.4
    rgb[pipes.index(isolated)] = full[pipes.index(isolated)]
    rgb[pipes.index(burst)] = BURST_RGB
    scene = _scene(pipes, ground, lo, hi, rgb)
    half = float(np.max(hi - lo)) / 2
    glyph = max(0.3, half / 70)
    for group, colour in ((valves, VALVE_RGB), (failed, FAILED_VALVE_RGB)):
        if group:
            xyz = _valve_points(pipes, group)
            scene.extra_meshes.append(
                (
                    instances(OCTAHEDRON, xyz, np.full((len(xyz), 3), glyph), np.arange(len(xyz))),
                    colour,
                )
            )
            for v, p in zip(group, xyz, strict=True):
                text = str(v.get("order", "")) if colour == VALVE_RGB else f"× {v['id']}"
                scene.labels.append(
                    {
                        "text": text,
                        "xyz": p + [0, 0, glyph * 1.5],
                        "kind": "valve",
                        "style": "valve" if colour == VALVE_RGB else "failed_valve",
                        "id": str(v["id"]),
                    }
                )
    focal = np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, scene.origin[2]])
    camera = _look_at(
        focal,
        np.array([0.0, 1.0]),
        SHUTOFF_ELEVATION_DEG,
        _box_corners(lo, hi, *_z_range(scene)),
        size,
    )
    _label_pipes(scene, pipes.index(burst), "subject", (0.5,), camera, size)
    scene.legend = (
        "红: 爆管 burst · 黄 1, 2, …: 按序关闭的阀门 valves to close in order · "
        "× 失效阀门 failed valves · 亮色: 隔离管段 isolated · 较淡: 停水管段 outage"
    )
    title = (
        f"关阀 shutoff: 爆管 burst {', '.join(burst) or answer.get('node') or ''} · "
        f"关闭 {len(valves)} 个阀门 valves · 隔离 {len(isolated)} 段 pipes isolated"
    )
    return _render(scene, camera, size, title)
