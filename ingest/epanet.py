"""Reading EPANET 2.2 ``.inp`` networks (and a WNTR-style valve layer) into :class:`SurveyTables`.

A hand-written parser of the sections the twin needs: ``[JUNCTIONS]``, ``[RESERVOIRS]``,
``[TANKS]``, ``[PIPES]``, ``[PUMPS]``, ``[VALVES]``, ``[DEMANDS]``, ``[STATUS]``,
``[COORDINATES]``, ``[VERTICES]`` and ``Units`` of ``[OPTIONS]``; every other section is
ignored, and so is everything after ``[END]``. ``;`` starts a comment; fields are
whitespace-separated (a field may be double-quoted to hold spaces, as EPANET 2.2 allows);
ids are case-sensitive strings; section names and keywords are case-insensitive.

How an EPANET network becomes survey tables (all of it water supply, utility ``JS``):

- **Points**: one per junction, reservoir and tank, ``point_id`` = the EPANET id. Following
  the Chinese survey convention, column ``x`` is the *northing* (EPANET Y) and ``y`` the
  *easting* (EPANET X), both in the twin CRS after the optional CRS transform and offset.
- **Heights**: EPANET gives one elevation per node (a reservoir's head, a tank's bottom).
  It is taken as the height of the *top of the pipes* at that node and the pipes are
  assumed buried at ``cover_m``: ``ground_z = elevation + cover_m`` and ``depth = cover_m``
  (depth is to the pipe top for water, so the pipe top lands exactly at the elevation).
  Simple, documented, and not a survey fact: an EPANET file has no ground level.
- **Segments**: one per pipe, pump and valve link; ``size`` = ``DN<mm>`` rounded to 0.1 mm
  (pumps have no diameter: the largest pipe touching either end, else DN300).
  ``from_depth = to_depth = cover_m``. Extra columns: ``link_type`` (pipe / pump / valve),
  ``normally_closed`` (bool: a pipe or valve whose initial status is ``Closed`` in its
  section or in ``[STATUS]``; pumps are switched by controls and stay False) and
  ``vertices`` (list of ``(easting, northing)`` in the twin CRS from ``[VERTICES]``, or None).
- **Sources**: reservoirs (kind ``reservoir``) and tanks (kind ``tank``); the points also carry
  appurtenance 水源 / 水塔 so the survey-table path finds them the same way.
- **Customers**: junctions whose base demand is positive, in L/s. A junction listed in
  ``[DEMANDS]`` takes the sum of its entries there *instead of* the ``[JUNCTIONS]`` demand
  (EPANET's and WNTR's rule); the global demand multiplier is not applied.
- **Valves** (optional CSV, the WNTR valve-layer convention): one row per isolation valve,
  ``pipe,node`` = the link it sits on and the end node it guards. Any link may carry one
  (WNTR's strategic layer also puts them on pumps).
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

import numpy as np
import pandas as pd
from pyproj import CRS
from pyproj.exceptions import CRSError

from ingest.report import Issue
from ingest.tables import (
    POINT_COLUMNS,
    SEGMENT_COLUMNS,
    FileInfo,
    SurveyTables,
    _decode,
    _sha256,
    read_input,
)
from twin.crs import transformer
from twin.errors import InputError

__all__ = ["read_epanet", "read_valve_layer", "default_offset", "DISTRICT_CENTRE", "FLOW_UNITS",
           "PLACEHOLDER_MM"]

#: Where a network in local coordinates is put by default: Liaocheng district centre in
#: EPSG:4548 (CGCS2000 / 3-degree Gauss-Kruger CM 117E), as (easting, northing).
DISTRICT_CENTRE: Final[tuple[float, float]] = (410_000.0, 4_035_000.0)
#: Coordinates all smaller than this (in absolute value) are taken as local.
LOCAL_LIMIT: Final[float] = 1e5

#: Flow units -> (US customary?, litres per second per unit).
FLOW_UNITS: Final[dict[str, tuple[bool, float]]] = {
    "CFS": (True, 28.316846592),
    "GPM": (True, 3.785411784 / 60.0),
    "MGD": (True, 3.785411784e6 / 86400.0),
    "IMGD": (True, 4.54609e6 / 86400.0),
    "AFD": (True, 1233481.83754752 / 86400.0),
    "LPS": (False, 1.0),
    "LPM": (False, 1.0 / 60.0),
    "MLD": (False, 1e6 / 86400.0),
    "CMH": (False, 1000.0 / 3600.0),
    "CMD": (False, 1000.0 / 86400.0),
    "CMS": (False, 1000.0),  # EPANET 2.3
}
_FOOT: Final = 0.3048
_INCH_MM: Final = 25.4
_DEFAULT_PUMP_MM: Final = 300.0
#: Diameters below this (mm) are a network model's placeholders (candidate pipes of a design
#: study, such as Anytown's 0.0001 in): no survey measures such a pipe.
PLACEHOLDER_MM: Final = 1.0
#: Spacing (in the file's units) of nodes without coordinates that no placed node reaches.
_GRID_M: Final = 100.0

_SECTIONS: Final = frozenset({
    "JUNCTIONS", "RESERVOIRS", "TANKS", "PIPES", "PUMPS", "VALVES", "DEMANDS", "STATUS",
    "COORDINATES", "VERTICES", "OPTIONS",
})
#: Fewest fields EPANET accepts on a data line of each section.
_MIN_FIELDS: Final[dict[str, int]] = {
    "JUNCTIONS": 2, "RESERVOIRS": 2, "TANKS": 6, "PIPES": 6, "PUMPS": 3, "VALVES": 6,
    "DEMANDS": 2, "STATUS": 2, "COORDINATES": 3, "VERTICES": 3, "OPTIONS": 1,
}
_VALVE_TYPES: Final = frozenset({"PRV", "PSV", "PBV", "FCV", "TCV", "GPV", "PCV"})
_PIPE_STATUS: Final = frozenset({"OPEN", "CLOSED", "CV"})
_TRUE: Final = frozenset({"true", "t", "yes", "y", "1", "是"})
_FALSE: Final = frozenset({"false", "f", "no", "n", "0", "否"})
_TOKEN_RE: Final = re.compile(r'"([^"]*)"|(\S+)')


@dataclass
class _Section:
    """Data lines of one section: tokens padded with None, and 1-based line numbers."""

    name: str
    fields: pd.DataFrame
    lines: np.ndarray

    def __len__(self) -> int:
        return len(self.lines)

    def col(self, i: int) -> pd.Series:
        if i < self.fields.shape[1]:
            return self.fields[i]
        return pd.Series([None] * len(self), index=self.fields.index, dtype=object)


class _Inp:
    """Error reporting bound to one file."""

    def __init__(self, name: str) -> None:
        self.name = name

    def error(self, line: int | None, message: str, zh: str) -> InputError:
        """The error of ``line`` (None: the whole file); ``zh``: the message in Chinese."""
        where = f"{self.name} line {int(line)}" if line is not None else self.name
        where_zh = f"{self.name} 第 {int(line)} 行" if line is not None else self.name
        text_zh = f"{where_zh}：{zh}"
        return InputError(f"{where}: {message}", code="F003", zh=text_zh)


# --------------------------------------------------------------------------- sections


def _split_sections(text: str, inp: _Inp) -> dict[str, _Section]:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    raw = pd.Series(lines, dtype=object)
    content = raw.str.split(";", n=1).str[0].str.strip()
    is_header = content.str.startswith("[")
    names = content.where(is_header).str.extract(r"^\[\s*([^\]]*?)\s*(?:\]|$)", expand=False).str.upper()
    names = names.where(~is_header | names.notna(), "?")  # every header starts a section
    if not is_header.any():
        raise inp.error(None, "not an EPANET .inp file: no [SECTION] headers",
                        zh="不是 EPANET .inp 文件：没有 [SECTION] 节标题")
    section = names.ffill()
    end = np.flatnonzero((names == "END").to_numpy())
    keep = (~is_header & (content != "") & section.isin(list(_SECTIONS))).to_numpy().copy()
    if len(end):
        keep[end[0]:] = False
    found = set(names.dropna())
    missing = [s for s in ("JUNCTIONS", "PIPES") if s not in found]
    if missing:
        raise inp.error(None, "not an EPANET .inp file: no " + " or ".join(f"[{s}]" for s in missing)
                        + " section",
                        zh="不是 EPANET .inp 文件：没有 " + " 或 ".join(f"[{s}]" for s in missing) + " 节")
    data = content[keep]
    sect = section[keep]
    out: dict[str, _Section] = {}
    for name in _SECTIONS:
        rows = data[sect == name]
        if rows.empty:
            out[name] = _Section(name, pd.DataFrame(index=range(0)), np.zeros(0, dtype=int))
            continue
        tokens = rows.str.split().tolist()
        for i in np.flatnonzero(rows.str.contains('"', regex=False).to_numpy()):
            # EPANET 2.2 allows "quoted ids with spaces".
            tokens[i] = [a if a or not b else b for a, b in _TOKEN_RE.findall(rows.iloc[i])]
        width = max(map(len, tokens))
        fields = pd.DataFrame([t + [None] * (width - len(t)) for t in tokens], dtype=object)
        fields = fields.where(fields.notna(), None)
        lines_no = rows.index.to_numpy() + 1
        sec = _Section(name, fields, lines_no)
        _need(sec, _MIN_FIELDS[name], inp)
        out[name] = sec
    return out


def _need(sec: _Section, n: int, inp: _Inp) -> None:
    if len(sec) == 0:
        return
    if sec.fields.shape[1] < n:
        short = np.ones(len(sec), dtype=bool)
    else:
        short = sec.fields[n - 1].isna().to_numpy()
    if short.any():
        i = int(np.flatnonzero(short)[0])
        got = int(sec.fields.iloc[i].notna().sum())
        raise inp.error(sec.lines[i], f"[{sec.name}] needs at least {n} fields, found {got}"
                        + _more(short.sum()),
                        zh=f"[{sec.name}] 至少需要 {n} 个字段，实际 {got} 个" + _more_zh(short.sum()))


def _more(count: int) -> str:
    return f" ({count - 1} more line(s) like it)" if count > 1 else ""


def _more_zh(count: int) -> str:
    return f"（另有 {count - 1} 行类似）" if count > 1 else ""


def _numbers(sec: _Section, i: int, what: str, inp: _Inp, *, optional: bool = False,
             default: float = 0.0) -> np.ndarray:
    col = sec.col(i)
    values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
    present = col.notna().to_numpy()
    bad = present & ~np.isfinite(values)
    if not optional:
        bad |= ~present
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise inp.error(sec.lines[j], f"[{sec.name}] {what} {col.iloc[j]!r} is not a number"
                        + _more(bad.sum()),
                        zh=f"[{sec.name}] {what} {col.iloc[j]!r} 不是数字" + _more_zh(bad.sum()))
    return np.where(present, values, default)


def _unique(ids: pd.Series, lines: np.ndarray, what: str, inp: _Inp) -> None:
    dup = ids.duplicated().to_numpy()
    if dup.any():
        j = int(np.flatnonzero(dup)[0])
        first = int(lines[int(np.flatnonzero((ids == ids.iloc[j]).to_numpy())[0])])
        raise inp.error(lines[j], f"{what} id {ids.iloc[j]!r} is already defined on line {first}"
                        + _more(dup.sum()),
                        zh=f"{what} 编号 {ids.iloc[j]!r} 已在第 {first} 行定义" + _more_zh(dup.sum()))


def _units(sections: dict[str, _Section], inp: _Inp) -> tuple[str, bool, float]:
    opts = sections["OPTIONS"]
    units = "GPM"  # EPANET's default
    if len(opts):
        keys = opts.col(0).str.upper()
        hits = np.flatnonzero((keys == "UNITS").to_numpy())
        if len(hits):
            j = int(hits[-1])
            value = opts.col(1).iloc[j]
            if value is None or value.upper() not in FLOW_UNITS:
                raise inp.error(opts.lines[j], f"[OPTIONS] Units {value!r} is not one of "
                                + ", ".join(FLOW_UNITS),
                                zh=f"[OPTIONS] 流量单位 Units {value!r} 不是 " + "、".join(FLOW_UNITS) + " 之一")
            units = value.upper()
    us, lps = FLOW_UNITS[units]
    return units, us, lps


# --------------------------------------------------------------------------- geometry


def default_offset(xy: Iterable[tuple[float, float]] | np.ndarray, twin_crs: str = "EPSG:4548"
                   ) -> tuple[float, float]:
    """Offset (easting, northing) that places a network lying elsewhere on the district centre.

    Networks whose bounding-box centre already lies inside the twin CRS's area of use keep
    their coordinates (offset ``(0, 0)``); local coordinates (engineering drawings, EPANET's
    examples) and coordinates of another CRS are moved so that their bounding-box centre sits
    at :data:`DISTRICT_CENTRE` (410000, 4035000).

    >>> default_offset([(0, 0), (100, 50)])
    (409950.0, 4034975.0)
    >>> default_offset([(410000, 4035000)])
    (0.0, 0.0)
    """
    a = np.asarray(list(xy) if not isinstance(xy, np.ndarray) else xy, dtype=float).reshape(-1, 2)
    a = a[np.isfinite(a).all(axis=1)]
    if len(a) == 0:
        return (0.0, 0.0)
    centre = (a.min(axis=0) + a.max(axis=0)) / 2.0
    if np.abs(a).max() >= LOCAL_LIMIT and _inside_area_of_use(centre, twin_crs):
        return (0.0, 0.0)
    return (float(DISTRICT_CENTRE[0] - centre[0]), float(DISTRICT_CENTRE[1] - centre[1]))


def _inside_area_of_use(point: np.ndarray, crs_text: str) -> bool:
    area = CRS.from_user_input(crs_text).area_of_use
    if area is None:
        return True
    lon, lat = transformer(crs_text, "EPSG:4326").transform(point[0], point[1])
    return bool(area.west <= lon <= area.east and area.south <= lat <= area.north)


def _transform(x: np.ndarray, y: np.ndarray, source_crs: str | None, twin_crs: str
               ) -> tuple[np.ndarray, np.ndarray]:
    if source_crs is None:
        return x, y
    try:
        src = CRS.from_user_input(source_crs)
        dst = CRS.from_user_input(twin_crs)
    except CRSError as exc:
        raise InputError(f"not a coordinate reference system: {exc}", zh=f"不是坐标参考系：{exc}") from exc
    if src == dst:
        return x, y
    ex, ny = transformer(source_crs, twin_crs).transform(x, y)
    ex, ny = np.asarray(ex, dtype=float), np.asarray(ny, dtype=float)
    bad = ~(np.isfinite(ex) & np.isfinite(ny)) & np.isfinite(x) & np.isfinite(y)
    if bad.any():
        raise InputError(f"{int(bad.sum())} coordinate(s) cannot be transformed from {source_crs} "
                         f"to {twin_crs} (first: {x[bad][0]}, {y[bad][0]})",
                         zh=f"{int(bad.sum())} 个坐标无法从 {source_crs} 转换到 {twin_crs}"
                            f"（第一个：{x[bad][0]}, {y[bad][0]}）")
    return ex, ny


def _fmt(values: np.ndarray, decimals: int = 4) -> np.ndarray:
    """Floats as the short strings a survey table would hold (``'4035012.34'``)."""
    out = np.empty(len(values), dtype=object)
    out[:] = [repr(v) for v in np.round(np.asarray(values, dtype=float), decimals).tolist()]
    return out


def _dn(mm: np.ndarray) -> np.ndarray:
    out = np.empty(len(mm), dtype=object)
    out[:] = [f"DN{v:.1f}".removesuffix(".0") for v in np.round(mm, 1).tolist()]
    return out


def _nullify(frame: pd.DataFrame) -> pd.DataFrame:
    """Object columns holding str or None (never NaN), as :func:`ingest.tables.read_table` gives."""
    frame = frame.astype(object)
    return frame.where(frame.notna(), None)


def _objects(n: int, value: object = None) -> np.ndarray:
    out = np.empty(n, dtype=object)
    out[:] = [value] * n
    return out


# --------------------------------------------------------------------------- the reader


def read_epanet(
    path: Path,
    *,
    valves: Path | None = None,
    source_crs: str | None = None,
    twin_crs: str = "EPSG:4548",
    offset: tuple[float, float] | Literal["auto"] = (0.0, 0.0),
    cover_m: float = 1.2,
) -> SurveyTables:
    """Read an EPANET 2.2 ``.inp`` network (and optionally a valve layer CSV).

    Coordinates are metres in ``source_crs`` (None: already in ``twin_crs``); they are
    transformed to ``twin_crs`` when the two differ, then shifted by ``offset``
    (easting, northing). ``offset="auto"`` applies :func:`default_offset` to the
    transformed node and vertex coordinates. See the module documentation for how
    nodes and links become points and segments.

    Raises :class:`~twin.errors.InputError` with the file name and line number for
    anything malformed.
    """
    path = Path(path)
    data = read_input(path, "file")
    if b"\x00" in data[:4096]:
        raise InputError(f"{path.name}: not an EPANET .inp file (binary content)", code="F003",
                         zh=f"{path.name}：不是 EPANET .inp 文件（二进制内容）")
    text, encoding = _decode(data, "auto", path)
    if not np.isfinite(cover_m) or cover_m < 0:
        raise InputError(f"cover depth {cover_m!r} must be a non-negative number of metres",
                         zh=f"覆土深度 {cover_m!r} 须为非负的米数")
    inp = _Inp(path.name)
    sec = _split_sections(text, inp)
    _, us, lps = _units(sec, inp)
    length_m = _FOOT if us else 1.0
    diam_mm = _INCH_MM if us else 1.0

    nodes, j_demand = _nodes(sec, inp, length_m, lps)
    links = _links(sec, inp, pd.Index(nodes["id"]), diam_mm)
    link_pos = pd.Series(np.arange(len(links)), index=pd.Index(links["id"]))
    pump_closed = _apply_status(sec["STATUS"], links, link_pos, inp)
    placed = _place_missing(sec["COORDINATES"], inp, nodes, links)
    east, north, vertices = _coordinates(sec, inp, nodes, link_pos, source_crs, twin_crs, offset, placed)
    cover = float(cover_m)
    points = _point_table(nodes, east, north, cover)
    segments = _segment_table(links, pump_closed, vertices, cover)
    sources = _sources(nodes)
    customers = _customers(sec, inp, pd.Index(nodes["id"]), j_demand, lps)

    files = [FileInfo(name=path.name, sha256=_sha256(data), bytes=len(data), encoding=encoding,
                      rows=len(nodes) + len(links))]
    valve_frame = None
    if valves is not None:
        valve_frame, vinfo = read_valve_layer(Path(valves), segments)
        files.append(vinfo)
    issues = _placeholder_issues(links, segments, "in" if us else "mm", path.name)
    issues += [Issue("W306", f"node {n}: no [COORDINATES]; placed at {x:g}, {y:g} (file units), "
                             "between its neighbours or on a grid beside the network", file=path.name,
                     row=int(line), ids=[str(n)])
               for n, x, y, line in placed.itertuples(index=False)]
    return SurveyTables(points=points, segments=segments, points_file=path.name,
                        segments_file=path.name, files=files, valves=valve_frame,
                        sources=sources, customers=customers, kind="epanet", issues=issues)


def _placeholder_issues(links: pd.DataFrame, segments: pd.DataFrame, unit: str, name: str
                        ) -> list[Issue]:
    """A warning (W306) per link whose diameter was a placeholder, saying what was assumed."""
    rows = np.flatnonzero(links["placeholder"].to_numpy())
    return [Issue("W306", f"{links['type'].iat[i]} {links['id'].iat[i]}: diameter "
                          f"{links['given'].iat[i]} {unit} is a model placeholder, not a pipe size; "
                          f"assumed {segments['size'].iat[i]} (the largest pipe at its ends, else DN300)",
                  file=name, row=int(links["line"].iat[i]), ids=[str(links["id"].iat[i])])
            for i in rows]


def _nodes(sec: dict[str, _Section], inp: _Inp, length_m: float, lps: float
           ) -> tuple[pd.DataFrame, np.ndarray]:
    """Junctions, reservoirs and tanks (id, type, elevation in metres, line), and the
    junctions' base demands (L/s)."""
    junc, res, tank = sec["JUNCTIONS"], sec["RESERVOIRS"], sec["TANKS"]
    j_elev = _numbers(junc, 1, "elevation", inp) * length_m
    j_demand = _numbers(junc, 2, "demand", inp, optional=True) * lps
    r_head = _numbers(res, 1, "head", inp) * length_m
    t_elev = _numbers(tank, 1, "elevation", inp) * length_m
    for i, what in ((2, "initial level"), (3, "minimum level"), (4, "maximum level"), (5, "diameter")):
        _numbers(tank, i, what, inp)
    nodes = pd.DataFrame({
        "id": pd.concat([junc.col(0), res.col(0), tank.col(0)], ignore_index=True).astype(object),
        "type": np.repeat(np.array(["junction", "reservoir", "tank"], dtype=object),
                          [len(junc), len(res), len(tank)]),
        "elev": np.concatenate([j_elev, r_head, t_elev]),
        "line": np.concatenate([junc.lines, res.lines, tank.lines]).astype(int),
    })
    _unique(nodes["id"], nodes["line"].to_numpy(), "node", inp)
    if nodes.empty:
        raise inp.error(None, "the network has no junctions, reservoirs or tanks",
                        zh="管网中没有节点、水库或水池")
    return nodes, j_demand


