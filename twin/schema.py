"""The catalogue of every feature column: one declaration, everything else derived from it.

Each column of the twin's feature tables (``node``, ``segment``, ``valve``, ``source``,
``customer``) and of ``proposal`` is declared here once: its name, JSON type, unit, Chinese and
English label, a description, and what may be done with it:

- ``editable``: an attribute edit may set it (under ``edit_as`` when the edit takes the survey's
  own field, such as ``size`` for the sizes or ``pressure`` for MPa or kV);
- ``queryable``: a property filter of the features API (OGC API - Features Part 3);
- ``exported``: written to GIS exports and served as a feature property;
- ``dimension``: a statistics table may group by it (under that name);
- ``surveyed``: the survey table's field of the same name, carried as it is (text) or rounded
  (counts);
- ``on_merge``: what merging two pipes does with it: ``same`` (must be equal to merge) or
  ``first`` (the first pipe's is kept, with a warning when they differ);
- ``versioning``: bookkeeping of the versioned store (scope, version, valid_from), not content;
- ``reads``: the in-memory models that read it (``network`` for :mod:`analysis.network`,
  ``scan`` for the whole-network scan, ``shutoff`` for the valve-segment model, ``tiles`` for
  the tiles' feature metadata).

The features API's fields and queryables, the edit whitelists, the statistics dimensions and the
analyses' column lists are all derived from :data:`CATALOGUE`; ``tests/twin/test_schema.py``
checks the catalogue against the database and that no hand-kept list is left.

>>> [c.name for c in columns("valve", editable=True)]
['kind', 'operable', 'normally_closed']
>>> label("segment", "material")
'材质 material'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from twin.domain import STATUSES, UTILITIES

__all__ = [
    "Column",
    "CATALOGUE",
    "KINDS",
    "columns",
    "names",
    "column",
    "label",
    "edit_types",
    "sql_columns",
    "dimensions",
    "PYTHON_TYPES",
    "SQL_TYPES",
]

#: JSON Schema type -> the Python type an edit's value must have.
PYTHON_TYPES: Final[dict[str, type]] = {"string": str, "number": float, "integer": int, "boolean": bool}
#: JSON Schema type -> the PostgreSQL type the loader writes.
SQL_TYPES: Final[dict[str, str]] = {"string": "text", "number": "float8", "integer": "int4", "boolean": "bool"}


@dataclass(frozen=True)
class Column:
    """One column of a feature table, and what the layers above may do with it."""

    name: str
    type: str  # JSON Schema type: string, number, integer, boolean
    label_zh: str
    label_en: str
    description: str
    unit: str | None = None
    editable: bool = False
    edit_as: str | None = None
    queryable: bool = False
    exported: bool = True
    dimension: str | None = None
    surveyed: bool = False
    on_merge: str | None = None
    versioning: bool = False
    reads: frozenset[str] = frozenset()
    format: str | None = None
    enum: tuple[Any, ...] | None = None

    @property
    def edit_name(self) -> str:
        """The name an attribute edit takes this column under."""
        return self.edit_as or self.name

    @property
    def label(self) -> str:
        """Chinese first, then English: ``材质 material``."""
        return f"{self.label_zh} {self.label_en}"


def _c(name: str, type_: str, zh: str, en: str, description: str, *, reads: str = "", **kw: Any) -> Column:
    return Column(name, type_, zh, en, description, reads=frozenset(reads.split()), **kw)


_NET = "network scan"  # read by the network model and by the whole-network scan
_ALL = "network scan shutoff tiles"
# "checks": read by the import's checks over the whole survey (ingest.prepare keeps these of
# each point in its compact columns; the chunked reader parses them rather than carrying them)

_UTILITY = _c(
    "utility", "string", "管线类别", "utility",
    "utility code (CJJ 61: JS water, PS drainage, RQ gas, RL heat, DL power, TX telecom, "
    "GY industrial, QT other)",
    queryable=True, dimension="utility", reads=_ALL, on_merge="same", enum=tuple(UTILITIES),
)
_VERSIONING = (
    _c("scope", "string", "数据范围", "scope", "data scope (survey area or import)", queryable=True,
       versioning=True),
    _c("version", "integer", "版本", "version", "version of the feature (1 = as first imported)",
       reads="network", versioning=True),
    _c("valid_from", "string", "生效时间", "valid from", "when this version became current",
       format="date-time", versioning=True),
)

_SEGMENT = (
    _c("id", "string", "管段编号", "id", "segment id (from node - to node unless given)",
       exported=False, reads=_ALL),
    _c("from_node", "string", "起点号", "from node", "start node id", queryable=True, reads=_NET + " shutoff"),
    _c("to_node", "string", "终点号", "to node", "end node id", queryable=True, reads=_NET + " shutoff"),
    _UTILITY,
    _c("subtype", "string", "管线小类", "subtype", "subtype code (YS storm, WS sewage, MQ, ...)",
       editable=True, queryable=True, dimension="subtype", on_merge="same", reads=_NET + " tiles"),
    _c("shape", "string", "断面形状", "shape", "cross-section shape", queryable=True, on_merge="same",
       reads=_NET + " shutoff", enum=("circular", "rect")),
    _c("diameter_mm", "number", "管径", "diameter", "diameter (mm), circular pipes", unit="mm",
       queryable=True, on_merge="same", reads=_NET + " shutoff"),
    _c("width_mm", "number", "宽", "width", "width (mm), box culverts and duct banks", unit="mm",
       on_merge="same", reads=_NET + " shutoff"),
    _c("height_mm", "number", "高", "height", "height (mm), box culverts and duct banks", unit="mm",
       on_merge="same", reads=_NET + " shutoff"),
    _c("size_text", "string", "规格", "size", "size as surveyed (DN300, 1000X800)", editable=True,
       edit_as="size", reads="network"),
    _c("material", "string", "材质", "material", "material (材质)", editable=True, queryable=True,
       dimension="material", surveyed=True, reads=_NET + " tiles proposal"),
    _c("burial", "string", "埋设方式", "burial", "burial method code (ZM direct, GM pipe, ...)",
       editable=True, queryable=True, surveyed=True, on_merge="first", reads=_NET + " proposal"),
    _c("pressure_mpa", "number", "压力", "pressure", "pressure (MPa)", unit="MPa", editable=True,
       edit_as="pressure", on_merge="first", reads=_NET),
    _c("voltage_kv", "number", "电压", "voltage", "voltage (kV)", unit="kV", editable=True,
       edit_as="pressure", on_merge="first", reads="network"),
    _c("cables", "integer", "电缆条数", "cables", "number of cables", editable=True, surveyed=True),
    _c("holes_total", "integer", "总孔数", "duct holes", "duct holes in total", editable=True,
       surveyed=True),
    _c("holes_used", "integer", "已用孔数", "holes used", "duct holes used", editable=True, surveyed=True),
    _c("casing", "string", "套管", "casing", "casing size", editable=True, surveyed=True),
    _c("flow", "string", "流向", "flow", "flow direction", editable=True, surveyed=True),
    _c("built_year", "integer", "建设年代", "year built", "year built", queryable=True,
       dimension="decade", reads="network"),
    _c("built", "string", "埋设日期", "built", "built date as surveyed", editable=True, surveyed=True,
       on_merge="first", reads="tiles checks"),
    _c("owner", "string", "权属单位", "owner", "owner (权属单位)", editable=True, queryable=True,
       dimension="owner", surveyed=True, on_merge="first", reads=_NET + " tiles proposal"),
    _c("road", "string", "道路名称", "road", "road name (道路名称)", editable=True, queryable=True,
       dimension="road", surveyed=True, on_merge="first", reads=_NET + " proposal"),
    _c("remarks", "string", "备注", "remarks", "remarks", editable=True, surveyed=True, on_merge="first",
       reads="shutoff checks"),
    _c("status", "string", "状态", "status", "status", editable=True, queryable=True,
       dimension="status", on_merge="same", reads=_NET + " tiles", enum=STATUSES),
    _c("depth_reference", "string", "埋深基准", "depth reference",
       "what the depths measure to: top of pipe, or invert (drainage)", queryable=True,
       reads="network", enum=("top", "invert")),
    _c("from_depth_m", "number", "起点埋深", "start depth",
       "depth at the start (m, to the depth reference)", unit="m", editable=True, reads="network"),
    _c("to_depth_m", "number", "终点埋深", "end depth", "depth at the end (m, to the depth reference)",
       unit="m", editable=True, reads="network"),
    _c("from_z", "number", "起点高程", "start elevation",
       "centreline elevation at the start (m, normal height)", unit="m", reads="network"),
    _c("to_z", "number", "终点高程", "end elevation", "centreline elevation at the end (m, normal height)",
       unit="m", reads="network"),
    _c("length_m", "number", "长度", "length", "length (m)", unit="m", reads="network shutoff"),
    *_VERSIONING,
)

_NODE = (
    _c("id", "string", "物探点号", "id", "survey point id", exported=False, reads="network"),
    _UTILITY,
    _c("map_id", "string", "图上点号", "map id", "map point number (图上点号)", editable=True,
       queryable=True, surveyed=True),
    _c("subtype", "string", "管线小类", "subtype", "subtype code", editable=True, queryable=True,
       reads="network checks"),
    _c("feature", "string", "特征", "feature", "feature (tee, elbow, end, ...)", editable=True,
       queryable=True, reads="network scan checks"),
    _c("appurtenance", "string", "附属物", "appurtenance", "appurtenance (valve, manhole, hydrant, ...)",
       editable=True, queryable=True, reads="network scan checks"),
    _c("ground_z", "number", "地面高程", "ground elevation", "ground elevation (m, normal height)",
       unit="m", reads="network scan checks"),
    _c("depth_m", "number", "埋深", "depth", "depth (m)", unit="m", reads="network checks"),
    _c("well_depth_m", "number", "井深", "well depth", "well depth (m)", unit="m", editable=True,
       reads="network"),
    _c("well_bottom_z", "number", "井底高程", "well bottom", "well bottom elevation (m)", unit="m",
       reads="network"),
    _c("eccentric_well_id", "string", "偏心井位", "eccentric well", "eccentric well point", editable=True,
       surveyed=True),
    _c("sheet", "string", "图幅号", "map sheet", "map sheet (图幅号)", editable=True, queryable=True,
       surveyed=True),
    _c("survey_date", "string", "探测日期", "survey date", "survey date", editable=True, surveyed=True),
    _c("remarks", "string", "备注", "remarks", "remarks", editable=True, surveyed=True, reads="checks"),
    _c("survey_class", "string", "探测类别", "survey class",
       "survey accuracy class (CJJ 61): exposed 明显点 or concealed 隐蔽点; empty: by appurtenance",
       editable=True, queryable=True, surveyed=True, reads="network scan checks", enum=("exposed", "concealed")),
    *_VERSIONING,
)

_VALVE = (
    _c("id", "string", "阀门编号", "id", "valve id", exported=False),
    _UTILITY,
    _c("segment_id", "string", "所在管段", "pipe", "the pipe the valve sits on", queryable=True),
    _c("node_id", "string", "所在管点", "node", "the node at the pipe's end where it sits", queryable=True),
    _c("kind", "string", "类型", "kind", "kind of valve", editable=True, queryable=True),
    _c("operable", "boolean", "可操作", "operable", "whether it turns", editable=True, queryable=True),
    _c("normally_closed", "boolean", "常闭", "normally closed", "normally closed", editable=True,
       queryable=True),
    *_VERSIONING,
)

_SOURCE = (
    _c("id", "string", "水源编号", "id", "source id", exported=False),
    _UTILITY,
    _c("node_id", "string", "管点", "node", "node", queryable=True),
    _c("kind", "string", "类型", "kind", "kind (water plant, pressure station, regulator, ...)",
       editable=True, queryable=True),
    _c("name", "string", "名称", "name", "name", editable=True, queryable=True),
    *_VERSIONING,
)

_CUSTOMER = (
    _c("id", "string", "用户编号", "id", "customer id", exported=False),
    _UTILITY,
    _c("node_id", "string", "接户点", "service node", "service node", queryable=True),
    _c("name", "string", "名称", "name", "name", editable=True, queryable=True),
    _c("kind", "string", "类型", "kind", "kind", editable=True, queryable=True),
    _c("critical", "boolean", "重要用户", "critical", "critical customer (hospital, ...)", editable=True,
       queryable=True),
    _c("demand", "number", "用水量", "demand", "demand", editable=True),
    *_VERSIONING,
)

_PROPOSAL = (
    _c("name", "string", "名称", "name", "name", queryable=True),
    _c("utility", "string", "管线类别", "utility", "utility code", queryable=True),
    _c("status", "string", "审批状态", "status", "review status", queryable=True,
       enum=("new", "reviewed", "approved", "rejected")),
    _c("passed", "boolean", "检查通过", "passed", "whether the last check passed", queryable=True),
    _c("created_by", "string", "提交人", "submitted by", "submitted by", queryable=True),
    _c("created_at", "string", "提交时间", "submitted at", "submitted at", format="date-time"),
    _c("checked_at", "string", "检查时间", "checked at", "last checked at", format="date-time"),
    _c("decided_by", "string", "审批人", "decided by", "decided by", queryable=True),
    _c("decided_at", "string", "审批时间", "decided at", "decided at", format="date-time"),
    _c("note", "string", "审批意见", "note", "decision note"),
    _c("override_note", "string", "放行理由", "override", "override reason"),
    _c("version", "integer", "版本", "version", "version of the proposal geometry"),
    _c("network_mark", "string", "管网版本", "network version",
       "the network's change mark the last check was made against (migration 0016)"),
    _c("rules_version", "string", "规则表版本", "rule-table version",
       "version (hash) of the clearance and cover rule tables the last check judged by"),
)

#: Every feature table's columns (geometry and bookkeeping such as ``batch_id`` aside).
CATALOGUE: Final[dict[str, tuple[Column, ...]]] = {
    "node": _NODE,
    "segment": _SEGMENT,
    "valve": _VALVE,
    "source": _SOURCE,
    "customer": _CUSTOMER,
    "proposal": _PROPOSAL,
}
#: The versioned feature tables.
KINDS: Final[tuple[str, ...]] = ("node", "segment", "valve", "source", "customer")


def columns(kind: str, **where: Any) -> tuple[Column, ...]:
    """The columns of ``kind`` whose attributes equal ``where`` (``reads="scan"``: read by the scan)."""
    out = []
    for c in CATALOGUE[kind]:
        ok = True
        for key, want in where.items():
            have = getattr(c, key)
            ok = ok and (want in have if key == "reads" else have == want)
        if ok:
            out.append(c)
    return tuple(out)


def names(kind: str, **where: Any) -> tuple[str, ...]:
    """The names of :func:`columns` (``names("segment", reads="network")``)."""
    return tuple(c.name for c in columns(kind, **where))


def column(kind: str, name: str) -> Column:
    """One column (KeyError when ``kind`` has no such column)."""
    for c in CATALOGUE[kind]:
        if c.name == name:
            return c
    raise KeyError(f"{kind}.{name}")


def label(kind: str, name: str) -> str:
    """The column's label for people, Chinese first."""
    return column(kind, name).label


def sql_columns(kind: str) -> tuple[tuple[str, str], ...]:
    """The content columns of a versioned table as the loader writes them: (name, SQL type)."""
    return tuple((c.name, SQL_TYPES[c.type]) for c in columns(kind, versioning=False))


def edit_types(kind: str) -> dict[str, type]:
    """What an attribute edit of ``kind`` may set: edit name -> Python type."""
    out: dict[str, type] = {}
    for c in columns(kind, editable=True):
        out.setdefault(c.edit_name, str if c.edit_as == "size" else PYTHON_TYPES[c.type])
    return out


def dimensions(kind: str = "segment") -> dict[str, Column]:
    """What statistics may group ``kind`` by: dimension name -> column."""
    return {c.dimension: c for c in CATALOGUE[kind] if c.dimension}
