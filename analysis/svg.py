"""Small SVG helpers shared by the drawings (cross-section, profile, proposal report).

No dependency: elements are built as strings with their text escaped. Coordinates are SVG
user units (pixels at 96 dpi); each drawing maps metres to units itself and says how in its
root element (``data-*`` attributes), so tests and other tools can read positions back.

>>> el("circle", cx=1, cy=2.5, r=0.25, fill="#00ffff")
'<circle cx="1" cy="2.5" r="0.25" fill="#00ffff"/>'
>>> text(0, 0, "a < b")
'<text x="0" y="0">a &lt; b</text>'
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from xml.sax.saxutils import escape, quoteattr

from twin.domain import SUBTYPE_PARENT, UTILITIES

__all__ = [
    "esc",
    "fmt",
    "el",
    "text",
    "polyline",
    "document",
    "utility_colour",
    "nice_step",
    "elevation_grid",
    "table_frame",
    "scale_bar",
    "title_block",
    "text_width",
    "text_box",
    "spread",
    "spread_rows",
    "PX_PER_MM",
]

#: SVG user units (CSS pixels) per millimetre of paper.
PX_PER_MM = 96 / 25.4


def esc(value: object) -> str:
    """Escape text for an SVG/HTML text node."""
    return escape(str(value))


#: Estimated advance of a character in ems (DejaVu Sans / Noto Sans CJK, rounded up): CJK,
#: full-width and East Asian ambiguous (—, °, ·, → may come from the CJK font) 1, wide
#: symbols 1, narrow Latin 0.42, capitals 0.8, the rest 0.65.
_NARROW = frozenset(" .,:;!|'()[]ijlrtfI/·-")
_WIDE = frozenset("mwMW%@→∠×‰")


def text_width(content: object, size_px: float, *, bold: bool = False) -> float:
    """Estimated width (user units) of a one-line label at a font size: a bound, not a measure.

    >>> text_width("DN300", 10.0), text_width("给水", 10.0)
    (35.5, 20.0)
    """
    ems = 0.0
    for ch in str(content):
        if unicodedata.east_asian_width(ch) in "WFA" or ch in _WIDE:
            ems += 1.0
        elif ch in _NARROW:
            ems += 0.42
        elif ch.isupper():
            ems += 0.8
        else:
            ems += 0.65
    return ems * size_px * (1.1 if bold else 1.0)


def text_box(x: float, y: float, content: object, size_px: float, *, anchor: str = "start",
             bold: bool = False) -> tuple[float, float, float, float]:
    """The estimated box ``(x0, y0, x1, y1)`` of a label drawn at baseline (x, y) with an anchor."""
    w = text_width(content, size_px, bold=bold)
    x0 = x - {"start": 0.0, "middle": w / 2, "end": w}[anchor]
    return x0, y - 0.85 * size_px, x0 + w, y + 0.25 * size_px


def spread(ideal: Sequence[float], widths: Sequence[float], *, lo: float = -math.inf,
           hi: float = math.inf, gap: float = 2.0) -> list[float]:
    """Centres for boxes of ``widths`` wanted at ``ideal`` centres on one line: in the same order,
    at least ``gap`` apart, within ``[lo, hi]`` where there is room, each as near its ideal as can
    be (least squares: neighbours that would overlap are moved as one block to their mean).
    """
    order = sorted(range(len(ideal)), key=lambda i: (ideal[i], i))
    blocks: list[list] = []  # [items, width, sum of wanted left edges, left edge]
    for i in order:
        w = widths[i] + gap
        block = [[i], w, ideal[i] - w / 2]
        block.append(_clamp(block[2], lo, hi - w))
        while blocks and blocks[-1][3] + blocks[-1][1] > block[3] + 1e-9:
            prev = blocks.pop()
            total = prev[2] + block[2] - len(block[0]) * prev[1]
            block = [prev[0] + block[0], prev[1] + block[1], total]
            block.append(_clamp(total / len(block[0]), lo, hi - block[1]))
        blocks.append(block)
    centres = [0.0] * len(ideal)
    for items, _w, _s, left in blocks:
        for i in items:
            centres[i] = left + (widths[i] + gap) / 2
            left += widths[i] + gap
    return centres


def _clamp(v: float, lo: float, hi: float) -> float:
    return lo if hi < lo else min(max(v, lo), hi)


def spread_rows(ideal: Sequence[float], widths: Sequence[float], *, lo: float, hi: float,
                gap: float = 2.0) -> tuple[list[float], list[int]]:
    """:func:`spread` over as few rows as fit ``[lo, hi]``: neighbours in order take turns.

    Returns each box's centre and row (0 the first).
    """
    order = sorted(range(len(ideal)), key=lambda i: (ideal[i], i))
    rows = 1
    while rows < len(order) and max(
            sum(widths[i] + gap for i in order[r::rows]) for r in range(rows)) > hi - lo:
        rows += 1
    centres, row_of = [0.0] * len(ideal), [0] * len(ideal)
    for r in range(rows):
        items = order[r::rows]
        for i, c in zip(items, spread([ideal[i] for i in items], [widths[i] for i in items],
                                      lo=lo, hi=hi, gap=gap), strict=True):
            centres[i], row_of[i] = c, r
    return centres, row_of


def fmt(value: float) -> str:
    """A coordinate with at most 3 decimals and no trailing zeros."""
    s = f"{float(value):.3f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def _attrs(attrs: dict[str, object]) -> str:
    parts = []
    for k, v in attrs.items():
        if v is None or v is False:
            continue
        name = k.rstrip("_").replace("_", "-")
        val = fmt(v) if isinstance(v, float) else str(v)
        parts.append(f" {name}={quoteattr(val)}")
    return "".join(parts)


def el(tag: str, body: str | None = None, **attrs: object) -> str:
    """One element; ``body`` is inserted as is (already SVG), attribute names ``a_b`` become ``a-b``."""
    if body is None:
        return f"<{tag}{_attrs(attrs)}/>"
    return f"<{tag}{_attrs(attrs)}>{body}</{tag}>"


def text(x: float, y: float, content: object, **attrs: object) -> str:
    """A text element with its content escaped."""
    return el("text", esc(content), x=float(x), y=float(y), **attrs)


def polyline(points: Iterable[Sequence[float]], **attrs: object) -> str:
    """A polyline through ``(x, y)`` points (user units)."""
    pts = " ".join(f"{fmt(x)},{fmt(y)}" for x, y in points)
    return el("polyline", points=pts, **attrs)


def document(width: float, height: float, body: Iterable[str], *, title: str = "",
             **attrs: object) -> str:
    """A standalone SVG document of the given size (user units) with a white background."""
    style = (
        "text{font-family:'DejaVu Sans','Noto Sans CJK SC',Arial,sans-serif;font-size:11px;fill:#222}"
        ".small{font-size:9px}.title{font-size:14px;font-weight:bold}.dim{stroke:#555;stroke-width:0.7}"
        ".ground{fill:none;stroke:#6b4f2a;stroke-width:1.6}.grid{stroke:#ddd;stroke-width:0.5}"
    )
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{fmt(width)}" height="{fmt(height)}" '
            f'viewBox="0 0 {fmt(width)} {fmt(height)}"{_attrs(attrs)}>')
    parts = [head, el("title", esc(title)) if title else "", el("style", style),
             el("rect", x=0.0, y=0.0, width=float(width), height=float(height), fill="#ffffff"),
             *body, "</svg>"]
    return "\n".join(p for p in parts if p)


def utility_colour(code: str | None) -> str:
    """The CJJ 61 appendix B colour of a utility (parent or subtype code) as ``#rrggbb``."""
    code = (code or "QT").upper()
    u = UTILITIES.get(SUBTYPE_PARENT.get(code, code)) or UTILITIES["QT"]
    return "#{:02x}{:02x}{:02x}".format(*u.rgb)


