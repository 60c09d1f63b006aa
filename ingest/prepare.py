"""From survey tables to typed twin features, with the data checks (数据检查).

Everything here is vectorised over rows: a million-segment batch is a handful of
numpy passes, not a Python loop per row. Only the rows an issue names are
visited one by one, to word the report.
"""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import shapely

from ingest.report import Report
from ingest.tables import SurveyTables
from twin.crs import TwinCRS, transformer
from twin.domain import (
    FEATURE_DEGREE,
    GRAVITY_UTILITIES,
    SOURCE_APPURTENANCES,
    VALVE_APPURTENANCES,
    canonical_appurtenance,
    canonical_feature,
    depth_reference,
    map_distinct,
    parse_sizes,
    parse_utility,
)
from twin.schema import names
from twin.settings import TwinSettings

__all__ = ["Prepared", "prepare", "CRITICAL_WORDS", "INOPERABLE_WORDS", "NORMALLY_CLOSED_WORDS"]

#: Remarks that mark a customer critical (hospitals and the like).
CRITICAL_WORDS = ("医院", "卫生院", "急救", "血站", "养老院", "敬老院", "学校", "中学", "小学", "幼儿园", "消防",
                  "重要用户", "hospital", "critical")
#: Remarks that mark a valve as not operable.
INOPERABLE_WORDS = ("无法关闭", "不能关闭", "关不严", "失灵", "损坏", "埋没", "找不到", "inoperable")
#: Remarks that mark a valve as normally closed (boundary between zones).
NORMALLY_CLOSED_WORDS = ("常闭", "normally closed")

_STATUS = {
    "active": "active", "在用": "active", "运行": "active", "使用": "active", "正常": "active",
    "abandoned": "abandoned", "废弃": "abandoned", "停用": "abandoned", "报废": "abandoned",
    "planned": "planned", "规划": "planned", "proposed": "proposed", "拟建": "proposed",
    "设计": "proposed", "待建": "planned",
}
STATUS_WORDS = _STATUS  #: public: the survey's status words (在用 -> active, ...)
_NUMBER_RE = re.compile(r"^\s*([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)\s*(?:m|mm|mpa|kv|kpa|米)?\s*$", re.I)


@dataclass
class Prepared:
    """Typed, checked features ready to load."""

    nodes: pd.DataFrame
    segments: pd.DataFrame
    valves: pd.DataFrame
    sources: pd.DataFrame
    customers: pd.DataFrame
    report: Report


