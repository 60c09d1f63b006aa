"""The cross-section (横断面) and the longitudinal profile (纵断面) as DXF drawings for CAD.

The same content as the SVG drawings (:func:`analysis.section.section_svg`,
:func:`analysis.profile.profile_svg`), written with ezdxf so designers can answer in their
own CAD tools:

- **Units and scale.** Drawing units are metres (``$INSUNITS`` = 6) at true size: in the
  cross-section a point at chainage ``o`` and elevation ``z`` is at ``(o, z)``, so pipe cuts
  are circles, ellipses and boxes of their real size and a CAD user reads elevations off the
  coordinates. The profile keeps chainage as X and stretches heights by the vertical
  exaggeration of the SVG (stated in its title and title block): ``Y = datum + (z - datum) *
  k`` with ``datum`` the plot's lowest elevation, written in the title block; ``k = 1`` (true
  scale) on request. Text heights are 2.5 mm at the paper scale of the SVG (1:n).
- **Layers.** One layer per utility, named and coloured as in the network drawing
  (:func:`exchange.dxf.layer_name`: ``JS_给水`` in the CJJ 61 colour, as ACI and true colour);
  the ground line, grid, dimensions, table and title block each on a layer of their own.
  Proposed pipes are drawn on their utility's layer, dashed in red.
- **Text.** One text style (``图纸注记``, SimSun: Chinese CAD installations have it) for every
  label; Chinese first, English second.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import ezdxf
import numpy as np
from ezdxf.enums import TextEntityAlignment
from ezdxf.layouts import Modelspace

from analysis import svg
from analysis.profile import Profile, ProfileCrossing, _round_scale
from analysis.section import CrossSection, SectionPipe, _map_scale
from exchange.dxf import _aci, layer_name
from twin.domain import UTILITIES
from twin.errors import InputError

__all__ = ["section_dxf", "profile_dxf", "MEDIA_TYPE", "TEXT_MM", "STYLE", "LAYERS"]

#: The media type of a DXF answer.
MEDIA_TYPE = "application/dxf"
#: Text height on paper (mm) at the drawing's scale.
TEXT_MM = 2.5
#: The one text style: a TrueType font with Chinese glyphs on Chinese CAD installations.
STYLE = "图纸注记"
_FONT = "simsun.ttc"
#: The layers that are not a utility's: name -> true colour (None: ACI 7, black on white paper).
LAYERS: dict[str, tuple[int, int, int] | None] = {
    "地面线_ground": (107, 79, 42),
    "高程网格_grid": (160, 160, 160),
    "标注_dimensions": None,
    "表格_table": None,
    "图签_title": None,
}
GROUND, GRID, DIMS, TABLE, TITLE = LAYERS
_PROPOSED_ACI = 1  # red
Y = Callable[[float], float]


@dataclass
class _Sheet:
    """A drawing being written: its modelspace, metres per paper millimetre, text height."""

    doc: ezdxf.document.Drawing
    msp: Modelspace
    per_mm: float

    @property
    def h(self) -> float:
        return TEXT_MM * self.per_mm

    def layer(self, code: str) -> str:
        """The utility's layer, added on first use in its CJJ 61 colour."""
        name = layer_name(code)
        if name not in self.doc.layers:
            rgb = (UTILITIES.get(code) or UTILITIES["QT"]).rgb
            layer = self.doc.layers.add(name)
            layer.color, layer.rgb = _aci(rgb), rgb
        return name

    def text(self, x: float, y: float, content: str, layer: str, *, size: float = 1.0,
             rotation: float = 0.0, align: TextEntityAlignment = TextEntityAlignment.LEFT) -> None:
        self.msp.add_text(content, height=self.h * size, rotation=rotation,
                          dxfattribs={"layer": layer, "style": STYLE}).set_placement((x, y), align=align)

    def rect(self, x0: float, y0: float, x1: float, y1: float, layer: str) -> None:
        self.msp.add_lwpolyline([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], close=True,
                                dxfattribs={"layer": layer})

    def line(self, a: Sequence[float], b: Sequence[float], layer: str, **attribs: object) -> None:
        self.msp.add_line(tuple(a), tuple(b), dxfattribs={"layer": layer, **attribs})