def _links(sec: dict[str, _Section], inp: _Inp, node_index: pd.Index, diam_mm: float) -> pd.DataFrame:
    """Pipes, pumps and valves (id, ends, type, diameter in mm, line, closed, cv, valve type),
    checked: diameters not negative, known valve types, unique ids, known end nodes, no loops.
    A diameter below :data:`PLACEHOLDER_MM` (0, Anytown's 0.0001 in) is a model's placeholder:
    ``mm`` is NaN there and ``placeholder`` True."""
    pipes, pumps, vals = sec["PIPES"], sec["PUMPS"], sec["VALVES"]
    p_len = _numbers(pipes, 3, "length", inp)
    p_mm = _numbers(pipes, 4, "diameter", inp) * diam_mm
    _numbers(pipes, 5, "roughness", inp)
    del p_len  # validated; the centreline comes from the coordinates
    p_status = _pipe_status(pipes, inp)
    v_mm = _numbers(vals, 3, "diameter", inp) * diam_mm
    v_type = vals.col(4).str.upper() if len(vals) else pd.Series([], dtype=object)
    bad_type = ~v_type.isin(list(_VALVE_TYPES)).to_numpy()
    if bad_type.any():
        j = int(np.flatnonzero(bad_type)[0])
        raise inp.error(vals.lines[j], f"[VALVES] valve type {vals.col(4).iloc[j]!r} is not one of "
                        + ", ".join(sorted(_VALVE_TYPES)),
                        zh=f"[VALVES] 阀门类型 {vals.col(4).iloc[j]!r} 不是 " + "、".join(sorted(_VALVE_TYPES)) + " 之一")
    for s, mm in ((pipes, p_mm), (vals, v_mm)):
        bad = mm < 0
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            raise inp.error(s.lines[j], f"[{s.name}] diameter {s.col(4 if s is pipes else 3).iloc[j]!r} "
                            "must not be negative" + _more(bad.sum()),
                            zh=f"[{s.name}] 管径 {s.col(4 if s is pipes else 3).iloc[j]!r} 不能为负" + _more_zh(bad.sum()))
    links = pd.DataFrame({
        "id": pd.concat([pipes.col(0), pumps.col(0), vals.col(0)], ignore_index=True).astype(object),
        "from": pd.concat([pipes.col(1), pumps.col(1), vals.col(1)], ignore_index=True).astype(object),
        "to": pd.concat([pipes.col(2), pumps.col(2), vals.col(2)], ignore_index=True).astype(object),
        "type": np.repeat(np.array(["pipe", "pump", "valve"], dtype=object),
                          [len(pipes), len(pumps), len(vals)]),
        "mm": np.concatenate([p_mm, np.full(len(pumps), np.nan), v_mm]),
        "given": pd.concat([pipes.col(4), pd.Series([None] * len(pumps), dtype=object), vals.col(3)],
                           ignore_index=True).astype(object),
        "line": np.concatenate([pipes.lines, pumps.lines, vals.lines]).astype(int),
        "closed": np.concatenate([p_status == "CLOSED", np.zeros(len(pumps) + len(vals), dtype=bool)]),
        "cv": np.concatenate([p_status == "CV", np.zeros(len(pumps) + len(vals), dtype=bool)]),
        "vtype": pd.concat([pd.Series([None] * (len(pipes) + len(pumps)), dtype=object),
                            v_type.astype(object)], ignore_index=True),
    })
    if links.empty:
        raise inp.error(None, "the network has no pipes, pumps or valves", zh="管网中没有管段、水泵或阀门")
    links["placeholder"] = (links["mm"] < PLACEHOLDER_MM).to_numpy()
    links.loc[links["placeholder"], "mm"] = np.nan
    _unique(links["id"], links["line"].to_numpy(), "link", inp)
    _check_link_ends(links, node_index, inp)
    return links