def _numbers(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Parse numeric text (units m/mm/MPa/kV allowed); returns (values, bad mask)."""
    if values.dtype.kind == "f":  # numbers already (a typed GIS field): NaN is no value
        out = values.to_numpy(dtype=float, copy=True)
        return out, np.isinf(out)
    if isinstance(values.dtype, pd.ArrowDtype):  # Arrow text: Arrow parses clean columns at once
        try:
            parsed = pc.cast(pa.array(values.array), pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            values = values.astype(object)
        else:
            out = parsed.to_numpy(zero_copy_only=False).astype(float, copy=True)
            return out, values.notna().to_numpy() & ~np.isfinite(out)
    raw = values.astype(object)
    present = raw.notna().to_numpy()
    # A copy: pandas may hand out a read-only view, and the retry below writes into it.
    out = np.array(pd.to_numeric(raw, errors="coerce"), dtype=float)
    retry = present & np.isnan(out)
    if retry.any():
        extracted = raw[retry].astype(str).str.extract(_NUMBER_RE, expand=False)
        out[retry] = pd.to_numeric(extracted, errors="coerce").to_numpy(dtype=float)
    bad = present & ~np.isfinite(out)
    return out, bad


def _contains_any(values: pd.Series, words: tuple[str, ...]) -> np.ndarray:
    pattern = "|".join(re.escape(w) for w in words)
    found = map_distinct(values, lambda d: d.str.contains(pattern, case=False, regex=True))
    return found.to_numpy(dtype=bool)


def _year(values: pd.Series) -> np.ndarray:
    years = map_distinct(values, lambda d: d.str.extract(r"((?:19|20)\d{2})", expand=False))
    return pd.to_numeric(years, errors="coerce").to_numpy(dtype=float)


def prepare(tables: SurveyTables, settings: TwinSettings, crs: TwinCRS, *, axis_order: str = "ne",
            check_long: bool = True, network_model: bool = False) -> Prepared:
    """Type, check and derive the twin's features from one batch of survey tables.

    ``network_model`` marks hydraulic models (EPANET): parallel links and links between
    coincident points are legitimate there, so they are warnings instead of errors.
    """
    batch = SurveyBatch(settings, crs, axis_order=axis_order, check_long=check_long,
                        network_model=network_model, points_file=tables.points_file,
                        segments_file=tables.segments_file)
    nodes = batch.add_points(tables.points)
    batch.end_points()
    segments = batch.add_segments(tables.segments)
    valves, sources, customers = batch.finish(tables, segments)
    nodes["degree"] = batch.node_degrees(nodes["id"])
    return Prepared(nodes, segments, valves, sources, customers, batch.report)


#: What the whole-network checks keep of each point and each segment: compact columns, so a
#: streamed batch holds a few dozen bytes per feature and no Python object per row (texts are
#: category codes or Arrow text; a segment's plan ends are its points', read through
#: ``_fi``/``_ti`` when needed; point ids are looked up through :class:`_IdIndex`).
_POINT_KEEP = ("id", "_row", "utility", "easting", "northing",
               *(n for n in names("node", reads="checks") if n != "survey_class"))
_POINT_CODES = ("utility", "subtype", "feature", "appurtenance")  # few distinct texts: codes
_SEGMENT_KEEP = ("id", "_row", "_fi", "_ti", "utility", "subtype", "from_z", "to_z", "_valid")
_ARROW_TEXT = pd.ArrowDtype(pa.string())
#: glibc's malloc_trim (None elsewhere): the chunks' freed memory handed back to the system.
_MALLOC_TRIM = getattr(ctypes.CDLL(None), "malloc_trim", None)
#: Texts hashed this many at a time (the Python strings of one slice exist at once).
_HASH_SLICE = 1 << 18


def _give_back() -> None:
    """Return what the last chunk or check freed (glibc keeps freed heap, Arrow its pool): the
    batch's footprint is then what it keeps, not the most any step ever held."""
    pa.default_memory_pool().release_unused()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _arrow_text(values: pd.Series | np.ndarray) -> pd.arrays.ArrowExtensionArray:
    """Text as one Arrow array (a few bytes a value) instead of a Python string per row."""
    text = isinstance(values, pd.Series) and values.dtype != object
    if text and pd.api.types.is_string_dtype(values.dtype):
        return values.astype(_ARROW_TEXT).array  # text already: Arrow to Arrow, no string made
    values = values.to_numpy(dtype=object) if isinstance(values, pd.Series) else values
    return pd.array(values, dtype=_ARROW_TEXT)


def _codes(values: pd.Series) -> pd.Categorical:
    """Text of few distinct values as category codes (a byte or two a row, no object per row)."""
    return pd.Categorical(values.to_numpy(dtype=object))


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Chunks' keeps as one frame; category columns stay codes over the union of categories."""
    if len(frames) == 1:
        return frames[0].reset_index(drop=True)
    cats = [c for c in frames[0].columns if isinstance(frames[0][c].dtype, pd.CategoricalDtype)]
    for c in cats:
        union = pd.Index(pd.unique(np.concatenate(
            [np.asarray(f[c].cat.categories, dtype=object) for f in frames])), dtype=object)
        for f in frames:
            f[c] = f[c].cat.set_categories(union)
    return pd.concat(frames, ignore_index=True)


def _text_at(values: pd.Series, at: np.ndarray | slice = slice(None)) -> np.ndarray:
    """The texts of ``values`` at ``at`` as objects (None where there is none), read through a
    category column's codes: the category strings are shared, none is made per row."""
    if not isinstance(values.dtype, pd.CategoricalDtype):
        out = values.to_numpy(dtype=object)[at]
        return np.where(pd.isna(out), None, out)
    names_ = np.append(np.asarray(values.cat.categories, dtype=object), None)
    return names_[values.cat.codes.to_numpy()[at]]


def _hash_text(values: pd.Series | np.ndarray) -> np.ndarray:
    """64-bit hashes of texts (other values hashed as their ``str``), a slice at a time."""
    out = np.empty(len(values), dtype=np.uint64)
    for start in range(0, len(values), _HASH_SLICE):
        part = (values[start:start + _HASH_SLICE] if isinstance(values, np.ndarray)
                else values.iloc[start:start + _HASH_SLICE].to_numpy(dtype=object))
        if pd.api.types.infer_dtype(part, skipna=False) != "string":
            part = part.astype(str).astype(object)
        out[start:start + len(part)] = pd.util.hash_array(part, categorize=False)
    return out


class _IdIndex:
    """Unique ids looked up through their sorted 64-bit hashes: 12 bytes an id and no Python
    string kept (a pandas index keeps a string and a hash-table slot per id). Every hit is
    checked against the id itself; ids whose hashes collide are looked up exactly in a dict."""

    def __init__(self, ids: pd.Series, hashes: np.ndarray | None = None) -> None:
        self.ids = pd.Series(_arrow_text(ids), copy=False)
        hashes = _hash_text(self.ids) if hashes is None else hashes
        small = len(hashes) < 2**31
        self.order = np.argsort(hashes, kind="stable").astype(np.int32 if small else np.int64)
        self.hashes = hashes[self.order]
        same = self.hashes[1:] == self.hashes[:-1]
        self.exact: dict[str, int] = {}
        self.colliding = np.zeros(0, dtype=np.uint64)
        if same.any():
            at = np.flatnonzero(np.r_[same, False] | np.r_[False, same])
            pos = self.order[at]
            self.exact = dict(zip(self.ids.take(pos).astype(str), pos.tolist(), strict=True))
            self.colliding = np.unique(self.hashes[at])

    def __len__(self) -> int:
        return len(self.ids)

    def get_indexer(self, values: pd.Series | np.ndarray) -> np.ndarray:
        """Position of each value among the ids (-1: not there, or no value)."""
        values = np.asarray(values.to_numpy(dtype=object) if isinstance(values, pd.Series) else values,
                            dtype=object)
        out = np.full(len(values), -1, dtype=np.intp)
        if not len(values) or not len(self.ids):
            return out
        texts = pd.api.types.infer_dtype(values, skipna=False) == "string"  # (the usual case)
        rows = np.arange(len(values)) if texts else np.flatnonzero(pd.notna(values))
        want = values if texts else values[rows].astype(str).astype(object)
        hashes = _hash_text(want)
        at = np.minimum(np.searchsorted(self.hashes, hashes), len(self.hashes) - 1)
        hit = self.hashes[at] == hashes
        cand = np.where(hit, self.order[at], 0)
        same = hit & (self.ids.take(cand).to_numpy(dtype=object) == want)
        out[rows[same]] = cand[same]
        if len(self.colliding):  # the rare ids sharing a hash: exactly
            odd = np.flatnonzero(np.isin(hashes, self.colliding))
            out[rows[odd]] = [self.exact.get(v, -1) for v in want[odd]]
        return out


def _duplicated(hashes: np.ndarray, values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(seen before, seen more than once) of each value, from their hashes sorted: only the
    values whose hashes repeat are compared as texts."""
    order = np.argsort(hashes, kind="stable")
    same = hashes[order][1:] == hashes[order][:-1]
    before, many = np.zeros(len(hashes), bool), np.zeros(len(hashes), bool)
    if same.any():
        rows = np.sort(order[np.flatnonzero(np.r_[same, False] | np.r_[False, same])])
        text = values.iloc[rows].astype(object).reset_index(drop=True)
        before[rows] = text.duplicated(keep="first").to_numpy()
        many[rows] = text.duplicated(keep=False).to_numpy()
    return before, many


class SurveyBatch:
    """A survey batch checked chunk by chunk: points first, then segments, then the checks over
    the whole network (duplicates, connection counts, crossings) and the derived valves,
    sources and customers, all on compact arrays.

    Row-wise checks and derivation run per chunk (:meth:`add_points`, :meth:`add_segments`
    return the chunk's typed features, ready to load); the report collects every issue.
    """

    def __init__(self, settings: TwinSettings, crs: TwinCRS, *, axis_order: str = "ne",
                 check_long: bool = True, network_model: bool = False, points_file: str = "points",
                 segments_file: str = "segments") -> None:
        self.settings, self.crs, self.axis_order = settings, crs, axis_order
        self.check_long, self.network_model = check_long, network_model
        self.points_file, self.segments_file = points_file, segments_file
        self.report = Report()
        self._points: list[pd.DataFrame] = []
        self._segments: list[pd.DataFrame] = []
        self._ends: list[pd.DataFrame] = []  # the segments that end at a valve point
        self.first = pd.DataFrame(columns=list(_POINT_KEEP))
        self._index = _IdIndex(pd.Series([], dtype=object))
        self._degree = np.zeros(0, dtype=np.int32)
        self.n_nodes = self.n_segments = 0

    def add_points(self, chunk: pd.DataFrame) -> pd.DataFrame:
        """Check and type one chunk of the point table; returns its nodes."""
        nodes = _prepare_points(chunk, self.points_file, self.crs, self.axis_order, self.report)
        keep = nodes[list(_POINT_KEEP)].copy()
        # Remarks matter later only where a valve, source or customer is derived.
        wanted = (keep["appurtenance"].isin([*VALVE_APPURTENANCES, *SOURCE_APPURTENANCES])
                  | (keep["feature"] == "service_entry"))
        keep["remarks"] = _arrow_text(keep["remarks"].where(wanted, None))
        keep["id"] = _arrow_text(keep["id"])
        keep["_row"] = keep["_row"].to_numpy(dtype=np.int32)
        for col in _POINT_CODES:
            keep[col] = _codes(keep[col])
        self._points.append(keep)
        self.n_nodes += len(nodes)
        _give_back()
        return nodes

    def end_points(self) -> None:
        """All points are in: duplicate ids (E201) and the lookup of segment ends."""
        points = _concat(self._points) if self._points else self.first
        self._points = []
        # Duplicates through the ids' sorted hashes: no hash table of a million strings.
        hashes = _hash_text(points["id"])
        before, many = _duplicated(hashes, points["id"])
        dup = points["id"].notna().to_numpy() & many
        if dup.any():
            rows = points.loc[dup, ["id", "_row"]].rename(columns={"id": "point_id"})
            self.report.add_rows("E201", np.ones(len(rows), bool), rows, self.points_file,
                                 lambda r: f"point id {r['point_id']!r} appears more than once", ("point_id",))
        self.first = points[~before].reset_index(drop=True)
        del points
        self._index = _IdIndex(self.first["id"], hashes[~before])
        del hashes
        _give_back()
        self._degree = np.zeros(len(self.first), dtype=np.int32)

    def add_segments(self, chunk: pd.DataFrame) -> pd.DataFrame:
        """Check and type one chunk of the segment table; returns its segments."""
        segments = _prepare_segments(chunk, self.segments_file, self.first, self._index, self.settings,
                                     self.report, check_long=self.check_long,
                                     network_model=self.network_model)
        keep = segments[list(_SEGMENT_KEEP)].copy()
        keep["id"] = _arrow_text(keep["id"])
        keep["utility"], keep["subtype"] = _codes(keep["utility"]), _codes(keep["subtype"])
        for col in ("_row", "_fi", "_ti"):
            keep[col] = keep[col].to_numpy(dtype=np.int32)
        keep["_explicit"] = chunk["id"].notna().to_numpy()
        fi, ti = keep["_fi"].to_numpy(), keep["_ti"].to_numpy()
        ends = np.concatenate([fi, ti])
        self._degree += np.bincount(ends[ends >= 0], minlength=len(self.first))
        # End ids the point table lacks (E202) are kept as given, for the duplicates' report.
        keep["_from_id"] = _arrow_text(chunk["from_id"].where(fi < 0, None))
        keep["_to_id"] = _arrow_text(chunk["to_id"].where(ti < 0, None))
        # Heights matter later only where a valve is derived: those segments are kept whole.
        self._ends.append(_valve_ends(keep, self.first))
        self._segments.append(keep.drop(columns=["from_z", "to_z"]))
        self.n_segments += len(segments)
        _give_back()
        return segments

    def _by_id(self, extra: SurveyTables) -> pd.DataFrame:
        """The points valves, sources and customers are derived from or listed at, indexed by
        id, their texts as objects (a few rows, not the whole point table)."""
        first = self.first
        wanted = (first["appurtenance"].isin([*VALVE_APPURTENANCES, *SOURCE_APPURTENANCES])
                  | (first["feature"] == "service_entry")).to_numpy()
        rows = [np.flatnonzero(wanted)]
        for listed in (extra.valves, extra.sources, extra.customers):
            if listed is not None and len(listed) and "node_id" in listed.columns:
                at = self._index.get_indexer(listed["node_id"])
                rows.append(at[at >= 0])
        rows = np.unique(np.concatenate(rows))
        part = first.iloc[rows]
        by_id = pd.DataFrame({c: _text_at(part[c]) if c in _POINT_CODES or c == "remarks"
                              else part[c].to_numpy() for c in first.columns if c != "id"})
        return by_id.set_axis(pd.Index(part["id"].to_numpy(dtype=object), name="id"))

    def node_degrees(self, ids: pd.Series) -> np.ndarray:
        """Connection count of each of ``ids`` (0 for unknown ids)."""
        at = self._index.get_indexer(ids)
        return np.where(at >= 0, self._degree[np.where(at >= 0, at, 0)], 0)

    def finish(self, tables: SurveyTables | None = None, segments: pd.DataFrame | None = None
               ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """The whole-network checks, then valves, sources and customers; fills the counts.

        ``tables`` may carry explicit valve, source and customer lists; explicit valves need
        the batch's whole ``segments``.
        """
        seg = _concat(self._segments) if self._segments else pd.DataFrame(
            columns=[*_SEGMENT_KEEP, "_explicit", "_from_id", "_to_id"])
        ends = (pd.concat(self._ends, ignore_index=True) if self._ends
                else _valve_ends(seg, self.first))
        self._segments, self._ends = [], []
        _check_duplicate_segments(seg, self.first, self.segments_file, self.report,
                                  network_model=self.network_model)
        _give_back()
        _check_degrees(self.first, self._degree, self.points_file, self.report)
        _check_crossings(seg, self.first, self.segments_file, self.report)
        _give_back()
        extra = tables or SurveyTables(points=pd.DataFrame(), segments=pd.DataFrame())
        by_id = self._by_id(extra)
        if segments is None or extra.valves is None:
            segments = ends
        valves = _valves(extra, by_id, segments, self.report)
        sources, customers = _sources(extra, by_id), _customers(extra, by_id)
        self.report.counts = {"nodes": self.n_nodes, "segments": self.n_segments, "valves": len(valves),
                              "sources": len(sources), "customers": len(customers)}
        return valves, sources, customers


def _valve_ends(seg: pd.DataFrame, first: pd.DataFrame) -> pd.DataFrame:
    """The segments that end at a valve point, with what :func:`_valves` reads of them."""
    valve_at = first["appurtenance"].isin(list(VALVE_APPURTENANCES)).to_numpy()
    fi, ti = seg["_fi"].to_numpy(), seg["_ti"].to_numpy()
    at = np.zeros(len(seg), bool)
    for codes in (fi, ti):
        at |= (codes >= 0) & valve_at[np.where(codes >= 0, codes, 0)]
    part = seg[at]
    ids = first["id"]
    return pd.DataFrame({"id": part["id"].to_numpy(dtype=object),
                         "from_node": ids.take(part["_fi"].to_numpy()).to_numpy(dtype=object),
                         "to_node": ids.take(part["_ti"].to_numpy()).to_numpy(dtype=object),
                         "from_z": part["from_z"].to_numpy(),
                         "to_z": part["to_z"].to_numpy(), "utility": _text_at(part["utility"])})


# -- points ---------------------------------------------------------------------------------
def _prepare_points(p: pd.DataFrame, f: str, crs: TwinCRS, axis_order: str, report: Report) -> pd.DataFrame:
    out = pd.DataFrame({"id": p["point_id"], "_row": p["_row"]})
    for col in ("point_id", "utility", "x", "y", "ground_z"):
        report.add_rows("E102", p[col].isna(), p, f, f"empty {col}", ("point_id",))

    parent, subtype, unknown = parse_utility(p["utility"])
    report.add_rows("E103", unknown & p["utility"].notna().to_numpy(), p, f,
                    lambda r: f"unknown utility code {r['utility']!r}", ("point_id",))
    out["utility"], out["subtype"] = parent, subtype

    numeric = {}
    for col in ("x", "y", "ground_z", "depth", "well_depth"):
        numeric[col], bad = _numbers(p[col])
        report.add_rows("E101", bad, p, f, lambda r, c=col: f"{c} is not a number: {r[c]!r}", ("point_id",))
    northing, easting = (numeric["x"], numeric["y"]) if axis_order == "ne" else (numeric["y"], numeric["x"])
    easting, wrong_zone = crs.strip_zone_prefix(easting)
    report.add_rows("E104", wrong_zone, p, f,
                    lambda r: f"easting carries the prefix of another zone than the twin's ({crs.gk_zone_3deg})",
                    ("point_id",))
    _check_extent(easting, northing, crs, p, f, report, axis_order)
    out["easting"], out["northing"], out["ground_z"] = easting, northing, numeric["ground_z"]
    out["depth_m"], out["well_depth_m"] = numeric["depth"], numeric["well_depth"]
    out["well_bottom_z"] = numeric["ground_z"] - numeric["well_depth"]

    feature, bad_feature = canonical_feature(p["feature"])
    appurtenance, bad_app = canonical_appurtenance(p["appurtenance"])
    report.add_rows("W105", bad_feature, p, f, lambda r: f"unknown feature {r['feature']!r} kept as given",
                    ("point_id",))
    report.add_rows("W106", bad_app, p, f,
                    lambda r: f"unknown appurtenance {r['appurtenance']!r} kept as given", ("point_id",))
    both = p["feature"].notna().to_numpy() & p["appurtenance"].notna().to_numpy()
    report.add_rows("W107", both, p, f, "a point has a feature or an appurtenance, not both", ("point_id",))
    out["feature"], out["appurtenance"] = feature, appurtenance
    for col in names("node", surveyed=True):
        out[col] = p[col]
    out["survey_class"], bad_class = _survey_class(p["survey_class"])
    report.add_rows("E109", bad_class, p, f,
                    lambda r: f"survey class {r['survey_class']!r} is not 明显点 exposed or 隐蔽点 concealed",
                    ("point_id",))

    out["_valid"] = ~(out["id"].isna() | np.isnan(easting) | np.isnan(northing)
                      | np.isnan(numeric["ground_z"]) | pd.isna(parent))
    return out


#: CJJ 61 accuracy classes of a point as survey tables write them (case and spaces ignored).
_SURVEY_CLASSES = {
    "exposed": ("明显点", "明显", "明显管线点", "明", "exposed", "e"),
    "concealed": ("隐蔽点", "隐蔽", "隐蔽管线点", "隐", "concealed", "c"),
}
_SURVEY_CLASS_OF = {name.lower(): cls for cls, names_ in _SURVEY_CLASSES.items() for name in names_}


def _survey_class(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Canonical survey class (None where not given) and the mask of values that are neither class."""
    canonical = map_distinct(values, lambda d: d.str.lower().map(_SURVEY_CLASS_OF)).to_numpy(object)
    given = map_distinct(values, lambda d: d != "").to_numpy(bool)
    known = pd.notna(canonical)
    return np.where(known, canonical, None), given & ~known


def _check_extent(easting: np.ndarray, northing: np.ndarray, crs: TwinCRS, p: pd.DataFrame, f: str,
                  report: Report, axis_order: str) -> None:
    area = crs.crs.area_of_use
    finite = np.isfinite(easting) & np.isfinite(northing)
    if area is None or not finite.any():
        return
    to_geo = transformer(crs.crs, "EPSG:4326")
    lon, lat = to_geo.transform(easting, northing)
    margin = 1.0  # degrees: survey data at a zone edge may overlap the next zone a little
    outside = finite & ~(
        (lon >= area.west - margin) & (lon <= area.east + margin)
        & (lat >= area.south - margin) & (lat <= area.north + margin)
    )
    if outside.any():
        swapped_lon, swapped_lat = to_geo.transform(northing, easting)
        ok_swapped = ((swapped_lon >= area.west - margin) & (swapped_lon <= area.east + margin)
                      & (swapped_lat >= area.south - margin) & (swapped_lat <= area.north + margin))
        hint = ""
        if (outside & ok_swapped).sum() > outside.sum() / 2:
            other = "en" if axis_order == "ne" else "ne"
            hint = f"; X and Y look swapped: try --axis-order {other}"
        report.add_rows("E104", outside, p, f,
                        lambda r: f"X={r['x']} Y={r['y']} lies outside {crs.crs.name}{hint}", ("point_id",))


# -- segments -------------------------------------------------------------------------------
_SEGMENT_IDS = ("from_id", "to_id")


@dataclass
class _Heights:
    """Per-segment heights at both ends, from the segment table and its points."""

    ground: tuple[np.ndarray, np.ndarray]  # ground_z of the end points
    point_depth: tuple[np.ndarray, np.ndarray]  # depth given on the end points
    reference: tuple[np.ndarray, np.ndarray]  # elevation at the depth reference (top or invert)
    depth: tuple[np.ndarray, np.ndarray]  # depth to the reference
    centre: tuple[np.ndarray, np.ndarray]  # z of the pipe's centre


def _prepare_segments(s: pd.DataFrame, f: str, first: pd.DataFrame, index: _IdIndex, settings: TwinSettings,
                      report: Report, *, check_long: bool, network_model: bool = False) -> pd.DataFrame:
    """Typed segments from (a chunk of) the survey's segment table, checked, with their 3D ends;
    ``index`` looks the end points up among ``first`` (the point table, one row per id)."""
    for col in ("from_id", "to_id", "size"):
        report.add_rows("E102", s[col].isna(), s, f, f"empty {col}", _SEGMENT_IDS)
    ids = s["id"].where(s["id"].notna(), s["from_id"].astype(str) + "-" + s["to_id"].astype(str))
    out = pd.DataFrame({"id": ids, "from_node": s["from_id"], "to_node": s["to_id"], "_row": s["_row"]})
    fi, ti = _segment_ends(s, f, index, report)
    ok = (fi >= 0) & (ti >= 0)
    out["_fi"], out["_ti"] = fi, ti
    _segment_utility(out, s, f, first, fi, report)
    half_height_m = _segment_size(out, s, f, report)
    num = _segment_attributes(out, s, f, report)
    heights = _segment_geometry(out, s, first, fi, ti, num, half_height_m)
    _check_segment_depths(s, f, report, settings, ok, heights, num, half_height_m)
    _check_segment_lengths(s, f, report, settings, ok & (fi == ti), ok, out["length_m"].to_numpy(),
                           check_long=check_long, network_model=network_model)
    # Gravity drainage falls along its flow (from -> to).
    ref1, ref2 = heights.reference
    gravity = np.isin(out["utility"].to_numpy().astype(str), list(GRAVITY_UTILITIES))
    reverse = ok & gravity & np.isfinite(ref1) & np.isfinite(ref2) & (ref2 > ref1 + 0.005)
    report.add_rows("W307", reverse, s, f, "the invert rises along the flow direction", _SEGMENT_IDS)
    z1, z2 = heights.centre
    x1, y1, x2, y2 = (out[c].to_numpy() for c in ("x1", "y1", "x2", "y2"))
    out["_valid"] = (ok & np.isfinite(z1) & np.isfinite(z2) & np.isfinite(half_height_m)
                     & np.isfinite(x1) & np.isfinite(y1) & np.isfinite(x2) & np.isfinite(y2))
    return out


def _segment_ends(s: pd.DataFrame, f: str, index: _IdIndex, report: Report
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Endpoints as integer codes into the point table (-1: missing, reported E202)."""
    fi, ti = (index.get_indexer(s[end]) for end in _SEGMENT_IDS)
    for end, codes in (("from_id", fi), ("to_id", ti)):
        missing = codes < 0
        if missing.any():
            missing &= s[end].notna().to_numpy()
            report.add_rows("E202", missing, s, f,
                            lambda r, e=end: f"end point {r[e]!r} is not in the point table", _SEGMENT_IDS)
    return fi, ti


def _segment_utility(out: pd.DataFrame, s: pd.DataFrame, f: str, first: pd.DataFrame, fi: np.ndarray,
                     report: Report) -> None:
    """Utility: the segment's own, else its start point's."""
    own_parent, own_sub, unknown = parse_utility(s["utility"])
    start = np.where(fi >= 0, fi, 0)
    node_parent, node_sub = (_text_at(first[c], start) if len(first) else np.full(len(fi), None)
                             for c in ("utility", "subtype"))
    has_own = s["utility"].notna().to_numpy()
    report.add_rows("E103", unknown & has_own, s, f, lambda r: f"unknown utility code {r['utility']!r}",
                    _SEGMENT_IDS)
    out["utility"] = np.where(has_own, own_parent, np.where(fi >= 0, node_parent, None))
    out["subtype"] = np.where(has_own, own_sub, np.where(fi >= 0, node_sub, None))
    mismatch = has_own & (fi >= 0) & ~unknown & (own_parent.to_numpy() != node_parent)
    report.add_rows("W209", mismatch, s, f,
                    lambda r: f"segment utility {r['utility']} differs from its start point's",
                    _SEGMENT_IDS)


def _segment_size(out: pd.DataFrame, s: pd.DataFrame, f: str, report: Report) -> np.ndarray:
    """Size and shape (circular or rect); returns half the section's height (m)."""
    sizes = parse_sizes(s["size"])
    report.add_rows("E305", sizes["bad"].to_numpy(), s, f, lambda r: f"cannot read size {r['size']!r}",
                    _SEGMENT_IDS)
    d = sizes["diameter_mm"].to_numpy()
    w, h = sizes["width_mm"].to_numpy(), sizes["height_mm"].to_numpy()
    rect = np.isfinite(w)
    out["shape"] = np.where(rect, "rect", "circular")
    out["diameter_mm"], out["width_mm"], out["height_mm"] = d, w, h
    out["size_text"] = s["size"]
    return np.where(rect, h, d) / 2000.0


def _segment_attributes(out: pd.DataFrame, s: pd.DataFrame, f: str, report: Report
                        ) -> dict[str, np.ndarray]:
    """Pressure or voltage, cables and holes, the text columns, year built and status.

    Returns the numeric columns of the table (depths and elevations included) parsed.
    """
    num = {}
    for col in ("from_depth", "to_depth", "from_elev", "to_elev", "from_top_elev", "to_top_elev",
                "from_invert_elev", "to_invert_elev", "pressure", "cables", "holes_total",
                "holes_used"):
        num[col], bad = _numbers(s[col])
        report.add_rows("E101", bad, s, f, lambda r, c=col: f"{c} is not a number: {r[c]!r}",
                        _SEGMENT_IDS)
    is_power = out["utility"].to_numpy() == "DL"
    out["pressure_mpa"] = np.where(is_power, np.nan, num["pressure"])
    out["voltage_kv"] = np.where(is_power, num["pressure"], np.nan)
    for col in names("segment", surveyed=True, type="integer"):  # counts
        out[col] = pd.array(np.where(np.isfinite(num[col]), np.round(num[col]), np.nan), dtype="Int64")
    for col in names("segment", surveyed=True, type="string"):  # carried as surveyed
        out[col] = s[col]
    out["built_year"] = pd.array(_year(s["built"]), dtype="Int64")
    status = map_distinct(s["status"], lambda d: d.str.lower().replace("", "active").map(_STATUS))
    report.add_rows("E108", status.isna().to_numpy(), s, f, lambda r: f"unknown status {r['status']!r}",
                    _SEGMENT_IDS)
    out["status"] = status.fillna("active")
    return num


def _segment_geometry(out: pd.DataFrame, s: pd.DataFrame, first: pd.DataFrame, fi: np.ndarray,
                      ti: np.ndarray, num: dict[str, np.ndarray], half_height_m: np.ndarray) -> _Heights:
    """Plan positions from the points, heights from depth or elevation, and the length.

    ``num["from_elev"]`` and ``num["to_elev"]`` become the elevations at the depth reference.
    """
    safe_f, safe_t = np.where(fi >= 0, fi, 0), np.where(ti >= 0, ti, 0)
    e, n, g = first["easting"].to_numpy(), first["northing"].to_numpy(), first["ground_z"].to_numpy()
    pdepth = first["depth_m"].to_numpy()
    x1, y1, g1 = e[safe_f], n[safe_f], g[safe_f]
    x2, y2, g2 = e[safe_t], n[safe_t], g[safe_t]
    ref = depth_reference(out["utility"].to_numpy().astype(str))
    invert = ref == "invert"
    out["depth_reference"] = ref
    # Depth: the segment's, else the point's; elevation when given wins for the height.
    d1 = np.where(np.isfinite(num["from_depth"]), num["from_depth"], pdepth[safe_f])
    d2 = np.where(np.isfinite(num["to_depth"]), num["to_depth"], pdepth[safe_t])
    for end in ("from", "to"):
        num[f"{end}_elev"] = _reference_elevation(num[f"{end}_elev"], num[f"{end}_top_elev"],
                                                  num[f"{end}_invert_elev"], invert, half_height_m)
    ref1 = np.where(np.isfinite(num["from_elev"]), num["from_elev"], g1 - d1)
    ref2 = np.where(np.isfinite(num["to_elev"]), num["to_elev"], g2 - d2)
    d1 = np.where(np.isfinite(d1), d1, g1 - ref1)
    d2 = np.where(np.isfinite(d2), d2, g2 - ref2)
    sign = np.where(invert, 1.0, -1.0)  # centre above the invert, below the top
    z1 = ref1 + sign * half_height_m
    z2 = ref2 + sign * half_height_m
    out["from_depth_m"], out["to_depth_m"] = d1, d2
    out["from_z"], out["to_z"] = z1, z2
    out["x1"], out["y1"], out["x2"], out["y2"] = x1, y1, x2, y2
    length = np.hypot(x2 - x1, y2 - y1)
    vertices = s["vertices"] if "vertices" in s.columns else None
    out["vertices"] = vertices if vertices is not None else None
    if vertices is not None and vertices.notna().any():
        length = length.copy()
        has_v = vertices.notna().to_numpy()
        for i in np.flatnonzero(has_v):  # EPANET polylines only: rare, small
            pts = np.array([(x1[i], y1[i]), *vertices.iat[i], (x2[i], y2[i])], dtype=float)
            length[i] = float(np.hypot(*np.diff(pts, axis=0).T).sum())
    out["length_m"] = length
    return _Heights(ground=(g1, g2), point_depth=(pdepth[safe_f], pdepth[safe_t]), reference=(ref1, ref2),
                    depth=(d1, d2), centre=(z1, z2))


def _check_segment_depths(s: pd.DataFrame, f: str, report: Report, settings: TwinSettings, ok: np.ndarray,
                          heights: _Heights, num: dict[str, np.ndarray], half_height_m: np.ndarray) -> None:
    """Depth checks where both ends are known: missing, implausible, deep, above ground, and
    ground minus depth against a given elevation."""
    ref1, ref2 = heights.reference
    g1, g2 = heights.ground
    z1, z2 = heights.centre
    ends_ok = ok & np.isfinite(half_height_m)
    missing_depth = ok & (~np.isfinite(ref1) | ~np.isfinite(ref2))
    report.add_rows("E301", missing_depth, s, f, "no depth or elevation at one end", _SEGMENT_IDS)
    for end, depth in zip(("from", "to"), heights.depth, strict=True):
        bad = ok & np.isfinite(depth) & ((depth < 0) | (depth > settings.max_depth_m))
        report.add_rows("E302", bad, s.assign(_depth=depth), f,
                        lambda r, e=end: f"{e} depth {r['_depth']:.2f} m is implausible", _SEGMENT_IDS)
        deep = ok & (depth > settings.deep_warning_m) & (depth <= settings.max_depth_m)
        report.add_rows("W303", deep, s.assign(_depth=depth), f,
                        lambda r, e=end: f"{e} depth {r['_depth']:.2f} m", _SEGMENT_IDS)
    top1, top2 = z1 + half_height_m, z2 + half_height_m
    above = ends_ok & ((top1 > g1 + 0.005) | (top2 > g2 + 0.005))
    report.add_rows("E304", above, s, f, "the pipe top is above the ground", _SEGMENT_IDS)
    tol = settings.elevation_tolerance_m
    for k, end in enumerate(("from", "to")):
        elev, seg_depth = num[f"{end}_elev"], num[f"{end}_depth"]
        gz, pd_ = heights.ground[k], heights.point_depth[k]
        both = ok & np.isfinite(elev) & np.isfinite(seg_depth)
        off = both & (np.abs(gz - seg_depth - elev) > tol)
        off |= ok & np.isfinite(elev) & ~np.isfinite(seg_depth) & np.isfinite(pd_) & (np.abs(gz - pd_ - elev) > tol)
        report.add_rows("W308", off, s, f,
                        lambda r, e=end: f"{e}: ground minus depth differs from the elevation given",
                        _SEGMENT_IDS)


def _check_segment_lengths(s: pd.DataFrame, f: str, report: Report, settings: TwinSettings,
                           same: np.ndarray, ok: np.ndarray, length: np.ndarray, *, check_long: bool,
                           network_model: bool) -> None:
    """Zero-length segments (an error, a warning in network models) and long ones."""
    short = ok & ((length < settings.short_segment_m) | same)
    report.add_rows("W210" if network_model else "E204", short, s, f, lambda r: "zero-length segment (both ends at one place)",
                    _SEGMENT_IDS)
    if check_long:
        long_ = ok & (length > settings.long_segment_m)
        report.add_rows("W205", long_, s, f,
                        lambda r: f"segment longer than {settings.long_segment_m:g} m", _SEGMENT_IDS)


def _check_duplicate_segments(seg: pd.DataFrame, first: pd.DataFrame, f: str, report: Report, *,
                              network_model: bool) -> None:
    """Duplicates over the whole batch: explicit ids, and the same pair of points for one utility."""
    fi, ti = seg["_fi"].to_numpy(dtype=np.int64), seg["_ti"].to_numpy(dtype=np.int64)
    ok = (fi >= 0) & (ti >= 0)
    repeated = _duplicated(_hash_text(seg["id"]), seg["id"])[0]
    dup_id = repeated & seg["_explicit"].to_numpy(dtype=bool)
    dup_pair = ok & _first_seen(np.minimum(fi, ti), np.maximum(fi, ti), _utility_codes(seg)[0])
    dup_generated = repeated & ~dup_id
    if network_model:
        _report_segments(report, "W211", dup_pair & ~dup_generated, seg, first, f,
                         "parallel link between the same points", ("id", "from_id", "to_id"))
        dup_pair = dup_generated
    else:
        dup_pair |= dup_generated
    _report_segments(report, "E206", dup_id | dup_pair, seg, first, f, "duplicate segment (surveyed twice?)",
                     _SEGMENT_IDS)


def _report_segments(report: Report, code: str, mask: np.ndarray, seg: pd.DataFrame, first: pd.DataFrame,
                     f: str, message: str, id_columns: tuple[str, ...]) -> None:
    """Issues on the masked segments of the compact whole-batch view (end ids from the points)."""
    if not mask.any():
        return
    part = seg[mask]
    ids = first["id"]
    rows = pd.DataFrame({"id": part["id"].to_numpy(dtype=object), "_row": part["_row"].to_numpy()})
    for end, given in (("_fi", "_from_id"), ("_ti", "_to_id")):
        codes = part[end].to_numpy(dtype=np.int64)
        known = (ids.take(np.where(codes >= 0, codes, 0)).to_numpy(dtype=object) if len(ids)
                 else codes)
        rows[given[1:]] = np.where(codes >= 0, known, part[given].to_numpy(dtype=object))
    report.add_rows(code, np.ones(len(rows), bool), rows, f, message, id_columns)


def _reference_elevation(generic: np.ndarray, top: np.ndarray, invert_elev: np.ndarray,
                         invert_ref: np.ndarray, half_height_m: np.ndarray) -> np.ndarray:
    """Elevation at each segment's depth reference from whichever elevation column is given.

    A top elevation on a drainage pipe (or an invert elevation on a pressure pipe) is
    converted through the pipe's height, ignoring wall thickness as DOMAIN.md does.
    """
    out = generic.copy()
    from_top = ~np.isfinite(out) & np.isfinite(top)
    out[from_top] = np.where(invert_ref, top - 2 * half_height_m, top)[from_top]
    from_inv = ~np.isfinite(out) & np.isfinite(invert_elev)
    out[from_inv] = np.where(invert_ref, invert_elev, invert_elev + 2 * half_height_m)[from_inv]
    return out


def _check_degrees(first: pd.DataFrame, degree: np.ndarray, f: str, report: Report) -> None:
    """Points no segment uses (W203), and features whose connection count is off (W207)."""
    unused = degree == 0
    if unused.any():
        report.add_rows("W203", np.ones(int(unused.sum()), bool), first[unused], f, "no segment uses this point",
                        ("id",))
    feature = pd.Series(_text_at(first["feature"]), dtype=object)
    expected = feature.map(FEATURE_DEGREE).to_numpy(dtype=float)
    wrong = np.isfinite(expected) & ~unused & (degree != np.nan_to_num(expected))
    if wrong.any():
        report.add_rows("W207", np.ones(int(wrong.sum()), bool),
                        first[wrong].assign(_deg=degree[wrong], _exp=expected[wrong]), f,
                        lambda r: f"{r['feature']} should join {int(r['_exp'])} segments, joins {r['_deg']}",
                        ("id",))


def _first_seen(lo: np.ndarray, hi: np.ndarray, code: np.ndarray) -> np.ndarray:
    """Mask of the rows whose (lo, hi, code) triple of non-negative integers came before: one
    int64 key per row when the three fit in it (no frame of three columns to hash)."""
    n, c = int(max(lo.max(initial=0), hi.max(initial=0))) + 1, int(code.max(initial=0)) + 1
    if n * n * c >= 2**62:
        return pd.DataFrame({"lo": lo, "hi": hi, "u": code}).duplicated(keep="first").to_numpy()
    key = (lo.astype(np.int64) * n + hi) * c + code
    order = np.argsort(key, kind="stable")  # a sort, not a hash table of the keys
    seen = np.zeros(len(key), dtype=bool)
    seen[order[1:][key[order][1:] == key[order][:-1]]] = True
    return seen


def _utility_codes(seg: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each segment's utility code (its subtype, else its utility; "" for neither) as an integer,
    and the codes' names: factorised per column, so no Python string is made per segment."""
    sub, sub_names = pd.factorize(seg["subtype"])
    util, util_names = pd.factorize(seg["utility"])
    names_ = np.array([*(str(v) for v in sub_names), *(str(v) for v in util_names), ""], dtype=object)
    unified, code_names = pd.factorize(names_)
    raw = np.where(sub >= 0, sub, np.where(util >= 0, len(sub_names) + util, len(names_) - 1))
    return unified[raw], np.asarray(code_names, dtype=object)


#: Lines whose neighbours are looked up at once in the crossings' tree (bounds the pair arrays).
_QUERY_SLICE = 1 << 17


def _crossing_pairs(lines: np.ndarray, fi: np.ndarray, ti: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (a < b) of ``lines`` (ends ``fi``, ``ti``) that cross without sharing a point,
    their neighbours asked of one tree a slice at a time."""
    tree = shapely.STRtree(lines)
    found_a, found_b = [np.zeros(0, np.intp)], [np.zeros(0, np.intp)]
    for start in range(0, len(lines), _QUERY_SLICE):
        a, b = tree.query(lines[start:start + _QUERY_SLICE])  # boxes that overlap; the exact
        a += start                                              # test only for pairs
        keep = a < b  # that share no point (most neighbours meet at their shared point)
        a, b = a[keep], b[keep]
        share = (fi[a] == fi[b]) | (fi[a] == ti[b]) | (ti[a] == fi[b]) | (ti[a] == ti[b])
        a, b = a[~share], b[~share]
        cross = shapely.intersects(lines[a], lines[b])
        found_a.append(a[cross])
        found_b.append(b[cross])
    return np.concatenate(found_a), np.concatenate(found_b)


#: Lines of one utility whose crossings are looked for at once (GEOS lines and their tree).
_STRIP_LINES = 1 << 18


def _strips(west: np.ndarray) -> list[tuple[float, float]]:
    """Strips [lo, hi) of easting, each starting about ``_STRIP_LINES`` lines' west ends after
    the last: the first open to the west, the last to the east."""
    edges = np.unique(np.sort(west)[::_STRIP_LINES][1:])
    bounds = np.concatenate([[-np.inf], edges, [np.inf]])
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True))


def _check_crossings(segments: pd.DataFrame, first: pd.DataFrame, f: str, report: Report) -> None:
    """Warn where pipes of one utility cross in plan without sharing a point (their plan ends
    are their points' in ``first``: a valid segment has both)."""
    valid = segments["_valid"].to_numpy(dtype=bool)
    if valid.sum() < 2:
        return
    idx = np.flatnonzero(valid)
    fi, ti = segments["_fi"].to_numpy()[idx], segments["_ti"].to_numpy()[idx]
    e, n = first["easting"].to_numpy(float), first["northing"].to_numpy(float)
    codes, code_names = _utility_codes(segments)
    code = codes[idx]
    found_a, found_b = [], []
    west, east = np.minimum(e[fi], e[ti]), np.maximum(e[fi], e[ti])
    # One tree per utility code (only same-utility crossings matter) and strip of easting: the
    # GEOS lines and tree held at once stay bounded whatever the size of the survey.
    for u in np.unique(code):
        members = np.flatnonzero(code == u)
        for lo, hi in _strips(west[members]):
            strip = members[(west[members] < hi) & (east[members] >= lo)]  # lines over [lo, hi)
            if len(strip) < 2:
                continue
            sf, st = fi[strip], ti[strip]
            lines = shapely.linestrings(np.stack([e[sf], n[sf], e[st], n[st]], axis=1).reshape(-1, 2, 2))
            a, b = _crossing_pairs(lines, sf, st)
            del lines
            # A pair spanning strips is kept by the strip where its boxes' overlap begins.
            start = np.maximum(west[strip[a]], west[strip[b]])
            mine = (start >= lo) & (start < hi)
            found_a.append(strip[a[mine]])
            found_b.append(strip[b[mine]])
    if not found_a:
        return
    a, b = np.concatenate(found_a), np.concatenate(found_b)
    order = np.lexsort((b, a))  # report in file order
    a, b = a[order], b[order]
    # The ids of the reported segments only (Python strings for a few, not for the million).
    ids_a, ids_b = (segments["id"].take(idx[j]).to_numpy(dtype=object) for j in (a, b))
    rows = segments["_row"].to_numpy()[idx[a]]
    for k, ja in enumerate(a):
        report.add("W208", f"{code_names[code[ja]]} segments {ids_a[k]} and {ids_b[k]} cross without a shared point",
                   file=f, row=int(rows[k]), ids=[ids_a[k], ids_b[k]])


# -- derived features -----------------------------------------------------------------------
def _truthy(values: pd.Series, default: bool) -> np.ndarray:
    def parse(d: pd.Series) -> pd.Series:
        text = d.str.lower()
        out = pd.Series(default, index=d.index, dtype=bool)
        out[text.isin(["1", "true", "yes", "y", "t", "是"])] = True
        out[text.isin(["0", "false", "no", "n", "f", "否"])] = False
        return out

    return map_distinct(values, parse).to_numpy(dtype=bool)


def _valves(tables: SurveyTables, first: pd.DataFrame, segments: pd.DataFrame, report: Report) -> pd.DataFrame:
    """Valves on (segment, node): from valve points of the survey, or an explicit list."""
    # The valve's kind travels as attrs_kind (the appurtenance it came from) until the load.
    cols = [*(c for c in names("valve", versioning=False) if c != "kind"), "x", "y", "z", "attrs_kind"]
    def both(a: str, b: str, dtype: type = object) -> pd.Series:  # objects: no str inferred
        return pd.Series(np.concatenate([segments[a].to_numpy(), segments[b].to_numpy()]), dtype=dtype)

    ends = pd.DataFrame({"segment_id": both("id", "id"), "node_id": both("from_node", "to_node"),
                         "z": both("from_z", "to_z", float), "utility": both("utility", "utility")})
    frames = []
    if tables.valves is not None and len(tables.valves):
        v = tables.valves.copy()
        v = v.merge(ends, on=["segment_id", "node_id"], how="left")
        if "id" not in v.columns or v["id"].isna().any():
            v["id"] = v.get("id", pd.Series(index=v.index, dtype=object)).fillna(
                pd.Series([f"V{i + 1}" for i in range(len(v))], index=v.index))
        v["operable"] = _truthy(v["operable"], True) if "operable" in v.columns else True
        v["normally_closed"] = (_truthy(v["normally_closed"], False) if "normally_closed" in v.columns
                                else False)
        v["attrs_kind"] = "listed"
        frames.append(v)
    valve_points = first[first["appurtenance"].isin(list(VALVE_APPURTENANCES))]
    if len(valve_points):
        at = ends[ends["node_id"].isin(valve_points.index)].sort_values(["node_id", "segment_id"])
        degree = at.groupby("node_id")["segment_id"].transform("size").to_numpy()
        rank = at.groupby("node_id").cumcount().to_numpy()
        # A valve point between two pipes is one valve (closing it separates them): put it on
        # the first pipe. A chamber at a junction holds one valve per pipe.
        take = (degree <= 2) & (rank == 0) | (degree > 2)
        at = at[take].copy()
        single = degree[take] <= 2
        at["id"] = np.where(single, at["node_id"], at["node_id"] + "/" + at["segment_id"])
        remarks = first["remarks"].reindex(at["node_id"]).reset_index(drop=True)
        at = at.reset_index(drop=True)
        at["operable"] = ~_contains_any(remarks, INOPERABLE_WORDS)
        at["normally_closed"] = _contains_any(remarks, NORMALLY_CLOSED_WORDS)
        at["attrs_kind"] = first["appurtenance"].reindex(at["node_id"]).to_numpy()
        frames.append(at)
    if not frames:
        return pd.DataFrame(columns=cols)
    v = pd.concat(frames, ignore_index=True)
    v["x"] = first["easting"].reindex(v["node_id"]).to_numpy()
    v["y"] = first["northing"].reindex(v["node_id"]).to_numpy()
    v["z"] = v["z"].fillna(pd.Series(first["ground_z"].reindex(v["node_id"]).to_numpy(), index=v.index))
    return v[cols]


def _sources(tables: SurveyTables, first: pd.DataFrame) -> pd.DataFrame:
    cols = ["id", "node_id", "utility", "kind", "name", "x", "y", "z"]
    src = first[first["appurtenance"].isin(list(SOURCE_APPURTENANCES))]
    out = pd.DataFrame({"id": "SRC-" + src.index.to_series().astype(str), "node_id": src.index,
                        "utility": src["utility"].to_numpy(), "kind": src["appurtenance"].to_numpy(),
                        "name": src["remarks"].to_numpy()})
    if tables.sources is not None and len(tables.sources):
        extra = tables.sources.copy()
        if "id" not in extra.columns:
            extra["id"] = "SRC-" + extra["node_id"].astype(str)
        extra["utility"] = first["utility"].reindex(extra["node_id"]).to_numpy()
        extra["name"] = extra.get("name")
        out = pd.concat([out, extra[["id", "node_id", "utility", "kind", "name"]]], ignore_index=True)
    out = out.drop_duplicates("id")
    out["x"] = first["easting"].reindex(out["node_id"]).to_numpy()
    out["y"] = first["northing"].reindex(out["node_id"]).to_numpy()
    out["z"] = first["ground_z"].reindex(out["node_id"]).to_numpy()
    return out[cols]


def _customers(tables: SurveyTables, first: pd.DataFrame) -> pd.DataFrame:
    cols = [*names("customer", versioning=False), "x", "y", "z"]
    entry = first[first["feature"] == "service_entry"]
    remarks = entry["remarks"]
    critical = _contains_any(remarks.reset_index(drop=True), CRITICAL_WORDS)
    out = pd.DataFrame({"id": entry.index.to_numpy(), "node_id": entry.index.to_numpy(),
                        "utility": entry["utility"].to_numpy(), "name": remarks.to_numpy(),
                        "kind": np.where(critical, "critical", "service"), "critical": critical,
                        "demand": np.nan})
    if tables.customers is not None and len(tables.customers):
        extra = tables.customers.copy()
        if "id" not in extra.columns:
            extra["id"] = "C-" + extra["node_id"].astype(str)
        extra["utility"] = first["utility"].reindex(extra["node_id"]).to_numpy()
        extra["critical"] = _truthy(extra["critical"], False) if "critical" in extra.columns else False
        for c in ("name", "kind", "demand"):
            if c not in extra.columns:
                extra[c] = None
        out = pd.concat([out, extra[cols[:7]]], ignore_index=True)
    out = out.drop_duplicates("id")
    out["x"] = first["easting"].reindex(out["node_id"]).to_numpy()
    out["y"] = first["northing"].reindex(out["node_id"]).to_numpy()
    out["z"] = first["ground_z"].reindex(out["node_id"]).to_numpy()
    return out[cols]
