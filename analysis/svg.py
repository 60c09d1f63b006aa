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
    "PX_PER_MM",
]

#: SVG user units (CSS pixels) per millimetre of paper.
PX_PER_MM = 96 / 25.4


def esc(value: object) -> str:
    """Escape text for an SVG/HTML text node."""
    return escape(str(value))


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
    parts = [el("rect", x=float(x), y=float(y), width=float(width), height=height, fill="#fff",
                stroke="#000", stroke_width=0.8),
             text(x + 6, y + 16, title, class_="title")]
    for i, (label, value) in enumerate(rows):
        yy = y + 22 + line_h * (i + 1) - 3
        parts.append(text(x + 6, yy, label, class_="small", fill="#555"))
        parts.append(text(x + 110, yy, value, class_="small"))
    return el("g", "".join(parts), class_="title-block"), height