def _sheet(scale_n: float) -> _Sheet:
    """A new R2010 drawing in metres with the text style, fixed layers and dimension style."""
    doc = ezdxf.new("R2010", setup=True, units=ezdxf.units.M)
    doc.header["$INSUNITS"] = ezdxf.units.M
    doc.header["$MEASUREMENT"] = 1  # metric
    doc.styles.add(STYLE, font=_FONT)
    for name, rgb in LAYERS.items():
        layer = doc.layers.add(name, color=7)
        if rgb is not None:
            layer.color, layer.rgb = _aci(rgb), rgb
    sheet = _Sheet(doc, doc.modelspace(), scale_n / 1000.0)
    dim = doc.dimstyles.duplicate_entry("EZDXF", "净距_clear")
    dim.dxf.dimtxsty = STYLE
    dim.dxf.dimtxt = sheet.h
    dim.dxf.dimasz = sheet.h * 0.8
    dim.dxf.dimexo = sheet.h * 0.3
    dim.dxf.dimexe = sheet.h * 0.5
    dim.dxf.dimgap = sheet.h * 0.3
    dim.dxf.dimscale = 1.0
    return sheet


def _to_bytes(doc: ezdxf.document.Drawing) -> bytes:
    stream = io.StringIO()
    doc.write(stream)
    return stream.getvalue().encode(doc.output_encoding)


def _grid(sheet: _Sheet, width: float, zmin: float, zmax: float, y_of: Y) -> None:
    """Lines at round elevations, labelled left of the plot with the true elevation."""
    step = svg.nice_step(zmax - zmin, 5)
    for z in np.arange(math.ceil(zmin / step) * step, zmax + 1e-9, step):
        y = y_of(float(z))
        sheet.line((0.0, y), (width, y), GRID)
        sheet.text(-1.5 * sheet.per_mm, y, f"{z:.1f}", GRID, size=0.8,
                   align=TextEntityAlignment.MIDDLE_RIGHT)
    sheet.text(-1.5 * sheet.per_mm, y_of(zmax) + 3 * sheet.per_mm, "高程 elev. (m)", GRID, size=0.8,
               align=TextEntityAlignment.BOTTOM_RIGHT)


def _table(sheet: _Sheet, top: float, width: float, rows: Sequence[tuple[str, float]]) -> list[float]:
    """Framed rows ``(name, height mm)`` under ``top`` across the plot; the rows' bottoms."""
    bottoms = []
    y = top
    for name, height_mm in rows:
        y_next = y - height_mm * sheet.per_mm
        sheet.rect(0.0, y_next, width, y, TABLE)
        sheet.text(-1.5 * sheet.per_mm, (y + y_next) / 2, name, TABLE, size=0.8,
                   align=TextEntityAlignment.MIDDLE_RIGHT)
        bottoms.append(y_next)
        y = y_next
    return bottoms


def _column(sheet: _Sheet, x: float, bottoms: Sequence[float], cells: Sequence[str], layer: str) -> None:
    """One column of cells, each read bottom to top from the bottom of its row."""
    for bottom, cell in zip(bottoms, cells, strict=True):
        sheet.text(x, bottom + sheet.per_mm, cell, layer, size=0.8, rotation=90.0,
                   align=TextEntityAlignment.MIDDLE_LEFT)


def _title_block(sheet: _Sheet, right: float, top: float, title: str, rows: Sequence[tuple[str, str]]) -> None:
    """A framed title block whose top right corner is ``(right, top)``: title, then label/value rows."""
    mm = sheet.per_mm
    width, line = 150 * mm, 5 * mm
    bottom = top - 9 * mm - line * len(rows) - 2 * mm
    sheet.rect(right - width, bottom, right, top, TITLE)
    sheet.text(right - width + 2 * mm, top - 6 * mm, title, TITLE, size=1.6)
    for i, (label, value) in enumerate(rows):
        y = top - 9 * mm - line * (i + 1) + 1.5 * mm
        sheet.text(right - width + 2 * mm, y, label, TITLE, size=0.8)
        sheet.text(right - width + 42 * mm, y, value, TITLE, size=0.8)


