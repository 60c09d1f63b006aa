"""Plan maps for the documents: a top-down drawing of the pipes around a place, in CJJ 61
colours (:func:`analysis.svg.utility_colour`), with a scale bar, a north arrow, the pipes in
question highlighted, numbered marks (the valves to close, in order) and extra geometries (a
proposal's line), rendered to PNG with matplotlib (Agg, off-screen).

The twin's CRS is projected with x = easting and y = northing, so grid north is up. Pipes are
drawn as one :class:`~matplotlib.collections.LineCollection`; nothing loops over vertices.
Figures are made without pyplot (a bare :class:`~matplotlib.figure.Figure` renders with Agg),
so no global backend or state is touched.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import matplotlib
import numpy as np
import shapely
import sqlalchemy as sa
from matplotlib import font_manager
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from analysis.network import Network, load_network
from analysis.svg import utility_colour
from documents.fonts import cjk_font
from twin.domain import UTILITIES
from twin.errors import InputError

__all__ = ["Mark", "plan_map", "map_frame"]

HIGHLIGHT = "#ff2d00"
EXTRA = "#c000c0"
MARK = "#d00000"


@dataclass(frozen=True)
class Mark:
    """A numbered or labelled point on the map (a valve to close: ``Mark(x, y, "1")``)."""

    x: float
    y: float
    text: str
    colour: str = MARK
    shape: str = "o"  # matplotlib marker: "o" circle, "X" a burst, "s" square, "^" hydrant


@cache
def _families() -> list[str]:
    """Font families: DejaVu Sans for Latin, the CJK font as the fallback for Chinese glyphs."""
    path = str(cjk_font())
    font_manager.fontManager.addfont(path)
    return ["DejaVu Sans", font_manager.FontProperties(fname=path).get_name()]


def _bold(text: str) -> dict:
    """Bold for Latin text (DejaVu Sans Bold); the CJK font has no bold face, so text with
    Chinese stays regular (asking for it logs a warning at every draw)."""
    if text.isascii():
        return {"fontweight": "bold", "fontfamily": "DejaVu Sans"}
    return {"fontweight": "normal"}


def map_frame(points: np.ndarray, *, margin_m: float = 15.0, min_radius_m: float = 30.0
              ) -> tuple[float, float, float]:
    """Centre and radius (m) of a square frame holding ``points`` ``(n, 2)`` with a margin."""
    pts = np.asarray(points, float).reshape(-1, 2)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if not len(pts):
        raise InputError("no finite points to frame", zh="没有可取景的有限坐标点")
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    cx, cy = (lo + hi) / 2
    return float(cx), float(cy), float(max(min_radius_m, (hi - lo).max() / 2 + margin_m))


def _nice_length(span_m: float) -> float:
    """A round scale-bar length near a fifth of the span: 1, 2 or 5 times a power of ten."""
    target = max(span_m / 5.0, 1e-3)
    power = 10.0 ** math.floor(math.log10(target))
    return max(m * power for m in (1, 2, 5) if m * power <= target)


def _pipes(ax, net: Network, highlight: set[str]) -> list[str]:
    """Every pipe as one LineCollection (highlighted ones on top with a halo); the utilities."""
    seg = net.segments
    if not len(seg):
        return []
    lines = np.split(net.vertices[:, :2], net.offsets[1:-1])
    codes = seg["subtype"].fillna(seg["utility"]).astype(str).to_numpy()
    palette = {c: utility_colour(c) for c in np.unique(codes)}
    colours = np.array([palette[c] for c in codes], dtype=object)
    size = np.fmax(seg["diameter_mm"].to_numpy(float), seg["width_mm"].to_numpy(float))
    width = np.clip(np.nan_to_num(size, nan=200.0) / 180.0, 1.0, 4.0)
    lit = seg["id"].isin(highlight).to_numpy()
    dim = bool(lit.any())
    idx = np.flatnonzero(~lit)
    ax.add_collection(LineCollection([lines[i] for i in idx], colors=colours[idx].tolist(),
                                     linewidths=width[idx], alpha=0.6 if dim else 0.95, zorder=2))
    idx = np.flatnonzero(lit)
    if len(idx):
        sel = [lines[i] for i in idx]
        ax.add_collection(LineCollection(sel, colors=HIGHLIGHT, linewidths=width[idx] + 5, alpha=0.35,
                                         zorder=3))
        ax.add_collection(LineCollection(sel, colors=colours[idx].tolist(), linewidths=width[idx] + 1,
                                         zorder=4))
    return sorted(set(seg["utility"].astype(str)))


def _nodes(ax, net: Network) -> None:
    """Valves, chambers and hydrants of the twin as small symbols."""
    nodes = net.nodes
    if not len(nodes):
        return
    kind = nodes["appurtenance"].fillna("").astype(str).to_numpy()
    for name, marker in (("valve", "s"), ("valve_chamber", "s"), ("hydrant", "^")):
        on = kind == name
        if on.any():
            ax.scatter(nodes["x"].to_numpy(float)[on], nodes["y"].to_numpy(float)[on], s=14,
                       marker=marker, facecolors="white", edgecolors="#333333", linewidths=0.8, zorder=5)


def _extra(ax, extra: Sequence[shapely.Geometry]) -> None:
    """Extra geometries (a proposal): lines dashed, areas outlined, in magenta."""
    for geom in extra:
        for part in shapely.get_parts(shapely.boundary(geom) if shapely.get_dimensions(geom) == 2 else geom):
            xy = shapely.get_coordinates(part)
            if len(xy) > 1:
                ax.plot(xy[:, 0], xy[:, 1], color=EXTRA, linewidth=3.0, linestyle=(0, (6, 3)), zorder=6)
            elif len(xy):
                ax.scatter(xy[:, 0], xy[:, 1], color=EXTRA, s=30, zorder=6)


def _marks(ax, marks: Sequence[Mark | tuple]) -> None:
    """Numbered marks: a filled symbol with its text in white, or beside it when long."""
    for m in marks:
        m = m if isinstance(m, Mark) else Mark(*m)
        short = len(m.text) <= 2
        ax.scatter([m.x], [m.y], s=260 if short else 90, marker=m.shape, color=m.colour,
                   edgecolors="white", linewidths=1.2, zorder=8)
        if short:
            ax.annotate(m.text, (m.x, m.y), ha="center", va="center", color="white", fontsize=9,
                        zorder=9, **_bold(m.text))
        else:
            ax.annotate(m.text, (m.x, m.y), xytext=(7, 5), textcoords="offset points", fontsize=9,
                        color=m.colour, zorder=9, **_bold(m.text),
                        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8})


def _furniture(ax, x: float, y: float, r: float, utilities: list[str], extra: bool, lit: bool) -> None:
    """Scale bar (bottom left), north arrow (top right), legend of utilities (bottom right)."""
    bar = _nice_length(2 * r)
    x0, y0 = x - r * 0.92, y - r * 0.90
    ax.plot([x0, x0 + bar], [y0, y0], color="black", linewidth=3, solid_capstyle="butt", zorder=10)
    ax.plot([x0, x0 + bar / 2], [y0, y0], color="white", linewidth=1.2, solid_capstyle="butt", zorder=11)
    ax.text(x0 + bar / 2, y0 + r * 0.03, f"{bar:g} m", ha="center", va="bottom", fontsize=9, zorder=10)
    nx, ny = x + r * 0.88, y + r * 0.72
    ax.annotate("", xy=(nx, ny + r * 0.16), xytext=(nx, ny), zorder=10,
                arrowprops={"arrowstyle": "-|>,head_width=0.5,head_length=1.0", "color": "black", "lw": 2})
    ax.text(nx, ny + r * 0.18, "N 北", ha="center", va="bottom", fontsize=11, zorder=10)
    handles = [Line2D([], [], color=utility_colour(u), linewidth=3,
                      label=f"{UTILITIES[u].name_zh} {UTILITIES[u].name_en}" if u in UTILITIES else u)
               for u in utilities]
    if lit:
        handles.append(Line2D([], [], color=HIGHLIGHT, linewidth=6, alpha=0.5, label="关注管段 Highlighted"))
    if extra:
        handles.append(Line2D([], [], color=EXTRA, linewidth=3, linestyle="--", label="方案 Proposal"))
    if handles:
        ax.legend(handles=handles, loc="lower right", fontsize=8, framealpha=0.85)


def plan_map(engine: sa.Engine, x: float, y: float, radius_m: float, *,
             highlight: Sequence[str] = (), extra: Sequence[shapely.Geometry] = (),
             marks: Sequence[Mark | tuple] = (), title: str = "",
             size_px: tuple[int, int] = (1500, 1500), dpi: int = 200) -> bytes:
    """A PNG plan of the pipes within a square of half-side ``radius_m`` around (``x``, ``y``)
    (twin CRS, easting and northing): utilities in CJJ 61 colours, the ``highlight`` pipe ids
    emphasised, ``extra`` geometries (twin CRS) dashed, ``marks`` numbered on top."""
    if not (math.isfinite(x) and math.isfinite(y) and math.isfinite(radius_m) and radius_m > 0):
        raise InputError("a plan map needs a finite centre and a positive radius",
                         zh="平面图需要有限的中心点和正的半径")
    frame = shapely.box(x - radius_m, y - radius_m, x + radius_m, y + radius_m)
    net = load_network(engine, near=frame, distance_m=0.0)
    fig = Figure(figsize=(size_px[0] / dpi, size_px[1] / dpi), dpi=dpi)
    with matplotlib.rc_context({"font.family": _families(), "font.size": 9}):
        ax = fig.add_axes((0.01, 0.01, 0.98, 0.98 if not title else 0.93))
        utilities = _pipes(ax, net, set(highlight))
        _nodes(ax, net)
        _extra(ax, extra)
        _marks(ax, marks)
        ax.set_xlim(x - radius_m, x + radius_m)
        ax.set_ylim(y - radius_m, y + radius_m)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_facecolor("#fbfaf6")
        _furniture(ax, x, y, radius_m, utilities, bool(len(extra)), bool(len(highlight)))
        if title:
            fig.suptitle(title, fontsize=12, y=0.985)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
