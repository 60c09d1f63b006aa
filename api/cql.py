"""CQL2 filters (OGC API - Features Part 3) compiled to bound SQL over a collection's queryables.

pygeofilter parses the text (``filter-lang=cql2-text``) or JSON (``cql2-json``) encoding; the
tree is compiled here into a SQL condition whose every value is a bound parameter (``bind``
returns its placeholder), never text of the request: property names are checked against the
collection's queryables (the catalogue's ``queryable`` columns) and become the column name
the catalogue declares, operators come from fixed tables below.

Supported: comparisons (``=  <>  <  <=  >  >=``), ``AND``, ``OR``, ``NOT``, ``LIKE`` (``%``
and ``_``; ``CASEI`` is not supported), ``IN``, ``BETWEEN``, ``IS NULL``, and the spatial
predicates ``S_INTERSECTS`` (and ``S_DISJOINT``, ``S_WITHIN``, ``S_CONTAINS``, ``S_TOUCHES``,
``S_CROSSES``, ``S_OVERLAPS``, ``S_EQUALS``) of the feature's ``geometry`` against a literal
``BBOX`` or geometry (POINT, LINESTRING, POLYGON, MULTI...) in ``filter-crs`` (default CRS84).
Anything else, an unknown property, a value of the wrong type or a malformed filter is an
:class:`~twin.errors.InputError` (400) that names the token and where it is.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import lark
from pygeofilter import ast, values
from pygeofilter.parsers.cql2_json import parse as parse_cql2_json
from pygeofilter.parsers.cql2_text import parse as parse_cql2_text

from twin.errors import InputError

__all__ = ["FILTER_LANGS", "LANG_ALIASES", "parse_filter", "compile_filter", "Queryable", "GEOMETRY_NAMES"]

FILTER_LANGS = ("cql2-text", "cql2-json")
#: Earlier drafts' names still sent by clients: GDAL's OAPIF driver (3.6) pushes ``-where``
#: down as ``filter-lang=cql-text``, a subset of CQL2 text.
LANG_ALIASES = {"cql-text": "cql2-text", "cql-json": "cql2-json"}
#: Names a filter may give the feature geometry.
GEOMETRY_NAMES = frozenset({"geometry", "geom"})
MAX_DEPTH = 50

_COMPARISON = {ast.ComparisonOp.EQ: "=", ast.ComparisonOp.NE: "<>", ast.ComparisonOp.LT: "<",
               ast.ComparisonOp.LE: "<=", ast.ComparisonOp.GT: ">", ast.ComparisonOp.GE: ">="}
_SPATIAL = {
    ast.SpatialComparisonOp.INTERSECTS: "ST_Intersects", ast.SpatialComparisonOp.DISJOINT: "ST_Disjoint",
    ast.SpatialComparisonOp.WITHIN: "ST_Within", ast.SpatialComparisonOp.CONTAINS: "ST_Contains",
    ast.SpatialComparisonOp.TOUCHES: "ST_Touches", ast.SpatialComparisonOp.CROSSES: "ST_Crosses",
    ast.SpatialComparisonOp.OVERLAPS: "ST_Overlaps", ast.SpatialComparisonOp.EQUALS: "ST_Equals",
}


class Queryable(Protocol):
    name: str
    type: str  # JSON Schema type


def _syntax(exc: lark.exceptions.UnexpectedInput, text: str) -> InputError:
    col = getattr(exc, "column", None)
    token = getattr(exc, "token", None)
    where = f" at column {col}" if isinstance(col, int) and col > 0 else ""
    char = getattr(exc, "char", None)
    what = (f"unexpected {str(token)[:40]!r}" if token is not None
            else f"unexpected {char!r}" if char else "unexpected input")
    what_zh = (f"出现意外的 {str(token)[:40]!r}" if token is not None
               else f"出现意外的字符 {char!r}" if char else "有无法识别的输入")
    if isinstance(exc, lark.exceptions.UnexpectedEOF) or (token is not None and token.type == "$END"):
        what, where, what_zh = "the filter ends too early", "", "过早结束"
    pointer = ""
    if isinstance(col, int) and col > 0 and "\n" not in text and len(text) <= 200:
        pointer = f": {text}  <-- here: {text[:col - 1]}^"
    where_zh = f"（第 {col} 个字符处）" if where else ""
    return InputError(f"filter: {what}{where} (CQL2 text){pointer}",
                      zh=f"filter：CQL2 文本{what_zh}{where_zh}{pointer}")


def parse_filter(text: str, lang: str | None) -> ast.Node:
    """The filter's syntax tree; a malformed filter is a 400 naming where it went wrong."""
    lang = (lang or "cql2-text").lower()
    lang = LANG_ALIASES.get(lang, lang)
    if lang not in FILTER_LANGS:
        raise InputError(f"filter-lang: {lang[:40]!r} is not supported; one of {', '.join(FILTER_LANGS)}",
                         zh=f"filter-lang：不支持 {lang[:40]!r}；可选 {', '.join(FILTER_LANGS)}")
    if "\x00" in text:
        raise InputError("filter: NUL characters are not allowed", zh="filter：不允许出现 NUL 字符")
    if lang == "cql2-json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"filter: not JSON at character {exc.pos + 1}: {exc.msg}",
                             zh=f"filter：第 {exc.pos + 1} 个字符处不是有效的 JSON：{exc.msg}") from None
        except RecursionError:
            raise InputError("filter: nested too deeply", zh="filter：嵌套层数过多") from None
        try:
            return parse_cql2_json(doc)
        except (KeyError, ValueError, TypeError, AttributeError, IndexError, RecursionError,
                lark.exceptions.LarkError) as exc:
            raise InputError(f"filter: not CQL2 JSON ({type(exc).__name__}: {str(exc)[:120]}); "
                             'e.g. {"op": "=", "args": [{"property": "utility"}, "JS"]}',
                             zh=f"filter：不是 CQL2 JSON（{type(exc).__name__}: {str(exc)[:120]}）；"
                             '例如 {"op": "=", "args": [{"property": "utility"}, "JS"]}') from None
    try:
        return parse_cql2_text(text)
    except lark.exceptions.UnexpectedInput as exc:
        raise _syntax(exc, text) from None
    except (lark.exceptions.LarkError, ValueError, TypeError, KeyError, AttributeError,
            RecursionError) as exc:
        raise InputError(f"filter: not CQL2 text ({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__})",
                         zh=f"filter：不是有效的 CQL2 文本（{str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}）"
                         ) from None