def _ground(sheet: _Sheet, chainage: np.ndarray, z: np.ndarray, y_of: Y) -> None:
    ok = np.isfinite(z)
    if ok.sum() < 2:
        return
    pts = np.column_stack([chainage[ok], y_of(z[ok])])
    sheet.msp.add_lwpolyline(pts.tolist(), dxfattribs={"layer": GROUND, "const_width": 0.0})
    sheet.text(chainage[ok][0] + sheet.per_mm, float(y_of(z[ok][0])) + sheet.per_mm, "地面 ground", GROUND,
               size=0.8)


# -- the cross-section ------------------------------------------------------------------------
def section_dxf(sec: CrossSection, *, title: str = "横断面 Cross-section") -> bytes:
    """The cross-section as DXF at true scale: X is the chainage along the line, Y the elevation (m).

    Each pipe's true cut on its utility's layer (circle, ellipse or box, with a solid hatch),
    the ground line, elevation grid, spacing dimensions under the plot, a label table (id,
    utility and size, top and bottom, cover and depth, offset) and a title block.
    """
    length = sec.length_m
    n = _map_scale(length, 1000.0)  # the SVG's scale: labels and title block say the same
    sheet = _sheet(n)
    mm = sheet.per_mm
    g_ok = np.isfinite(sec.ground_z)
    zs = [p.top_z for p in sec.pipes] + [p.bottom_z for p in sec.pipes] + list(sec.ground_z[g_ok])
    zmax = (max(zs) if zs else 0.0) + 0.5
    zmin = (min(zs) if zs else -1.0) - 0.5
    same: Y = lambda z: z  # noqa: E731  (true scale: Y is the elevation)
    roads = f" — {'、'.join(sec.roads)}" if sec.roads else ""  # the roads the line crosses
    sheet.text(0.0, zmax + 8 * mm, f"{title}{roads}  ·  1:{n} (横竖同比 true scale, H = V)", TITLE, size=1.6)
    sheet.rect(0.0, zmin, length, zmax, GRID)
    for name, x, align in (("A", 0.0, TextEntityAlignment.BOTTOM_LEFT),  # the line's ends, as the SVG's
                           ("B", length, TextEntityAlignment.BOTTOM_RIGHT)):
        sheet.text(x, zmax + 1.5 * mm, name, TITLE, size=1.6, align=align)
    _grid(sheet, length, zmin, zmax, same)
    _ground(sheet, sec.ground_offset_m, sec.ground_z, same)
    for p in sec.pipes:
        _cut(sheet, p)
    dim_y = zmin - 5 * mm
    _spacing_dimensions(sheet, sec, dim_y)
    bottom = _section_table(sheet, sec.pipes, length, dim_y - 7 * mm)
    a, b = sec.line[0], sec.line[-1]
    rows = [
        ("断面线 line (E, N)", f"{a[0]:.2f}, {a[1]:.2f} → {b[0]:.2f}, {b[1]:.2f}"
         + (f"（{len(sec.line)} 点 points）" if len(sec.line) > 2 else "")),
        ("长度 length", f"{length:.2f} m；切割管线 {len(sec.pipes)} 根 pipes cut"),
        ("比例 scale", f"1:{n} 横竖同比 H = V；图形单位 米 drawing units m"),
        ("坐标 coordinates", "X = 里程 chainage, Y = 高程 elevation (m)"),
        ("坐标系 CRS", sec.crs or "twin CRS"),
        ("日期 date", sec.created_at[:19].replace("T", " ")),
        ("说明 note", "斜交或有坡度的管线为真实截面（椭圆） skewed/sloped pipes: true cut (ellipse)"),
    ]
    if sec.along:
        rows.append(("沿线管线 along", "未切割 no cut: " + ", ".join(sec.along)))
    _title_block(sheet, max(length, 160 * mm), bottom - 8 * mm, title, rows)
    return _to_bytes(sheet.doc)