def _check_link_ends(links: pd.DataFrame, node_index: pd.Index, inp: _Inp) -> None:
    """Every link joins two different known nodes."""
    for end in ("from", "to"):
        unknown = ~links[end].isin(node_index).to_numpy()
        if unknown.any():
            j = int(np.flatnonzero(unknown)[0])
            raise inp.error(links["line"].iloc[j], f"{links['type'].iloc[j]} {links['id'].iloc[j]!r} "
                            f"names unknown node {links[end].iloc[j]!r}" + _more(unknown.sum()),
                            zh=f"{links['type'].iloc[j]} {links['id'].iloc[j]!r} 引用了未知节点 {links[end].iloc[j]!r}"
                               + _more_zh(unknown.sum()))
    loop = (links["from"] == links["to"]).to_numpy()
    if loop.any():
        j = int(np.flatnonzero(loop)[0])
        raise inp.error(links["line"].iloc[j], f"{links['type'].iloc[j]} {links['id'].iloc[j]!r} "
                        f"starts and ends at node {links['from'].iloc[j]!r}",
                        zh=f"{links['type'].iloc[j]} {links['id'].iloc[j]!r} 的起点和终点都是节点 {links['from'].iloc[j]!r}")


def _apply_status(st: _Section, links: pd.DataFrame, link_pos: pd.Series, inp: _Inp) -> np.ndarray:
    """Apply ``[STATUS]`` to ``links["closed"]``; returns which pumps start closed."""
    pump_closed = np.zeros(len(links), dtype=bool)
    if len(st):
        pos = st.col(0).map(link_pos)
        unknown = pos.isna().to_numpy()
        if unknown.any():
            j = int(np.flatnonzero(unknown)[0])
            raise inp.error(st.lines[j], f"[STATUS] names unknown link {st.col(0).iloc[j]!r}"
                            + _more(unknown.sum()),
                            zh=f"[STATUS] 引用了未知管段 {st.col(0).iloc[j]!r}" + _more_zh(unknown.sum()))
        value = st.col(1).str.upper().to_numpy()
        pos = pos.to_numpy(dtype=int)
        closed = links["closed"].to_numpy().copy()
        types = links["type"].to_numpy()
        # Later lines win, as EPANET applies them in order.
        for p, v in zip(pos, value, strict=True):
            if v in ("OPEN", "CLOSED") and types[p] != "pump":
                closed[p] = v == "CLOSED"
            elif v in ("OPEN", "CLOSED"):
                pump_closed[p] = v == "CLOSED"
        links["closed"] = closed
    return pump_closed