def nice_step(span: float, target: int = 5) -> float:
    """A round step (1, 2, 5 x 10^k) dividing ``span`` into about ``target`` parts."""
    if not span > 0 or not math.isfinite(span):
        return 1.0
    raw = span / max(target, 1)
    k = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * k:
            return float(m * k)
    return float(10 * k)


def elevation_grid(x: float, width: float, zmin: float, zmax: float, y_of: Callable[[float], float]) -> str:
    """Horizontal lines at round elevations from ``zmin`` to ``zmax``, labelled left of ``x``.

    ``y_of`` maps an elevation (m) to a user-unit y.
    """
    step = nice_step(zmax - zmin, 5)
    px_per_unit = abs(float(y_of(zmax)) - float(y_of(zmin))) / max(zmax - zmin, 1e-9)
    while step * px_per_unit < 12.0 and px_per_unit > 0:  # labels (9 px) never overprint
        step = nice_step(step * 2.5, 1)
    z = math.ceil(zmin / step) * step
    grid = []
    while z <= zmax + 1e-9:
        y = float(y_of(z))
        grid.append(el("line", x1=x, y1=y, x2=x + width, y2=y, class_="grid"))
        grid.append(text(x - 6, y + 3, f"{z:.1f}", class_="small", text_anchor="end"))
        z += step
    return el("g", "".join(grid), class_="elevation-grid")