def _cut(sheet: _Sheet, p: SectionPipe) -> None:
    """A pipe's true cut with a solid hatch: box, circle, or ellipse (tilted for skewed and sloped)."""
    layer = sheet.layer(p.utility)
    proposed = p.status == "proposed"
    attribs: dict[str, object] = {"layer": layer}
    if proposed:
        attribs.update(color=_PROPOSED_ACI, linetype="DASHED", ltscale=sheet.per_mm)
    cx, cy = p.offset_m, p.centre_z
    hatch = sheet.msp.add_hatch(dxfattribs={"layer": layer})
    hatch.set_solid_fill(color=256, rgb=None)  # BYLAYER: the utility's colour
    hatch.transparency = 0.5 if proposed else 0.25
    if p.shape == "rect":
        hw, hh = p.cut_half_width_m, p.cut_half_height_m
        box = [(cx - hw, cy - hh), (cx + hw, cy - hh), (cx + hw, cy + hh), (cx - hw, cy + hh)]
        sheet.msp.add_lwpolyline(box, close=True, dxfattribs=attribs)
        hatch.paths.add_polyline_path(box, is_closed=True)
    elif abs(p.cut_half_width_m - p.cut_half_height_m) < 1e-6:
        sheet.msp.add_circle((cx, cy), p.cut_half_width_m, dxfattribs=attribs)
        hatch.paths.add_edge_path().add_arc((cx, cy), p.cut_half_width_m, 0.0, 360.0)
    else:
        rx, ry = p.cut_semi_axes_m
        t = math.radians(p.cut_tilt_deg)
        if rx >= ry:
            major, ratio = (rx * math.cos(t), rx * math.sin(t)), ry / rx
        else:
            major, ratio = (-ry * math.sin(t), ry * math.cos(t)), rx / ry
        sheet.msp.add_ellipse((cx, cy), major_axis=(*major, 0.0), ratio=ratio, dxfattribs=attribs)
        hatch.paths.add_edge_path().add_ellipse((cx, cy), major_axis=major, ratio=ratio)


def _spacing_dimensions(sheet: _Sheet, sec: CrossSection, dim_y: float) -> None:
    """Clear distances between neighbouring cuts as linear dimensions at ``dim_y`` (as the SVG labels them)."""
    for s, lp, rp in zip(sec.spacings, sec.pipes[:-1], sec.pipes[1:], strict=True):
        x1, x2 = lp.offset_m + lp.cut_half_width_m, rp.offset_m - rp.cut_half_width_m
        if s.horizontal_m < 0:
            label = f"v {s.vertical_m:.2f}" if s.vertical_m is not None else ""
        else:
            label = f"{s.horizontal_m:.2f}"
        if abs(x2 - x1) < 1e-3:
            sheet.text((x1 + x2) / 2, dim_y, label, DIMS, size=0.8, align=TextEntityAlignment.TOP_CENTER)
            continue
        sheet.msp.add_linear_dim(base=(min(x1, x2), dim_y), p1=(x1, dim_y), p2=(x2, dim_y),
                                 dimstyle="净距_clear", text=label or " ",
                                 dxfattribs={"layer": DIMS}).render()