def _place_missing(coords: _Section, inp: _Inp, nodes: pd.DataFrame, links: pd.DataFrame
                   ) -> pd.DataFrame:
    """Positions (x, y in the file's units) of the nodes without ``[COORDINATES]``.

    A model may leave them out (a hydraulic model needs none): each such node goes to the mean
    of its placed neighbours, repeatedly; nodes out of reach of any placed node (a network
    without coordinates) are laid out on a grid below the others, ``_GRID_M`` apart. Returns
    ``id``, ``x``, ``y`` of the placed nodes (a W306 warning each).
    """
    given = set(coords.col(0)) if len(coords) else set()
    missing = ~nodes["id"].isin(given).to_numpy()
    if not missing.any():
        return pd.DataFrame({"id": [], "x": [], "y": []})
    x = pd.Series(np.nan, index=pd.Index(nodes["id"]))
    y = x.copy()
    if len(coords):
        cx, cy = _numbers(coords, 1, "X-coordinate", inp), _numbers(coords, 2, "Y-coordinate", inp)
        known = coords.col(0).isin(x.index).to_numpy()
        x.loc[coords.col(0)[known].to_numpy()] = cx[known]
        y.loc[coords.col(0)[known].to_numpy()] = cy[known]
    pairs = pd.concat([pd.DataFrame({"a": links["from"], "b": links["to"]}),
                       pd.DataFrame({"a": links["to"], "b": links["from"]})], ignore_index=True)
    for _ in range(len(nodes)):  # one ring of neighbours per pass; stops when nothing moves
        todo = x.isna()
        near = pairs[pairs["a"].map(todo).to_numpy(dtype=bool) & pairs["b"].map(~todo).to_numpy(dtype=bool)]
        if near.empty:
            break
        means = pd.DataFrame({"x": near["b"].map(x).to_numpy(), "y": near["b"].map(y).to_numpy(),
                              "a": near["a"].to_numpy()}).groupby("a").mean()
        x.loc[means.index], y.loc[means.index] = means["x"].to_numpy(), means["y"].to_numpy()
    rest = np.flatnonzero(x.isna().to_numpy())
    if len(rest):
        side = int(np.ceil(np.sqrt(len(rest))))
        x0 = np.nanmin(x.to_numpy()) if x.notna().any() else 0.0
        y0 = np.nanmin(y.to_numpy()) - 2 * _GRID_M if y.notna().any() else 0.0
        x.iloc[rest] = x0 + (np.arange(len(rest)) % side) * _GRID_M
        y.iloc[rest] = y0 - (np.arange(len(rest)) // side) * _GRID_M
    return pd.DataFrame({"id": nodes["id"][missing].to_numpy(), "x": x[missing].to_numpy(),
                         "y": y[missing].to_numpy(), "line": nodes["line"][missing].to_numpy()})


def _coordinates(sec: dict[str, _Section], inp: _Inp, nodes: pd.DataFrame, link_pos: pd.Series,
                 source_crs: str | None, twin_crs: str,
                 offset: tuple[float, float] | Literal["auto"], placed: pd.DataFrame
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Node eastings and northings and each link's vertices (list of (easting, northing) or
    None), transformed to the twin CRS and shifted by the offset."""
    coords = sec["COORDINATES"]
    cx = _numbers(coords, 1, "X-coordinate", inp)
    cy = _numbers(coords, 2, "Y-coordinate", inp)
    cpos = coords.col(0).map(pd.Series(np.arange(len(nodes)), index=pd.Index(nodes["id"])))
    unknown = cpos.isna().to_numpy()
    if unknown.any():
        j = int(np.flatnonzero(unknown)[0])
        raise inp.error(coords.lines[j], f"[COORDINATES] names unknown node {coords.col(0).iloc[j]!r}"
                        + _more(unknown.sum()),
                        zh=f"[COORDINATES] 引用了未知节点 {coords.col(0).iloc[j]!r}" + _more_zh(unknown.sum()))
    east = np.full(len(nodes), np.nan)
    north = np.full(len(nodes), np.nan)
    cpos_i = cpos.to_numpy(dtype=int)
    east[cpos_i] = cx  # a repeated node keeps its last coordinates, like EPANET
    north[cpos_i] = cy
    at = pd.Index(nodes["id"]).get_indexer(placed["id"])
    east[at], north[at] = placed["x"].to_numpy(dtype=float), placed["y"].to_numpy(dtype=float)
    vert = sec["VERTICES"]
    vx = _numbers(vert, 1, "X-coordinate", inp)
    vy = _numbers(vert, 2, "Y-coordinate", inp)
    vpos = vert.col(0).map(link_pos)
    unknown = vpos.isna().to_numpy()
    if unknown.any():
        j = int(np.flatnonzero(unknown)[0])
        raise inp.error(vert.lines[j], f"[VERTICES] names unknown link {vert.col(0).iloc[j]!r}"
                        + _more(unknown.sum()),
                        zh=f"[VERTICES] 引用了未知管段 {vert.col(0).iloc[j]!r}" + _more_zh(unknown.sum()))
    allx, ally = _transform(np.concatenate([east, vx]), np.concatenate([north, vy]), source_crs, twin_crs)
    if isinstance(offset, str):
        if offset != "auto":
            raise InputError(f"offset must be (easting, northing) or 'auto', not {offset!r}",
                             zh=f"offset 偏移须为（东坐标，北坐标）或 'auto'，不是 {offset!r}")
        offset = default_offset(np.column_stack([allx, ally]), twin_crs)
    de, dn = (float(offset[0]), float(offset[1]))
    allx = allx + de
    ally = ally + dn
    east, north = allx[: len(nodes)], ally[: len(nodes)]
    vertices = _objects(len(link_pos))
    if len(vert):
        vframe = pd.DataFrame({"pos": vpos.to_numpy(dtype=int),
                               "xy": list(zip(allx[len(nodes):].tolist(), ally[len(nodes):].tolist(),
                                              strict=True))})
        grouped = vframe.groupby("pos", sort=False)["xy"].agg(list)
        vertices[grouped.index.to_numpy()] = grouped.tolist()
    return east, north, vertices


def _point_table(nodes: pd.DataFrame, east: np.ndarray, north: np.ndarray, cover: float) -> pd.DataFrame:
    """One survey point per node; the pipe tops at the node's elevation, ``cover`` below ground."""
    n = len(nodes)
    points = pd.DataFrame({c: _objects(n) for c in POINT_COLUMNS})
    points["point_id"] = nodes["id"].to_numpy()
    points["utility"] = _objects(n, "JS")
    points["x"] = _fmt(north)
    points["y"] = _fmt(east)
    points["ground_z"] = _fmt(nodes["elev"].to_numpy() + cover)
    points["depth"] = _objects(n, repr(cover))
    points["appurtenance"] = nodes["type"].map({"reservoir": "水源", "tank": "水塔"}).astype(object).to_numpy()
    points["appurtenance"] = points["appurtenance"].where(points["appurtenance"].notna(), None)
    points["remarks"] = nodes["type"].map(lambda t: f"EPANET {t}").to_numpy()
    points = _nullify(points)
    points["_row"] = nodes["line"].to_numpy()
    return points


def _link_mm(links: pd.DataFrame) -> np.ndarray:
    """Diameter (mm) of each link; a pump, or a link whose diameter is a placeholder, takes the
    largest pipe at either end (else DN300)."""
    pipe_links = links[links["type"] == "pipe"]
    node_mm = pd.concat([
        pd.DataFrame({"node": pipe_links["from"], "mm": pipe_links["mm"]}),
        pd.DataFrame({"node": pipe_links["to"], "mm": pipe_links["mm"]}),
    ]).groupby("node")["mm"].max()
    is_pump = (links["type"] == "pump").to_numpy() | links["placeholder"].to_numpy()
    pump_mm = np.fmax(links["from"].map(node_mm).to_numpy(dtype=float),
                      links["to"].map(node_mm).to_numpy(dtype=float))
    mm = links["mm"].to_numpy(dtype=float).copy()
    mm[is_pump] = np.where(np.isnan(pump_mm[is_pump]), _DEFAULT_PUMP_MM, pump_mm[is_pump])
    return mm


def _link_remarks(links: pd.DataFrame, pump_closed: np.ndarray) -> np.ndarray:
    """备注 of each link: check valve, pump, valve type and normally closed."""
    remarks = _objects(len(links))
    types = links["type"].to_numpy()
    closed = links["closed"].to_numpy(dtype=bool)
    is_pump = types == "pump"
    remarks[types == "pipe"] = None
    remarks[(types == "pipe") & links["cv"].to_numpy()] = "check valve (CV)"
    remarks[is_pump] = "pump"
    remarks[is_pump & pump_closed] = "pump; initially closed"
    is_valve = types == "valve"
    remarks[is_valve] = ("valve " + links["vtype"][is_valve].astype(str)).to_numpy()
    remarks[closed & (types == "pipe")] = "normally closed"
    remarks[closed & is_valve] = remarks[closed & is_valve] + "; normally closed"
    placeholder = links["placeholder"].to_numpy()
    remarks[placeholder] = [f"{r}; placeholder diameter {g}" if r else f"placeholder diameter {g}"
                            for r, g in zip(remarks[placeholder], links["given"][placeholder], strict=True)]
    return remarks


def _segment_table(links: pd.DataFrame, pump_closed: np.ndarray, vertices: np.ndarray,
                   cover: float) -> pd.DataFrame:
    """One survey segment per link, with ``link_type``, ``normally_closed`` and ``vertices``."""
    m = len(links)
    segments = pd.DataFrame({c: _objects(m) for c in SEGMENT_COLUMNS})
    segments["id"] = links["id"].to_numpy()
    segments["from_id"] = links["from"].to_numpy()
    segments["to_id"] = links["to"].to_numpy()
    segments["utility"] = _objects(m, "JS")
    segments["from_depth"] = _objects(m, repr(cover))
    segments["to_depth"] = _objects(m, repr(cover))
    segments["size"] = _dn(_link_mm(links))
    segments["status"] = _objects(m, "active")
    segments["remarks"] = _link_remarks(links, pump_closed)
    segments = _nullify(segments)
    segments["_row"] = links["line"].to_numpy()
    segments["link_type"] = pd.Series(links["type"].to_numpy(), dtype=object)
    segments["normally_closed"] = links["closed"].to_numpy(dtype=bool)
    segments["vertices"] = vertices
    return segments


def _sources(nodes: pd.DataFrame) -> pd.DataFrame:
    """Reservoirs and tanks as sources."""
    src_mask = nodes["type"].isin(["reservoir", "tank"]).to_numpy()
    return pd.DataFrame({
        "node_id": nodes["id"][src_mask].to_numpy(),
        "kind": nodes["type"][src_mask].to_numpy(),
        "id": ("SRC-" + nodes["id"][src_mask]).to_numpy(),
        "name": nodes["id"][src_mask].to_numpy(),
    }, dtype=object)


def _customers(sec: dict[str, _Section], inp: _Inp, node_index: pd.Index, j_demand: np.ndarray,
               lps: float) -> pd.DataFrame:
    """Junctions with a positive base demand (L/s); ``[DEMANDS]`` replaces ``[JUNCTIONS]``'."""
    demand = pd.Series(j_demand, index=pd.Index(sec["JUNCTIONS"].col(0), dtype=object))
    dem = sec["DEMANDS"]
    if len(dem):
        values = _numbers(dem, 1, "demand", inp) * lps
        who = dem.col(0)
        unknown = ~who.isin(node_index).to_numpy()
        if unknown.any():
            j = int(np.flatnonzero(unknown)[0])
            raise inp.error(dem.lines[j], f"[DEMANDS] names unknown node {who.iloc[j]!r}" + _more(unknown.sum()),
                            zh=f"[DEMANDS] 引用了未知节点 {who.iloc[j]!r}" + _more_zh(unknown.sum()))
        # EPANET and WNTR: the [DEMANDS] entries of a junction replace its [JUNCTIONS] demand.
        summed = pd.Series(values, index=who.to_numpy()).groupby(level=0, sort=False).sum()
        summed = summed[summed.index.isin(demand.index)]  # demands on tanks/reservoirs: ignored
        demand.loc[summed.index] = summed.to_numpy()
    cust = demand[demand > 0]
    return pd.DataFrame({
        "node_id": pd.Series(cust.index, dtype=object),
        "id": pd.Series("C-" + cust.index.astype(str), dtype=object),
        "name": pd.Series(cust.index, dtype=object),
        "kind": pd.Series(["junction"] * len(cust), dtype=object),
        "critical": np.zeros(len(cust), dtype=bool),
        "demand": cust.to_numpy(dtype=float),
    })


def _pipe_status(pipes: _Section, inp: _Inp) -> np.ndarray:
    """Status keyword of each pipe (OPEN, CLOSED, CV); field 7 is a minor loss or a status."""
    n = len(pipes)
    status = np.full(n, "OPEN", dtype=object)
    if n == 0:
        return status
    f7 = pipes.col(6).str.upper()
    f8 = pipes.col(7).str.upper()
    f7_status = f7.isin(list(_PIPE_STATUS)).to_numpy()
    if f7.notna().any():
        minor = pipes.col(6).where(~f7_status)
        _numbers(_Section(pipes.name, pd.DataFrame({0: minor}), pipes.lines), 0, "minor loss", inp,
                 optional=True)
    bad = (f8.notna() & ~f8.isin(list(_PIPE_STATUS))).to_numpy()
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise inp.error(pipes.lines[j], f"[PIPES] status {pipes.col(7).iloc[j]!r} is not Open, Closed or CV",
                        zh=f"[PIPES] 状态 {pipes.col(7).iloc[j]!r} 不是 Open、Closed 或 CV")
    status[f7_status] = f7[f7_status].to_numpy()
    has8 = f8.notna().to_numpy()
    status[has8] = f8[has8].to_numpy()
    return status


# --------------------------------------------------------------------------- valve layer


def _flag(col: pd.Series, default: bool, what: str, rows: np.ndarray, name: str) -> np.ndarray:
    text = col.fillna("").astype(str).str.strip().str.lower()
    out = np.full(len(text), default, dtype=bool)
    t = text.isin(list(_TRUE)).to_numpy()
    f = text.isin(list(_FALSE)).to_numpy()
    bad = ~(t | f | (text == "").to_numpy())
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise InputError(f"{name} row {int(rows[j])}: {what} {col.iloc[j]!r} is not true/false/1/0",
                         code="F003",
                         zh=f"{name} 第 {int(rows[j])} 行：{what} {col.iloc[j]!r} 不是 true/false/1/0")
    out[t] = True
    out[f] = False
    return out


def read_valve_layer(path: Path, segments: pd.DataFrame) -> tuple[pd.DataFrame, FileInfo]:
    """Read a valve layer CSV (``pipe,node`` per valve) and check it against ``segments``.

    Header names are case-insensitive; ``link`` (WNTR's name) is accepted for ``pipe``.
    Optional columns: ``id`` or ``valve``, ``operable`` (default true) and
    ``normally_closed`` (default false). Other columns are ignored. Returns the frame
    (``id``, ``segment_id``, ``node_id``, ``operable``, ``normally_closed``, ``_row``)
    and the file's :class:`FileInfo`.
    """
    path = Path(path)
    data = read_input(path, "valve file")
    text, encoding = _decode(data, "auto", path)
    frame, rows = _valve_rows(text, path.name)
    header = {str(c).replace("\ufeff", "").strip().lower(): c for c in frame.columns}
    pipe_col = header.get("pipe", header.get("link"))
    node_col = header.get("node")
    if pipe_col is None or node_col is None:
        raise InputError(f"{path.name}: the valve layer needs a header with columns pipe,node; "
                         f"found {', '.join(map(str, frame.columns))}", code="F001",
                         zh=f"{path.name}：阀门表须有含 pipe,node 列的表头；"
                            f"实际为 {', '.join(map(str, frame.columns))}")
    pipe = frame[pipe_col].astype(str).str.strip()
    node = frame[node_col].astype(str).str.strip()
    _check_valve_places(pipe, node, rows, segments, path.name)
    ids = _valve_ids(frame, header.get("id", header.get("valve")), rows, path.name)
    operable = (_flag(frame[header["operable"]], True, "operable", rows, path.name)
                if "operable" in header else np.ones(len(frame), dtype=bool))
    nc_col = header.get("normally_closed", header.get("normallyclosed"))
    normally_closed = (_flag(frame[nc_col], False, "normally_closed", rows, path.name)
                       if nc_col is not None else np.zeros(len(frame), dtype=bool))
    out = pd.DataFrame({
        "id": ids.astype(object).to_numpy(),
        "segment_id": pipe.astype(object).to_numpy(),
        "node_id": node.astype(object).to_numpy(),
        "operable": operable,
        "normally_closed": normally_closed,
        "_row": rows,
    })
    out["id"] = out["id"].astype(object)
    out["segment_id"] = out["segment_id"].astype(object)
    out["node_id"] = out["node_id"].astype(object)
    info = FileInfo(name=path.name, sha256=_sha256(data), bytes=len(data), encoding=encoding,
                    rows=len(out))
    return out, info


def _valve_rows(text: str, name: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The valve layer's non-blank rows (all text) and their 1-based row numbers in the file."""
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False,
                            skipinitialspace=True, skip_blank_lines=False)
    except (pd.errors.ParserError, ValueError) as exc:
        raise InputError(f"{name}: not a readable CSV table: {exc}", code="F003",
                         zh=f"{name}：不是可读的 CSV 表：{exc}") from exc
    rows = np.arange(2, len(frame) + 2)
    blank = (frame == "").all(axis=1).to_numpy() if len(frame.columns) else np.ones(len(frame), bool)
    return frame[~blank].reset_index(drop=True), rows[~blank]


def _check_valve_places(pipe: pd.Series, node: pd.Series, rows: np.ndarray, segments: pd.DataFrame,
                        name: str) -> None:
    """Each valve names a link of the network and one of its ends, once."""
    empty = ((pipe == "") | (node == "")).to_numpy()
    if empty.any():
        j = int(np.flatnonzero(empty)[0])
        raise InputError(f"{name} row {int(rows[j])}: pipe and node must both be given",
                         code="F003", zh=f"{name} 第 {int(rows[j])} 行：pipe 和 node 都须给出")
    ends = segments.set_index("id")[["from_id", "to_id"]]
    known = pipe.isin(ends.index).to_numpy()
    if not known.all():
        j = int(np.flatnonzero(~known)[0])
        raise InputError(f"{name} row {int(rows[j])}: pipe {pipe.iloc[j]!r} is not a link of "
                         f"the network" + _more(int((~known).sum())), code="F003",
                         zh=f"{name} 第 {int(rows[j])} 行：pipe {pipe.iloc[j]!r} 不是管网中的管段"
                            + _more_zh(int((~known).sum())))
    a = pipe.map(ends["from_id"])
    b = pipe.map(ends["to_id"])
    touches = ((node == a) | (node == b)).to_numpy()
    if not touches.all():
        j = int(np.flatnonzero(~touches)[0])
        raise InputError(f"{name} row {int(rows[j])}: node {node.iloc[j]!r} is not an end of pipe "
                         f"{pipe.iloc[j]!r} (its ends are {a.iloc[j]!r} and {b.iloc[j]!r})"
                         + _more(int((~touches).sum())), code="F003",
                         zh=f"{name} 第 {int(rows[j])} 行：node {node.iloc[j]!r} 不是管段 {pipe.iloc[j]!r} 的端点"
                            f"（其端点为 {a.iloc[j]!r} 和 {b.iloc[j]!r}）" + _more_zh(int((~touches).sum())))
    pairs = pd.DataFrame({"p": pipe, "n": node})
    dup = pairs.duplicated().to_numpy()
    if dup.any():
        j = int(np.flatnonzero(dup)[0])
        first = int(rows[int(np.flatnonzero(((pipe == pipe.iloc[j]) & (node == node.iloc[j])).to_numpy())[0])])
        raise InputError(f"{name} row {int(rows[j])}: a valve on pipe {pipe.iloc[j]!r} at node "
                         f"{node.iloc[j]!r} is already on row {first}", code="F003",
                         zh=f"{name} 第 {int(rows[j])} 行：管段 {pipe.iloc[j]!r} 在节点 {node.iloc[j]!r} 处的阀门"
                            f"已在第 {first} 行给出")


def _valve_ids(frame: pd.DataFrame, id_col: str | None, rows: np.ndarray, name: str) -> pd.Series:
    """Valve ids from the ``id`` column, ``V<row>`` where it is empty or absent; unique."""
    generated = pd.Series([f"V{i}" for i in range(1, len(frame) + 1)], dtype=object)
    if id_col is None:
        return generated
    ids = frame[id_col].astype(str).str.strip()
    ids = ids.where(ids != "", generated)
    dupid = ids.duplicated().to_numpy()
    if dupid.any():
        j = int(np.flatnonzero(dupid)[0])
        raise InputError(f"{name} row {int(rows[j])}: valve id {ids.iloc[j]!r} is repeated",
                         code="F003", zh=f"{name} 第 {int(rows[j])} 行：阀门编号 {ids.iloc[j]!r} 重复")
    return ids