def table_frame(x: float, y: float, width: float, rows: Sequence[tuple[str, float]], *,
                label_dy: float = 0.0) -> tuple[list[str], float]:
    """Framed table rows ``(name, height)`` from (x, y), named left of ``x``.

    Returns the elements and the y under the last row.
    """
    parts = []
    for name, h in rows:
        parts.append(el("rect", x=x, y=y, width=width, height=h, fill="none", stroke="#999", stroke_width=0.5))
        parts.append(text(x - 6, y + h / 2 + label_dy, name, class_="small", text_anchor="end"))
        y += h
    return parts, y


def scale_bar(x: float, y: float, px_per_m: float, *, length_m: float | None = None,
              label: str = "m") -> str:
    """A black-and-white scale bar of ``length_m`` metres (a round length when None) at (x, y)."""
    if length_m is None:
        length_m = nice_step(150 / px_per_m, 1)
    n = 4
    w = length_m * px_per_m / n
    parts = []
    for i in range(n):
        parts.append(el("rect", x=x + i * w, y=float(y), width=w, height=4.0,
                        fill="#000" if i % 2 == 0 else "#fff", stroke="#000", stroke_width=0.5))
    parts.append(text(x, y - 3, "0", class_="small", text_anchor="middle"))
    parts.append(text(x + n * w, y - 3, f"{length_m:g} {label}", class_="small", text_anchor="middle"))
    return el("g", "".join(parts), class_="scale-bar", data_length_m=float(length_m),
              data_px=float(n * w))


def title_block(x: float, y: float, width: float, rows: Sequence[tuple[str, str]], *,
                title: str) -> tuple[str, float]:
    """A framed title block of ``(label, value)`` rows at (x, y); returns ``(svg, height)``."""
    line_h = 14.0
    height = 22.0 + line_h * len(rows) + 6.0
    value_x = max(110.0, max((text_width(label, 9.0) for label, _ in rows), default=0.0) + 16.0)
    parts = [el("rect", x=float(x), y=float(y), width=float(width), height=height, fill="#fff",
                stroke="#000", stroke_width=0.8),
             text(x + 6, y + 16, title, class_="title")]
    for i, (label, value) in enumerate(rows):
        yy = y + 22 + line_h * (i + 1) - 3
        parts.append(text(x + 6, yy, label, class_="small", fill="#555"))
        parts.append(text(x + value_x, yy, value, class_="small"))
    return el("g", "".join(parts), class_="title-block"), height