def _section_table(sheet: _Sheet, pipes: list[SectionPipe], width: float, top: float) -> float:
    """The label table under the plot: one column per pipe; returns its bottom."""
    rows = (("管线编号 id", 24.0), ("类别 规格 utility / size", 30.0), ("管顶/管底 top / bottom (m)", 18.0),
            ("覆土/埋深 cover / depth (m)", 18.0), ("距离 offset (m)", 12.0))
    bottoms = _table(sheet, top, width, rows)
    f = lambda v: "" if v is None else f"{v:.2f}"  # noqa: E731
    for p in pipes:
        sheet.line((p.offset_m, p.bottom_z), (p.offset_m, top), TABLE, linetype="DASHED",
                   ltscale=sheet.per_mm)
        u = UTILITIES.get(p.utility)
        skew = "" if p.angle_deg >= 85 else f" ∠{p.angle_deg:.0f}°"
        cells = (p.id + (" 拟建 proposed" if p.status == "proposed" else ""),
                 f"{u.name_zh if u else ''} {p.utility}{'/' + p.subtype if p.subtype else ''} {p.size_text}{skew}",
                 f"{p.top_z:.2f} / {p.bottom_z:.2f}", f"{f(p.cover_m)} / {f(p.depth_m)}", f"{p.offset_m:.2f}")
        _column(sheet, p.offset_m, bottoms, cells, sheet.layer(p.utility))
    return bottoms[-1]


# -- the profile ------------------------------------------------------------------------------
def profile_scales(prof: Profile, *, width_px: float = 1200.0, plot_height_px: float = 260.0) -> tuple[int, int]:
    """The horizontal and vertical scales ``(1:n_h, 1:n_v)`` of the profile's SVG drawing."""
    length = max(prof.length_m, 1e-3)
    n_h = _round_scale(1000.0 * length / width_px * svg.PX_PER_MM)
    zs = _profile_z(prof)
    zmin, zmax = float(np.nanmin(zs)) - 0.5, float(np.nanmax(zs)) + 0.5
    n_v = _round_scale((zmax - zmin) * 1000 / plot_height_px * svg.PX_PER_MM, up=True)
    return n_h, n_v


def _profile_z(prof: Profile) -> np.ndarray:
    return np.r_[prof.top_z, prof.invert_z, [n.ground_z for n in prof.nodes if math.isfinite(n.ground_z)],
                 [c.top_z for c in prof.crossings], [c.bottom_z for c in prof.crossings]]


def profile_dxf(prof: Profile, *, vertical_exaggeration: float | None = None,
                title: str = "纵断面 Longitudinal profile") -> bytes:
    """The profile as DXF: X is the chainage (m, true scale), Y the elevation stretched ``k`` times.

    ``vertical_exaggeration`` (``k``): None takes the SVG's (its H and V scales), 1 draws at true
    scale. Ground line, pipe top and invert on the utility's layer, the crossing pipes as
    ellipses with their clearance, the table of points and pipes, and a title block stating the
    scales, ``k`` and the datum.
    """
    n_h, n_v = profile_scales(prof)
    k = max(n_h / n_v, 1.0) if vertical_exaggeration is None else float(vertical_exaggeration)
    if not (math.isfinite(k) and 1.0 <= k <= 100.0):
        raise InputError(f"a profile's vertical exaggeration is 1 to 100, not {vertical_exaggeration!r}",
                         zh=f"纵断面的竖向放大倍数为 1 到 100，而不是 {vertical_exaggeration!r}")
    sheet = _sheet(n_h)
    mm, length = sheet.per_mm, max(prof.length_m, 1e-3)
    zs = _profile_z(prof)
    zmin, zmax = float(np.nanmin(zs)) - 0.5, float(np.nanmax(zs)) + 0.5
    y_of: Y = lambda z: zmin + (np.asarray(z) - zmin) * k  # noqa: E731
    scale = f"H 1:{n_h:g}, V 1:{n_h / k:g}（竖向放大 vertical ×{k:g}）"
    sheet.text(0.0, y_of(zmax) + 8 * mm, f"{title}  ·  {prof.utility}  {prof.nodes[0].id} → {prof.nodes[-1].id}"
               f"  ·  {scale}", TITLE, size=1.6)
    sheet.rect(0.0, zmin, length, float(y_of(zmax)), GRID)
    _grid(sheet, length, zmin, zmax, y_of)
    nodes_ch = np.array([n.chainage_m for n in prof.nodes])
    _ground(sheet, nodes_ch, np.array([n.ground_z for n in prof.nodes]), y_of)
    layer = sheet.layer(prof.utility)
    for z, lw in ((prof.top_z, 35), (prof.invert_z, 18)):
        pts = np.column_stack([prof.chainage_m, y_of(z)]).tolist()
        sheet.msp.add_lwpolyline(pts, dxfattribs={"layer": layer, "lineweight": lw})
    for c in prof.crossings:
        _crossing(sheet, c, y_of, k)
    bottom = _profile_table(sheet, prof, length, zmin, zmin - 6 * mm)
    u = UTILITIES.get(prof.utility)
    rows = [
        ("管线类别 utility", f"{u.name_zh if u else ''} {prof.utility}；管段 {len(prof.segments)} pipes，"
                          f"管线点 {len(prof.nodes)} points"),
        ("起止 from → to", f"{prof.nodes[0].id} → {prof.nodes[-1].id}，{prof.length_m:.2f} m"),
        ("比例 scale", scale),
        ("坐标 coordinates", f"X = 里程 chainage (m)；Y = {zmin:.2f} + (高程 elevation − {zmin:.2f}) × {k:g}"),
        ("交叉管线 crossings", f"{len(prof.crossings)} 根管线与路径交叉 pipes cross the path"),
        ("坐标系 CRS", prof.crs or "twin CRS"),
        ("日期 date", prof.created_at[:19].replace("T", " ")),
    ]
    _title_block(sheet, max(length, 160 * mm), bottom - 8 * mm, title, rows)
    return _to_bytes(sheet.doc)