@dataclass
class _Compiler:
    fields: Mapping[str, Queryable]
    bind: Callable[[Any], str]
    geometry: Callable[[dict], str]  # GeoJSON geometry (filter CRS) -> SQL in the twin's CRS
    json_bbox: bool  # pygeofilter reads a CQL2-JSON bbox [minx, miny, maxx, maxy] into x1, x2, y1, y2

    def attribute(self, node: Any) -> Queryable:
        if not isinstance(node, ast.Attribute):
            raise InputError(f"filter: a property must come first in a comparison, not {_show(node)}",
                             zh=f"filter：比较式须以属性开头，而不是 {_show(node)}")
        f = self.fields.get(node.name)
        if f is None:
            raise InputError(f"filter: unknown property {node.name[:40]!r}; the queryables are "
                             f"{', '.join(self.fields) or 'none'}",
                             zh=f"filter：未知属性 {node.name[:40]!r}；可查询的属性为 {', '.join(self.fields) or '无'}")
        return f

    def value(self, f: Queryable, v: Any) -> str:
        ok = {"string": isinstance(v, str), "boolean": isinstance(v, bool),
              "integer": isinstance(v, int) and not isinstance(v, bool),
              "number": isinstance(v, int | float) and not isinstance(v, bool)}.get(f.type, False)
        if not ok:
            raise InputError(f"filter: {f.name} takes a {f.type}, not {_show(v)}",
                             zh=f"filter：{f.name} 须为 {f.type}，而不是 {_show(v)}")
        if f.type == "integer" and abs(v) > 2**31 - 1:
            raise InputError(f"filter: {f.name}: {v} is out of range",
                             zh=f"filter：{f.name} 的值 {v} 超出范围")
        if isinstance(v, float) and v != v:
            raise InputError(f"filter: {f.name}: not a number", zh=f"filter：{f.name} 不是数字")
        return self.bind(v)

    def spatial(self, node: Any) -> str:
        if isinstance(node, ast.Attribute):
            if node.name not in GEOMETRY_NAMES:
                raise InputError(f"filter: {node.name[:40]!r} is not the geometry; say 'geometry'",
                                 zh=f"filter：{node.name[:40]!r} 不是几何字段；请用 'geometry'")
            return "geom"
        if isinstance(node, ast.Function) and node.name.lower() == "bbox":
            args = node.arguments
            if len(args) not in (4, 6) or not all(isinstance(a, int | float) for a in args):
                raise InputError("filter: BBOX takes 4 numbers (minx, miny, maxx, maxy)",
                                 zh="filter：BBOX 需要 4 个数（minx, miny, maxx, maxy）")
            return self.geometry(_box(*(args[:2] + args[-2:] if len(args) == 4 else
                                        [args[0], args[1], args[3], args[4]])))
        if isinstance(node, values.Envelope):
            x0, y0, x1, y1 = ((node.x1, node.x2, node.y1, node.y2) if self.json_bbox
                              else (node.x1, node.y1, node.x2, node.y2))
            return self.geometry(_box(x0, y0, x1, y1))
        if isinstance(node, values.Geometry):
            return self.geometry(dict(node.geometry))
        raise InputError(f"filter: a spatial predicate compares the geometry with a BBOX or a "
                         f"geometry, not {_show(node)}",
                         zh=f"filter：空间谓词须将几何与 BBOX 或几何比较，而不是 {_show(node)}")

    def compile(self, node: Any, depth: int = 0) -> str:
        if depth > MAX_DEPTH:
            raise InputError(f"filter: nested deeper than {MAX_DEPTH}",
                             zh=f"filter：嵌套超过 {MAX_DEPTH} 层")
        if isinstance(node, ast.Combination):
            op = "AND" if isinstance(node, ast.And) else "OR"
            return f"({self.compile(node.lhs, depth + 1)} {op} {self.compile(node.rhs, depth + 1)})"
        if isinstance(node, ast.Not):
            return f"(NOT {self.compile(node.sub_node, depth + 1)})"
        if isinstance(node, ast.Comparison):
            f = self.attribute(node.lhs)
            return f"({f.name} {_COMPARISON[node.op]} {self.value(f, node.rhs)})"
        if isinstance(node, ast.Between):
            f = self.attribute(node.lhs)
            neg = "NOT " if node.not_ else ""
            return f"({f.name} {neg}BETWEEN {self.value(f, node.low)} AND {self.value(f, node.high)})"
        if isinstance(node, ast.Like):
            f = self.attribute(node.lhs)
            if f.type != "string":
                raise InputError(f"filter: LIKE compares text; {f.name} is a {f.type}",
                                 zh=f"filter：LIKE 只用于文本；{f.name} 是 {f.type}")
            op = ("NOT " if node.not_ else "") + ("ILIKE" if node.nocase else "LIKE")
            return f"({f.name} {op} {self.value(f, node.pattern)})"
        if isinstance(node, ast.In):
            f = self.attribute(node.lhs)
            if not node.sub_nodes:
                raise InputError("filter: IN needs at least one value",
                                 zh="filter：IN 至少需要一个值")
            items = ", ".join(self.value(f, v) for v in node.sub_nodes)
            return f"({f.name} {'NOT ' if node.not_ else ''}IN ({items}))"
        if isinstance(node, ast.IsNull):
            f = self.attribute(node.lhs)
            return f"({f.name} IS {'NOT ' if node.not_ else ''}NULL)"
        if isinstance(node, ast.SpatialComparisonPredicate) and node.op in _SPATIAL:
            return f"{_SPATIAL[node.op]}({self.spatial(node.lhs)}, {self.spatial(node.rhs)})"
        if isinstance(node, ast.BBox):
            box = self.geometry(_box(node.minx, node.miny, node.maxx, node.maxy))
            return f"ST_Intersects({self.spatial(node.lhs)}, {box})"
        if isinstance(node, bool):
            return "true" if node else "false"
        raise InputError(f"filter: {_show(node)} is not supported here; see /conformance",
                         zh=f"filter：此处不支持 {_show(node)}；见 /conformance")


def _box(x0: float, y0: float, x1: float, y1: float) -> dict:
    if x0 > x1 or y0 > y1:
        raise InputError("filter: BBOX minimum larger than its maximum",
                         zh="filter：BBOX 的最小值大于最大值")
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    return {"type": "Polygon", "coordinates": [ring]}


def _show(node: Any) -> str:
    if isinstance(node, ast.Node):
        return f"{type(node).__name__.lower()} ({str(node)[:60]})"
    return repr(node)[:60]


def compile_filter(tree: ast.Node, fields: Mapping[str, Queryable], bind: Callable[[Any], str],
                   geometry: Callable[[dict], str], *, lang: str | None = None) -> str:
    """The SQL condition of ``tree`` (values bound through ``bind``)."""
    json_bbox = LANG_ALIASES.get((lang or "").lower(), (lang or "").lower()) == "cql2-json"
    return _Compiler(fields, bind, geometry, json_bbox).compile(tree)
