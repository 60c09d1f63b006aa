"""The CAD pipeline drawing (管线图) as DXF, through ezdxf.

One layer per utility (``JS_给水``, ...) in its CJJ 61 colour (:data:`twin.domain.UTILITIES`,
the one definition the tiles use too); each segment a 3D polyline (twin CRS, metres, normal
heights); each point a block reference of its symbol (valve, manhole, hydrant, plain point)
at its ground position; each segment labelled at its middle, along it, with size, material
and depth (``DN300 球墨铸铁 H1.40``, H being the depths at its ends when they differ).
"""

from __future__ import annotations

from pathlib import Path

import ezdxf
import numpy as np
import pyarrow as pa
import shapely
from ezdxf import colors

from twin.domain import UTILITIES

__all__ = ["write_dxf", "layer_name", "SYMBOLS", "TEXT_HEIGHT_M"]

#: Label height in drawing units (metres): legible at 1:500, the scale of pipeline maps.
TEXT_HEIGHT_M = 0.5
#: Appurtenance -> the block drawn for it; other points get ``点``.
SYMBOLS: dict[str, str] = {
    "valve": "阀门", "valve_chamber": "阀门井", "manhole": "检查井", "cable_manhole": "检查井",
    "handhole": "检查井", "hydrant": "消火栓",
}
_POINT = "点"
_LABEL = ("size_text", "material")  # what a pipe's label says, then its depths
_DEPTHS = ("from_depth_m", "to_depth_m")
_STYLE = "管线注记"


def layer_name(code: str) -> str:
    """The drawing layer of a utility: ``JS_给水``."""
    u = UTILITIES.get(code)
    return f"{code}_{u.name_zh}" if u else code


def _blocks(doc: ezdxf.document.Drawing) -> None:
    """The point symbols, 1 m across, drawn BYLAYER so they take their utility's colour."""
    r = 0.5
    point = doc.blocks.new(_POINT)
    point.add_circle((0, 0), 0.15)
    valve = doc.blocks.new("阀门")
    valve.add_circle((0, 0), r)
    valve.add_line((-r, -r), (r, r))
    valve.add_line((-r, r), (r, -r))
    chamber = doc.blocks.new("阀门井")
    chamber.add_lwpolyline([(-r, -r), (r, -r), (r, r), (-r, r)], close=True)
    chamber.add_line((-r, -r), (r, r))
    doc.blocks.new("检查井").add_circle((0, 0), r)
    hydrant = doc.blocks.new("消火栓")
    hydrant.add_circle((0, 0), r)
    hydrant.add_circle((0, 0), r / 2)


def _labels(segments: dict) -> list[str]:
    """``DN300 球墨铸铁 H1.40`` per segment (size, material, depth at the ends)."""
    out = []
    for size, material, d0, d1 in zip(segments["size_text"], segments["material"],
                                      segments["from_depth_m"], segments["to_depth_m"], strict=True):
        parts = [p for p in (size, material) if p]
        if d0 is not None and d1 is not None and abs(d0 - d1) >= 0.005:
            parts.append(f"H{d0:.2f}-{d1:.2f}")
        elif d0 is not None or d1 is not None:
            parts.append(f"H{(d0 if d0 is not None else d1):.2f}")
        out.append(" ".join(parts))
    return out


def write_dxf(out: Path, points: pa.Table, segments: pa.Table) -> list[Path]:
    """Write the drawing of ``points`` and ``segments`` (Arrow tables with WKB ``geometry``)."""
    doc = ezdxf.new("R2010", setup=True, units=ezdxf.units.M)
    doc.header["$INSUNITS"] = ezdxf.units.M
    doc.styles.add(_STYLE, font="simsun.ttc")
    _blocks(doc)
    codes = sorted(set(points["utility"].to_pylist()) | set(segments["utility"].to_pylist()))
    for code in codes:
        rgb = UTILITIES[code].rgb if code in UTILITIES else (255, 255, 255)
        layer = doc.layers.add(layer_name(code))
        layer.color = _aci(rgb)
        layer.rgb = rgb
    msp = doc.modelspace()
    seg = segments.select(["utility", *_LABEL, *_DEPTHS]).to_pydict()
    lines = shapely.from_wkb(segments["geometry"].to_numpy(zero_copy_only=False))
    coords = shapely.get_coordinates(lines, include_z=True)
    counts = shapely.get_num_coordinates(lines)
    ends = np.cumsum(counts)
    labels = _labels(seg)
    for k, (code, stop) in enumerate(zip(seg["utility"], ends, strict=True)):
        xyz = coords[stop - counts[k]:stop]
        attribs = {"layer": layer_name(code)}
        msp.add_polyline3d(xyz.tolist(), dxfattribs=attribs)
        if labels[k]:
            mid, angle = _middle(xyz)
            msp.add_text(labels[k], height=TEXT_HEIGHT_M, rotation=angle,
                         dxfattribs={**attribs, "style": _STYLE}).set_placement(
                mid, align=ezdxf.enums.TextEntityAlignment.BOTTOM_CENTER)
    pts = shapely.get_coordinates(shapely.from_wkb(points["geometry"].to_numpy(zero_copy_only=False)),
                                  include_z=True)
    for code, app, xyz in zip(points["utility"].to_pylist(), points["appurtenance"].to_pylist(), pts,
                              strict=True):
        msp.add_blockref(SYMBOLS.get(app, _POINT), xyz.tolist(), dxfattribs={"layer": layer_name(code)})
    out.parent.mkdir(parents=True, exist_ok=True)
    doc.saveas(out, encoding="utf-8")
    return [out]


def _aci(rgb: tuple[int, int, int]) -> int:
    """The AutoCAD colour index nearest ``rgb`` (for readers without true colour)."""
    aci = colors.DXF_DEFAULT_COLORS
    best = min(range(1, 256), key=lambda i: sum((a - b) ** 2 for a, b in zip(colors.int2rgb(aci[i]), rgb,
                                                                               strict=True)))
    return best


def _middle(xyz: np.ndarray) -> tuple[tuple[float, float, float], float]:
    """The point halfway along a polyline (plan length) and its direction there (degrees)."""
    d = np.hypot(*np.diff(xyz[:, :2], axis=0).T)
    half = d.sum() / 2
    i = int(np.searchsorted(np.cumsum(d), half))
    i = min(i, len(d) - 1)
    before = np.cumsum(d)[i] - d[i]
    t = (half - before) / d[i] if d[i] > 0 else 0.0
    p = xyz[i] + t * (xyz[i + 1] - xyz[i])
    angle = float(np.degrees(np.arctan2(xyz[i + 1, 1] - xyz[i, 1], xyz[i + 1, 0] - xyz[i, 0])))
    if angle > 90 or angle < -90:  # labels read left to right
        angle -= 180 * np.sign(angle)
    return (float(p[0]), float(p[1]), float(p[2])), angle