def _crossing(sheet: _Sheet, c: ProfileCrossing, y_of: Y, k: float) -> None:
    """A crossing pipe: an ellipse of its height (stretched ``k`` times), labelled with its clearance."""
    layer = sheet.layer(c.utility)
    r = max((c.top_z - c.bottom_z) / 2, 1e-3)
    cy = float(y_of(c.centre_z))
    sheet.msp.add_ellipse((c.chainage_m, cy), major_axis=(0.0, r * k, 0.0), ratio=1.0 / k,
                          dxfattribs={"layer": layer})
    sheet.text(c.chainage_m + sheet.per_mm, cy + r * k + sheet.per_mm,
               f"{c.id} {c.utility} {c.size_text} 净距 {c.vertical_clear_m:+.2f}", layer, size=0.8, rotation=60.0)


def _profile_table(sheet: _Sheet, prof: Profile, width: float, plot_bottom: float, top: float) -> float:
    """The table under the plot: per point and per pipe (as the SVG); returns its bottom."""
    rows = (("点号 point", 20.0), ("里程 chainage (m)", 14.0), ("地面高程 ground (m)", 14.0),
            ("管顶高程 top (m)", 14.0), ("管底高程 invert (m)", 14.0), ("埋深 depth (m)", 12.0),
            ("管段 坡度 pipe · slope ‰", 22.0))
    bottoms = _table(sheet, top, width, rows)
    min_gap = 3 * sheet.per_mm  # closer points are drawn but not labelled, to stay legible
    last = -math.inf
    for n in prof.nodes:
        sheet.line((n.chainage_m, plot_bottom), (n.chainage_m, top), TABLE)
        if n.chainage_m - last < min_gap and n is not prof.nodes[-1]:
            continue
        last = n.chainage_m
        cells = (n.id, f"{n.chainage_m:.2f}", f"{n.ground_z:.2f}", f"{n.top_z:.2f}", f"{n.invert_z:.2f}",
                 f"{n.depth_m:.2f}")
        _column(sheet, n.chainage_m, bottoms[:-1], cells, TABLE)
    last = -math.inf
    for s in prof.segments:
        xm = (s.chainage_start_m + s.chainage_end_m) / 2
        if xm - last < min_gap:
            continue
        last = xm
        label = f"{s.size_text} i={s.slope_permille:+.2f}‰" + (" 逆坡 reverse" if s.reverse_grade else "")
        _column(sheet, xm, bottoms[-1:], (label,), TABLE)
    return bottoms[-1]
