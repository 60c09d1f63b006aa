"""GIS and CAD vector data into the twin: ``twin ingest gis`` (GDAL through pyogrio).

Any vector dataset GDAL reads: a GeoPackage; a Shapefile, a folder or a ``.zip`` of them (the
``.cpg`` encoding honoured, GBK included; without one GBK or UTF-8 is recognised); a FileGDB
(OpenFileGDB); GeoJSON; DXF; CSV with a ``WKT`` column. The dataset becomes survey tables and
then runs through the survey pipeline (:mod:`ingest.pipeline`): the same checks and codes, the
same all-or-nothing batch and report.

- **Fields** are read as text and named as in the survey tables (:mod:`ingest.tables`: the
  same Chinese and English names, numbers stored as text or as numbers); ``columns`` maps other
  field names (``{"GJ": "管径"}``).
- **Plan position** from the geometry in GIS axis order (x = easting), transformed from the
  layer's CRS (``crs`` overrides it; the twin's when neither says) to the twin's; it becomes the
  survey tables' X (northing) / Y (easting). Heights are not transformed.
- **Point layers** (管点): one point per feature; a point's Z is its ground elevation when there
  is no 地面高程 field.
- **Line layers** (管线): one segment per feature, interior vertices kept. A 3D line's Z is the
  pipe's centreline elevation (what the twin stores and exports) and gives the height at each end
  where no elevation field does. A line whose Z are all 0 counts as 2D (CAD lines). 2D lines need
  depth fields (起点埋深/终点埋深, 埋深 on the points, or elevations 起点高程/终点高程): without
  any, the batch is refused with F001.
- **Ends**: the 起点号/终点号 fields; without them each line end takes the point within ``snap_m``
  of it (KD-tree).
- **A line layer alone** builds its nodes by snapping the line ends of one utility within
  ``snap_m``; the report's ``counts.gis`` says how many ends moved and the largest move. Node ids
  are ``<utility>@<easting>,<northing>``; a node's ground is the pipe's top (drainage: invert)
  plus the depth field, else plus ``cover_m`` (counted as ``assumed_cover``). 2D lines alone need
  elevation fields.
- **Utility**: the field, else the layer's name (``JS``, ``给水``, ``给水管线``, ``JS_line``);
  in DXF the CAD layer. Several point or line layers (one per utility) are read together.
- **DXF**: its lines and polylines (not block symbols), nodes by snapping; a TEXT label within
  5 m of a line's middle on the same CAD layer gives its size, material and depths
  (``DN300 球墨铸铁 H1.40``, as ``twin export`` labels them). R2007+ drawings are UTF-8.
- **The twin's exports** re-import as they are: catalogue names (``from_node``, ``size_text``,
  ``depth_m``, ...; a ``subtype`` over its ``utility``) and Shapefile names cut to 10 bytes.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import re
import threading
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyogrio
import shapely
import sqlalchemy as sa
from pyogrio.errors import DataLayerError, DataSourceError, FieldError, GeometryError
from pyproj import CRS
from pyproj.exceptions import CRSError
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from ingest.epanet import _transform
from ingest.pipeline import Progress, ingest_tables, rejected_report
from ingest.prepare import _reference_elevation
from ingest.report import Report
from ingest.tables import (
    NUMBER_COLUMNS,
    POINT_COLUMNS,
    SEGMENT_COLUMNS,
    FileInfo,
    SurveyTables,
    canonical_frame,
    canonical_name,
    column_mapping,
    load_column_mapping,
    survey_column,
    survey_field,
)
from twin.domain import depth_reference, parse_sizes, parse_utility
from twin.errors import InputError
from twin.schema import columns as catalogue
from twin.settings import TwinSettings

__all__ = ["SNAP_M", "GisLayers", "ingest_gis", "read_gis", "inspect_gis", "parse_columns"]

#: Default tolerance (m) within which line ends meet a point or each other.
SNAP_M: Final = 0.05
#: A DXF label names the nearest line within this distance (m) of its middle.
DXF_LABEL_M: Final = 5.0
_POINT_TYPES: Final = frozenset({"Point", "MultiPoint"})
_LINE_TYPES: Final = frozenset({"LineString", "MultiLineString"})
_SEGMENT_HEIGHTS: Final = ("from_depth", "to_depth", "from_elev", "to_elev", "from_top_elev",
                           "to_top_elev", "from_invert_elev", "to_invert_elev")
_SEGMENT_ELEVATIONS: Final = _SEGMENT_HEIGHTS[2:]
_LAYER_WORDS: Final = re.compile(r"(管线|管段|管点|线|点|lines?|points?|pipes?|nodes?|segments?)$", re.I)
_CSV_OPTIONS: Final = {"GEOM_POSSIBLE_NAMES": "WKT,geom,geometry,the_geom", "KEEP_GEOM_COLUMNS": "NO"}
_DXF_LOCK = threading.Lock()
_READ_ERRORS = (DataSourceError, DataLayerError, FieldError, GeometryError, OSError, ValueError,
                RuntimeError, pa.ArrowException)


@dataclass(frozen=True)
class GisLayers:
    """What :func:`inspect_gis` found: GDAL's name of the dataset and the layers chosen."""

    path: str
    name: str
    points: tuple[str, ...]
    segments: tuple[str, ...]
    features: int
    dxf: bool


@dataclass
class _Layer:
    """One layer's features: fields as text, geometries (WKB), the CRS they are in."""

    name: str
    fields: pd.DataFrame
    wkb: pa.Array
    crs: str | None
    #: (type id, xyz, feature index) when every feature is a simple point or line (the fast path)
    simple: tuple[int, np.ndarray, np.ndarray] | None = None
    #: Shapefile field names cut to 10 bytes -> the survey columns they stand for
    short_names: dict[str, str] = field(default_factory=dict)
    _geometry: np.ndarray | None = None

    @property
    def geometry(self) -> np.ndarray:
        """Shapely geometries, decoded on first use (the fast path needs none)."""
        if self._geometry is None:
            try:
                self._geometry = shapely.from_wkb(self.wkb.to_numpy(zero_copy_only=False))
            except shapely.errors.GEOSException as exc:
                raise InputError(f"layer {self.name!r} holds unreadable geometry ({exc})",
                                 code="F003", zh=f"图层 {self.name!r} 含有无法读取的几何（{exc}）") from exc
        return self._geometry

    def kinds(self) -> np.ndarray:
        """Shapely's geometry type id of each feature (-1: none)."""
        if self.simple is not None:
            return np.full(len(self.fields), self.simple[0])
        return shapely.get_type_id(self.geometry)

    def coordinates(self, keep: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vertices (k, 3; z NaN in 2D) of the kept features and their index among them; a
        multipoint by its first point, a multiline's parts in order."""
        if self.simple is not None and keep.all():
            return self.simple[1], self.simple[2]
        geometry = self.geometry[keep]
        if (shapely.get_type_id(geometry) == 4).any():
            geometry = np.where(shapely.get_type_id(geometry) == 4, shapely.get_geometry(geometry, 0), geometry)
        return shapely.get_coordinates(geometry, include_z=True, return_index=True)


# ----------------------------------------------------------------------------- the dataset
def _gdal_path(source: Path) -> tuple[str, str]:
    """GDAL's name of a source (a .zip is read through /vsizip/) and its name in reports."""
    source = Path(source)
    if not source.exists():
        raise InputError(f"{source}: no such file or folder", code="F003", zh=f"{source}：文件或文件夹不存在")
    if source.is_file() and source.suffix.lower() == ".zip":
        return f"/vsizip/{source.resolve()}{_zip_dataset(source)}", source.name
    return str(source), source.name


def _zip_dataset(source: Path) -> str:
    """Where in a .zip the dataset lies: a FileGDB folder, the folder of its shapefiles, its
    one data file, or the root."""
    try:
        with zipfile.ZipFile(source) as z:
            names = [n for n in z.namelist() if not n.endswith("/") and "__MACOSX" not in n]
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{source.name}: not a readable .zip ({exc})", code="F003",
                         zh=f"{source.name}：不是可读的 .zip（{exc}）") from exc
    gdb = sorted({n[: n.lower().index(".gdb/") + 4] for n in names if ".gdb/" in n.lower()})
    if gdb:
        return "/" + gdb[0]
    shp = sorted({posixpath.dirname(n) for n in names if n.lower().endswith(".shp")})
    if shp:
        return "/" + shp[0] if shp[0] else ""
    if len(names) == 1:
        return "/" + names[0]
    return ""


def _first_line(exc: BaseException, path: str, name: str) -> str:
    """GDAL's message, its first line, naming the source as the user does (not where it lies)."""
    text = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
    return text.replace(path, name).replace(str(Path(path).parent), "")[:300]


def _names(text: str | Sequence[str] | None) -> tuple[str, ...]:
    if text is None:
        return ()
    items = text.split(",") if isinstance(text, str) else list(text)
    return tuple(n.strip() for n in items if n and n.strip() and n.strip().lower() != "none")


def inspect_gis(source: Path, *, points: str | Sequence[str] | None = None,
                segments: str | Sequence[str] | None = None, crs: str | None = None) -> GisLayers:
    """Open a dataset and choose its point and line layers; InputError (F003) if unreadable.

    Named layers (comma-separated) are taken as given; otherwise every point layer and every
    line layer (and, for CSV, DXF and other layers of mixed type, each layer's points and lines).
    ``points=""`` (or ``"none"``): no point layer, nodes by snapping the line ends. A ``crs``
    given is checked here too.
    """
    if crs is not None:
        try:
            CRS.from_user_input(crs)
        except CRSError as exc:
            raise InputError(f"--crs {crs!r} is not a coordinate reference system",
                             zh=f"--crs {crs!r} 不是坐标参考系") from exc
    path, name = _gdal_path(source)
    try:
        listed = pyogrio.list_layers(path)
    except _READ_ERRORS as exc:
        raise InputError(f"{name}: not a vector dataset GDAL can read ({_first_line(exc, path, name)})",
                         code="F003",
                         zh=f"{name}：不是 GDAL 可读的矢量数据（{_first_line(exc, path, name)}）") from exc
    layers = {str(n): str(t or "None") for n, t in listed}
    if not layers:
        raise InputError(f"{name}: the dataset has no layers", code="F002", zh=f"{name}：数据集中没有图层")
    chosen_p, chosen_s = _names(points), _names(segments)
    for layer in (*chosen_p, *chosen_s):
        if layer not in layers:
            raise InputError(f"{name}: no layer {layer!r}; layers: {', '.join(layers)}", code="F003",
                             zh=f"{name}：没有图层 {layer!r}；图层有：{'、'.join(layers)}")
    dxf = path.lower().endswith(".dxf")

    def base(t: str) -> str:
        return t.split(" ")[0]

    mixed = tuple(n for n, t in layers.items() if base(t) not in _POINT_TYPES | _LINE_TYPES
                  and base(t) in ("Unknown", "GeometryCollection"))
    if not chosen_s:
        chosen_s = tuple(n for n, t in layers.items() if base(t) in _LINE_TYPES) or mixed
    if points is None and not dxf:
        chosen_p = tuple(n for n, t in layers.items() if base(t) in _POINT_TYPES)
        if not chosen_p and mixed and segments is None:
            chosen_p = mixed
    if not chosen_s:
        raise InputError(f"{name}: no line layer (管线); layers: "
                         + ", ".join(f"{n} ({t})" for n, t in layers.items())
                         + "; name one with --segments", code="F003",
                         zh=f"{name}：没有线图层（管线）；图层有："
                            + "、".join(f"{n} ({t})" for n, t in layers.items())
                            + "；请用 --segments 指定")
    features = 0
    for layer in set(chosen_p) | set(chosen_s):
        try:
            features += int(pyogrio.read_info(path, layer=layer).get("features") or 0)
        except _READ_ERRORS as exc:
            raise InputError(f"{name}: layer {layer!r} is unreadable ({_first_line(exc, path, name)})",
                             code="F003",
                             zh=f"{name}：图层 {layer!r} 无法读取（{_first_line(exc, path, name)}）") from exc
    return GisLayers(path, name, chosen_p, chosen_s, features, dxf)


def _dxf_utf8(path: str) -> bool:
    """A DXF of AutoCAD 2007 or later: its text is UTF-8 whatever its $DWGCODEPAGE says."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    found = re.search(rb"\$ACADVER\s+1\s+(AC\d{4})", head)
    return bool(found and found.group(1) >= b"AC1021")


def _read_layer(gis: GisLayers, layer: str, mapping: Mapping[str, str]) -> _Layer:
    """A layer's survey fields as trimmed text (empty: None) and its geometries."""
    if gis.dxf and _dxf_utf8(gis.path):
        with _DXF_LOCK:  # GDAL's DXF driver takes its encoding from a (process-wide) option
            pyogrio.set_gdal_config_options({"DXF_ENCODING": "UTF-8"})
            try:
                return _read_fields(gis, layer, mapping)
            finally:
                pyogrio.set_gdal_config_options({"DXF_ENCODING": None})
    return _read_fields(gis, layer, mapping)


def _read_fields(gis: GisLayers, layer: str, mapping: Mapping[str, str]) -> _Layer:
    options = _CSV_OPTIONS if gis.path.lower().endswith(".csv") else {}
    try:
        info = pyogrio.read_info(gis.path, layer=layer, **options)
        encoding = _dbf_encoding(gis.path, layer, info)
        if encoding is not None:
            info = pyogrio.read_info(gis.path, layer=layer, encoding=encoding)
        every = [str(f) for f in info["fields"]]
        short = _short_names(every, mapping) if info.get("driver") == "ESRI Shapefile" else {}
        mapping = {**mapping, **short}
        wanted = [f for f in every if survey_field(f, mapping) or f.lower() == "subtype"
                  or (gis.dxf and f in ("Layer", "Text", "SubClasses"))]
        meta, table = pyogrio.read_arrow(gis.path, layer=layer, columns=wanted, encoding=encoding, **options)
    except _READ_ERRORS as exc:
        raise InputError(f"{gis.name}: layer {layer!r} is unreadable "
                         f"({_first_line(exc, gis.path, gis.name)})",
                         code="F003",
                         zh=f"{gis.name}：图层 {layer!r} 无法读取（{_first_line(exc, gis.path, gis.name)}）") from exc
    geom_name = meta.get("geometry_name") or "wkb_geometry"
    if geom_name not in table.column_names:
        raise InputError(f"{gis.name}: layer {layer!r} has no geometry", code="F003",
                         zh=f"{gis.name}：图层 {layer!r} 没有几何")
    wkb = table.column(geom_name).combine_chunks()
    empty = pa.scalar(None, pa.string())
    fields = {}
    for col_name in table.column_names:
        if col_name == geom_name:
            continue
        col = table.column(col_name)
        if ((pa.types.is_floating(col.type) or pa.types.is_integer(col.type))
                and survey_column(col_name, mapping) in NUMBER_COLUMNS):
            # A number field of a number column: a float (null: NaN), not text parsed again.
            fields[col_name] = pc.cast(col, pa.float64()).to_numpy()
            continue
        try:
            col = col if pa.types.is_string(col.type) else pc.cast(col, pa.string())
        except (pa.ArrowNotImplementedError, pa.ArrowInvalid):
            continue  # lists, blobs: nothing a survey column holds
        col = pc.utf8_trim_whitespace(col)
        fields[col_name] = pc.if_else(pc.equal(col, ""), empty, col).to_numpy(zero_copy_only=False)
    subtype = next((f for f in fields if f.lower() == "subtype"), None)
    utility = next((f for f in fields if canonical_name(f) == "utility" or mapping.get(f.lower()) == "utility"), None)
    if subtype is not None:  # 'PS' + 'YS' (as exported): the subtype, where there is one
        sub = fields.pop(subtype)
        fields[utility or "utility"] = sub if utility is None else np.where(pd.isna(sub), fields[utility], sub)
    frame = pd.DataFrame({k: pd.Series(v, dtype=object if v.dtype.kind != "f" else float, copy=False)
                          for k, v in fields.items()}, index=pd.RangeIndex(table.num_rows))
    frame.attrs["fields"] = every
    return _Layer(layer, frame, wkb, meta.get("crs"), simple=_simple_wkb(wkb), short_names=short)


def _short_names(fields: list[str], mapping: Mapping[str, str]) -> dict[str, str]:
    """Shapefile fields cut to 10 bytes (``appurtenan``, ``from_dep_m``): the one survey or
    catalogue name each word of which the cut word begins, mapped as ``columns`` would."""
    known = {**{c: c for c in (*POINT_COLUMNS, *SEGMENT_COLUMNS)},
             **_catalogue_names("node"), **_catalogue_names("segment")}
    out = {}
    for f in fields:
        if len(f.encode()) != 10 or survey_field(f, mapping):
            continue
        words = f.lower().split("_")
        hits = {target for name, target in known.items()
                if len(name.split("_")) == len(words)
                and all(w.startswith(c) for w, c in zip(name.split("_"), words, strict=True))}
        if len(hits) == 1:
            out.update(column_mapping({f: hits.pop()}))
    return out


#: WKB geometry type codes (ISO and the 0x80000000 Z flag) -> (shapely type id, dimensions).
_WKB_TYPES: Final = {1: (0, 2), 2: (1, 2), 1001: (0, 3), 1002: (1, 3), 0x80000001: (0, 3),
                     0x80000002: (1, 3)}


def _simple_wkb(wkb: pa.Array) -> tuple[int, np.ndarray, np.ndarray] | None:
    """The vertices of a column of little-endian WKB points or linestrings, all of one type,
    straight from the bytes (numpy, no geometry objects); None for anything else."""
    n = len(wkb)
    if n == 0 or wkb.null_count or not (pa.types.is_binary(wkb.type) or pa.types.is_large_binary(wkb.type)):
        return None
    width = np.int64 if pa.types.is_large_binary(wkb.type) else np.int32
    offsets = np.frombuffer(wkb.buffers()[1], dtype=width)[wkb.offset: wkb.offset + n + 1].astype(np.int64)
    data = np.frombuffer(wkb.buffers()[2], dtype=np.uint8)
    start, size = offsets[:-1], np.diff(offsets)
    if (size < 9).any() or (data[start] != 1).any():
        return None  # big-endian or truncated: shapely reads it
    code = data[start[:, None] + np.arange(1, 5)].copy().view("<u4").ravel()
    if (code != code[0]).any() or int(code[0]) not in _WKB_TYPES:
        return None
    kind, dim = _WKB_TYPES[int(code[0])]
    header = 5 if kind == 0 else 9
    points = (np.ones(n, dtype=np.int64) if kind == 0
              else data[start[:, None] + np.arange(5, 9)].copy().view("<u4").ravel().astype(np.int64))
    nbytes = points * dim * 8
    if (size != header + nbytes).any():
        return None
    if (size == size[0]).all() and (start == start[0] + size[0] * np.arange(n)).all():
        # One record size (points; two-vertex lines): a strided copy of the coordinate bytes.
        records = data[start[0]: start[0] + n * int(size[0])].reshape(n, int(size[0]))
        xyz = np.ascontiguousarray(records[:, header:]).view("<f8").reshape(-1, dim)
    else:
        before = np.concatenate([[0], np.cumsum(nbytes)[:-1]])
        at = np.repeat(start + header - before, nbytes) + np.arange(int(nbytes.sum()))
        xyz = data[at].view("<f8").reshape(-1, dim)
    if dim == 2:
        xyz = np.column_stack([xyz, np.full(len(xyz), np.nan)])
    return kind, xyz, np.repeat(np.arange(n), points)


def _dbf_encoding(path: str, layer: str, info: dict) -> str | None:
    """A shapefile without a .cpg (GDAL falls back on ISO-8859-1): UTF-8 or GB18030 when its
    names and first values read as one of them (Chinese offices' old shapefiles are GBK)."""
    if info.get("driver") != "ESRI Shapefile" or str(info.get("encoding")).upper() != "ISO-8859-1":
        return None
    _meta, sample = pyogrio.read_arrow(path, layer=layer, encoding="ISO-8859-1", max_features=500,
                                       read_geometry=False)
    texts = [*sample.column_names]
    for col in sample.columns:
        if pa.types.is_string(col.type):
            texts += [v for v in col.to_pylist()[:500] if v]
    raw = b"\n".join(t.encode("latin-1", errors="ignore") for t in texts if not t.isascii())
    for codec in ("utf-8", "gb18030"):
        try:
            raw.decode(codec)
        except UnicodeDecodeError:
            continue
        return codec.upper() if raw else None
    return None


@lru_cache(maxsize=4)
def _catalogue_names(kind: str) -> dict[str, str]:
    """The twin's catalogue names (what ``twin export`` writes) -> the survey columns their
    Chinese labels name (起点号 ``from_node`` -> ``from_id``). Centre heights (``from_z``) and
    the bare diameter are left out: the depths and ``size_text`` say what the survey says."""
    out = {}
    for c in catalogue(kind):
        survey = canonical_name(c.label_zh) or canonical_name(c.label_en)
        if survey not in (None, c.name) and c.unit != "mm" and not c.name.endswith("_z"):
            out[c.name] = survey
    return out


def _layer_utility(name: str) -> str | None:
    """The utility a layer's name stands for (JS, 给水, 给水管线, JS_line, 燃气-管点), or None."""
    stem = re.split(r"[_\-\s.]+", name.strip())[0] if name.strip() else ""
    for text in (name.strip(), stem, _LAYER_WORDS.sub("", name.strip()), _LAYER_WORDS.sub("", stem)):
        if text:
            parent, _sub, unknown = parse_utility(pd.Series([text], dtype=object))
            if not unknown[0]:
                return text
    return None


def _fill_utility(frame: pd.DataFrame, layer: str) -> None:
    """The layer's utility where a feature gives none."""
    code = _layer_utility(layer)
    if code is not None:
        frame["utility"] = frame["utility"].where(frame["utility"].notna(), code)


# ----------------------------------------------------------------------------- coordinates
def _plan(layer: _Layer, keep: np.ndarray, given_crs: str | None, twin_crs: str
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every vertex of the kept features in the twin CRS: (easting, northing, z, feature index)."""
    crs = layer.crs
    xyz, index = layer.coordinates(keep)
    east, north = _transform(xyz[:, 0], xyz[:, 1], given_crs or crs, twin_crs) if len(xyz) else (
        xyz[:, 0], xyz[:, 1])
    return np.asarray(east, dtype=float), np.asarray(north, dtype=float), xyz[:, 2], index


def _point_frame(layers: list[_Layer], mapping: Mapping[str, str], crs: str | None, twin_crs: str,
                 name: str, mixed: Sequence[str] = ()) -> pd.DataFrame:
    """The point table of the point layers: X northing, Y easting, Z as ground elevation.

    A feature without geometry stays (without a position: reported); in a layer of ``mixed``
    (also read for lines) only points count.
    """
    frames = []
    for layer in layers:
        kind = layer.kinds()
        # Points (a multipoint counts by its first point).
        keep = np.isin(kind, (0, 4) if layer.name in mixed else (0, 4, -1))
        if layer.name in mixed and not keep.any():
            continue  # a layer of lines only (CSV, say): no point table from it
        p = canonical_frame(layer.fields[keep].reset_index(drop=True), POINT_COLUMNS, ("point_id",),
                            mapping={**mapping, **layer.short_names}, name=f"{name}:{layer.name}", first_row=1, trimmed=True,
                            drop_empty=False)
        p["_row"] = np.flatnonzero(keep) + 1
        _fill_utility(p, layer.name)
        east, north, z, index = _plan(layer, keep, crs, twin_crs)
        e = np.full(len(p), np.nan)
        n = np.full(len(p), np.nan)
        zz = np.full(len(p), np.nan)
        e[index], n[index], zz[index] = east, north, z
        p["x"], p["y"] = n, e
        p["ground_z"] = p["ground_z"].where(p["ground_z"].notna() | np.isnan(zz), zz)
        frames.append(p)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


@dataclass
class _Lines:
    """The line layers' features as a segment table with their ends in the twin CRS."""

    table: pd.DataFrame
    start: np.ndarray  # (m, 3) easting, northing, z of the first vertex
    end: np.ndarray  # (m, 3) of the last
    has_z: np.ndarray  # bool: a 3D line (some Z not 0)
    cad_layer: np.ndarray | None = None  # DXF: the CAD layer of each line


def _line_frame(layers: list[_Layer], mapping: Mapping[str, str], crs: str | None, twin_crs: str,
                name: str, dxf: bool, mixed: Sequence[str] = ()) -> _Lines:
    """The segment table of the line layers, each line's ends and interior vertices."""
    tables, starts, ends, has_z, cad = [], [], [], [], []
    for layer in layers:
        kind = layer.kinds()
        # Lines and multilines (parts joined in order); no geometry: a line without a place.
        keep = np.isin(kind, (1, 5) if layer.name in mixed or dxf else (1, 5, -1))
        if dxf and "SubClasses" in layer.fields.columns:  # lines and polylines, not the symbols
            sub = layer.fields["SubClasses"].fillna("").astype(str)
            keep &= (sub.str.contains("Line|Polyline", regex=True)
                     & ~sub.str.contains("BlockReference", regex=False)).to_numpy()
        fields = layer.fields[keep].reset_index(drop=True)
        s = canonical_frame(fields if not dxf else fields.drop(columns=["Layer", "SubClasses"], errors="ignore"),
                            SEGMENT_COLUMNS, (), mapping={**mapping, **layer.short_names},
                            name=f"{name}:{layer.name}",
                            first_row=1, trimmed=True, drop_empty=False)
        s["_row"] = np.flatnonzero(keep) + 1
        if dxf:
            cad.append(fields["Layer"].to_numpy(dtype=object))
            s["utility"] = s["utility"].where(s["utility"].notna(), fields["Layer"].map(
                lambda v: _layer_utility(v) if isinstance(v, str) else None))
            _label_fields(s, np.flatnonzero(keep), layer)
        _fill_utility(s, layer.name)
        east, north, z, index = _plan(layer, keep, crs, twin_crs)
        start, end, zflag, vertices = _ends(east, north, z, index, len(s))
        s["vertices"] = vertices
        tables.append(s)
        starts.append(start)
        ends.append(end)
        has_z.append(zflag)
    table = pd.concat(tables, ignore_index=True)
    return _Lines(table, np.concatenate(starts), np.concatenate(ends), np.concatenate(has_z),
                  np.concatenate(cad) if dxf else None)


def _ends(east: np.ndarray, north: np.ndarray, z: np.ndarray, index: np.ndarray, m: int
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """First and last vertex of each line (NaN for no geometry), whether it is 3D, and its
    interior vertices (list of (easting, northing), None for a plain two-point line)."""
    counts = np.bincount(index, minlength=m)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]]) if m else np.zeros(0, dtype=int)
    last = first + counts - 1
    has = counts > 0
    start = np.full((m, 3), np.nan)
    end = np.full((m, 3), np.nan)
    xyz = np.column_stack([east, north, z])
    start[has], end[has] = xyz[first[has]], xyz[last[has]]
    zmax = np.zeros(m)
    if len(z):
        absz = np.where(np.isfinite(z), np.abs(z), 0.0)
        zmax[has] = np.maximum.reduceat(absz, first[has])
    has_z = has & (zmax > 0) & np.isfinite(start[:, 2]) & np.isfinite(end[:, 2])
    vertices = np.empty(m, dtype=object)
    inner = np.flatnonzero(counts > 2)
    if len(inner):
        sel = np.concatenate([np.arange(a + 1, b) for a, b in zip(first[inner], last[inner], strict=True)])
        parts = np.split(xyz[sel, :2], np.cumsum(counts[inner] - 2)[:-1])
        vertices[inner] = [list(map(tuple, p.tolist())) for p in parts]
    return start, end, has_z, vertices


def _label_fields(s: pd.DataFrame, rows: np.ndarray, layer: _Layer) -> None:
    """DXF: size, material and depths from the nearest TEXT label (same CAD layer) within
    DXF_LABEL_M of a line's middle: ``DN300 球墨铸铁 H1.40`` or ``... H1.40-1.60``."""
    text = layer.fields["Text"] if "Text" in layer.fields.columns else None
    if text is None or text.isna().all() or not len(rows):
        return
    is_label = (text.notna() & (shapely.get_type_id(layer.geometry) == 0)).to_numpy()
    words = text[is_label].str.split()
    size = pd.Series(None, index=words.index, dtype=object)
    for k in range(3):  # the first of the label's first three words that reads as a size
        word = words.str[k]
        ok = ~parse_sizes(word.fillna(""))["bad"].to_numpy() & word.notna().to_numpy()
        size = size.where(size.notna() | ~ok, word)
    depth = text[is_label].str.extract(r"(?:^|\s)H(\d+(?:\.\d+)?)(?:-(\d+(?:\.\d+)?))?(?:\s|$)")
    rest = text[is_label].str.replace(r"(?:^|\s)H\d+(?:\.\d+)?(?:-\d+(?:\.\d+)?)?(?=\s|$)", "", regex=True)
    material = pd.Series([" ".join(w for w in r.split() if w != z) or None for r, z in
                          zip(rest.fillna(""), size.fillna(""), strict=True)], index=words.index, dtype=object)
    middle = shapely.line_interpolate_point(layer.geometry[rows], 0.5, normalized=True)
    line_i, label_i = shapely.STRtree(layer.geometry[is_label]).query_nearest(middle, max_distance=DXF_LABEL_M)
    cad = layer.fields["Layer"].to_numpy(dtype=object)
    same = cad[rows[line_i]] == cad[np.flatnonzero(is_label)[label_i]]
    line_i, label_i = line_i[same], label_i[same]
    first = ~pd.Index(line_i).duplicated()
    line_i, label_i = line_i[first], label_i[first]
    for col, values in (("size", size), ("material", material), ("from_depth", depth[0]),
                        ("to_depth", depth[1].fillna(depth[0]))):
        s[col] = s[col].astype(object)  # a number field may have made it floats
        given = s.loc[line_i, col]
        s.loc[line_i, col] = given.where(given.notna(), values.to_numpy(dtype=object)[label_i])


# ----------------------------------------------------------------------------- heights and ends
def _numbers(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)


def _half_height_m(s: pd.DataFrame, utility: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Half the section's height (m) of each segment and whether its depth is to the invert."""
    sizes = parse_sizes(s["size"].fillna(""))
    d, h = sizes["diameter_mm"].to_numpy(dtype=float), sizes["height_mm"].to_numpy(dtype=float)
    parent, _sub, _bad = parse_utility(utility.fillna(""))
    invert = depth_reference(parent.fillna("").to_numpy().astype(str)) == "invert"
    return np.where(np.isfinite(h), h, d) / 2000.0, invert


def _heights_from_z(lines: _Lines, utility: pd.Series) -> None:
    """A 3D line's end Z (its centreline) as the elevation at the depth reference, where no
    elevation field gives one."""
    s = lines.table
    if not lines.has_z.any():
        return
    half, invert = _half_height_m(s, utility)
    to_reference = np.where(invert, -half, half)  # the invert lies below the centre, the top above
    for end, xyz in (("from", lines.start), ("to", lines.end)):
        given = np.zeros(len(s), dtype=bool)
        for col in (f"{end}_elev", f"{end}_top_elev", f"{end}_invert_elev"):
            given |= s[col].notna().to_numpy()
        use = lines.has_z & ~given & np.isfinite(to_reference)
        if use.any():
            column = s[f"{end}_elev"].to_numpy(dtype=object).copy()
            column[use] = np.round(xyz[use, 2] + to_reference[use], 6)
            s[f"{end}_elev"] = column


def _needs_heights(lines: _Lines, points: pd.DataFrame | None, name: str) -> None:
    """2D lines need depth (or elevation) fields: F001 when there are none at all."""
    if lines.has_z.all() and len(lines.has_z):
        return
    s = lines.table
    fields = _SEGMENT_HEIGHTS if points is not None else _SEGMENT_ELEVATIONS
    if any(s[c].notna().any() for c in fields):
        return
    if points is not None and points["depth"].notna().any():
        return
    if points is not None:
        raise InputError(f"{name}: 2D lines (no Z) need depth fields: 起点埋深/终点埋深 "
                         "(from_depth/to_depth) on the lines, 埋深 (depth) on the points, or "
                         "elevations 起点高程/终点高程 (from_elev/to_elev); or give 3D lines",
                         code="F001",
                         zh=f"{name}：没有 Z 值的二维线须有埋深字段：线上的起点埋深/终点埋深"
                            "（from_depth/to_depth）、点上的埋深（depth），或高程起点高程/终点高程"
                            "（from_elev/to_elev）；或提供三维线")
    raise InputError(f"{name}: 2D lines (no Z) without a point layer need elevation fields: "
                     "起点高程/终点高程 (from_elev/to_elev, or the 管顶/管底 variants), with "
                     "起点埋深/终点埋深 for the ground; or give 3D lines or a point layer (管点)",
                     code="F001",
                     zh=f"{name}：没有 Z 值的二维线在没有点图层时须有高程字段："
                        "起点高程/终点高程（from_elev/to_elev，或管顶/管底对应字段），并以起点埋深/终点埋深求地面；"
                        "或提供三维线或点图层（管点）")


def _match_ends(lines: _Lines, points: pd.DataFrame, snap_m: float) -> dict[str, float]:
    """Lines without 起点号/终点号: each end takes the point within ``snap_m`` (else an id
    naming the miss, which the checks report as E202)."""
    s = lines.table
    if s["from_id"].notna().any() or s["to_id"].notna().any():
        return {}
    xy = np.column_stack([points["y"].to_numpy(dtype=float), points["x"].to_numpy(dtype=float)])
    ok = np.isfinite(xy).all(axis=1)
    tree = cKDTree(xy[ok])
    ids = points["point_id"].to_numpy(dtype=object)[ok]
    worst = 0.0
    for col, at in (("from_id", lines.start), ("to_id", lines.end)):
        finite = np.isfinite(at[:, :2]).all(axis=1)
        dist = np.full(len(at), np.inf)
        idx = np.full(len(at), len(ids))
        if finite.any() and len(ids):
            dist[finite], idx[finite] = tree.query(at[finite, :2], distance_upper_bound=snap_m)
        hit = idx < len(ids)
        column = np.empty(len(at), dtype=object)
        column[hit] = ids[idx[hit]]
        miss = np.flatnonzero(~hit)
        column[miss] = [f"(no point within {snap_m:g} m of {e:.3f},{n:.3f})"
                        for e, n in at[miss, :2].tolist()]
        s[col] = column
        if hit.any():
            worst = max(worst, float(dist[hit].max()))
    return {"ends_matched": int(2 * len(s)), "snap_m": snap_m, "max_distance_m": round(worst, 4)}


def _snap_nodes(lines: _Lines, snap_m: float, cover_m: float) -> tuple[pd.DataFrame, dict]:
    """A line layer alone: nodes from its line ends of one utility within ``snap_m``."""
    s = lines.table
    m = len(s)
    ends = np.concatenate([lines.start, lines.end])
    code = s["utility"].fillna("").astype(str).str.upper().to_numpy()
    util = np.concatenate([code, code])
    finite = np.isfinite(ends[:, :2]).all(axis=1)
    k = len(ends)
    a, b = np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    where = np.flatnonzero(finite)
    if len(where):
        pairs = cKDTree(ends[where, :2]).query_pairs(snap_m, output_type="ndarray")
        a, b = where[pairs[:, 0]], where[pairs[:, 1]]
        same = util[a] == util[b]
        a, b = a[same], b[same]
    _n, label = connected_components(coo_matrix((np.ones(len(a)), (a, b)), shape=(k, k)), directed=False)
    first = pd.Series(np.arange(k)).groupby(label).min().to_numpy()  # a node sits on its first end
    node_at = ends[first[label], :2]
    moved = np.hypot(*(ends[:, :2] - node_at).T)
    moved = np.where(finite, moved, 0.0)
    ground, assumed = _end_grounds(s, lines, util[:m], cover_m)
    node_ground = pd.Series(ground).groupby(label).max().reindex(range(len(first))).to_numpy()
    east, north = ends[first, 0], ends[first, 1]
    node_id = _node_ids(util[first], east, north)
    s["from_id"], s["to_id"] = node_id[label[:m]], node_id[label[m:]]
    points = pd.DataFrame({c: np.full(len(first), None, dtype=object) for c in POINT_COLUMNS})
    points["point_id"], points["utility"] = node_id, s["utility"].to_numpy(dtype=object)[first % m]
    points["x"], points["y"] = north, east
    points["ground_z"] = np.where(np.isfinite(node_ground), np.round(node_ground, 6), np.nan)
    points["_row"] = first % m + 1
    snapped = moved > 1e-6
    counts = {"nodes_built": len(first), "ends_snapped": int(snapped.sum()), "snap_m": snap_m,
              "max_snap_m": round(float(moved.max()) if k else 0.0, 4), "assumed_cover": assumed,
              "cover_m": cover_m}
    return points, counts


def _end_grounds(s: pd.DataFrame, lines: _Lines, utility: np.ndarray, cover_m: float
                 ) -> tuple[np.ndarray, int]:
    """Ground at every line end (starts, then ends): the elevation at the depth reference plus
    the depth field, else plus ``cover_m``; and how many ends took the assumed cover."""
    half, invert = _half_height_m(s, pd.Series(utility, dtype=object))
    grounds, assumed = [], 0
    for end in ("from", "to"):
        reference = _reference_elevation(_numbers(s[f"{end}_elev"]), _numbers(s[f"{end}_top_elev"]),
                                         _numbers(s[f"{end}_invert_elev"]), invert, half)
        depth = _numbers(s[f"{end}_depth"])
        no_depth = ~np.isfinite(depth) & np.isfinite(reference)
        assumed += int(no_depth.sum())
        grounds.append(reference + np.where(np.isfinite(depth), depth, cover_m))
    return np.concatenate(grounds), assumed


def _node_ids(utility: np.ndarray, east: np.ndarray, north: np.ndarray) -> np.ndarray:
    """Stable node ids from the utility and the position: ``JS@410012.35,4035012.68``."""
    def text(v: np.ndarray) -> pa.Array:
        return pc.cast(pa.array(np.round(v, 2)), pa.string())

    code = pa.array(np.where(utility == "", "QT", utility).astype(object), type=pa.string())
    ids = pc.binary_join_element_wise(code, pc.binary_join_element_wise(text(east), text(north), ","),
                                      "@")
    return ids.to_numpy(zero_copy_only=False).astype(object)


# ----------------------------------------------------------------------------- the reader
def parse_columns(columns: str | Path | Mapping[str, str] | None) -> dict[str, str]:
    """``--columns``: ``SOURCE=survey,...`` inline (``GJ=管径,QDH=起点号``), a JSON object, or
    the path of a mapping file (JSON, or CSV header,column as ``twin ingest survey`` takes)."""
    if columns is None or columns == "":
        return {}
    if isinstance(columns, Mapping):
        return column_mapping(columns)
    text = str(columns).strip()
    if isinstance(columns, Path) or (Path(text).suffix.lower() in (".json", ".csv") and "=" not in text):
        return load_column_mapping(Path(text))
    if text.startswith("{"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"--columns is not valid JSON: {exc}", code="F001",
                             zh=f"--columns 不是有效的 JSON：{exc}") from exc
        if not isinstance(obj, dict):
            raise InputError("--columns must be a JSON object: field -> survey column", code="F001",
                             zh="--columns 须为 JSON 对象：字段 -> 成果表列")
        return column_mapping({str(k): str(v) for k, v in obj.items()})
    pairs = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        field, sep, target = item.partition("=")
        if not sep or not field.strip() or not target.strip():
            raise InputError(f"--columns: {item!r} is not FIELD=survey-column (e.g. GJ=管径)", code="F001",
                             zh=f"--columns：{item!r} 不是 字段=成果表列 的形式（例如 GJ=管径）")
        pairs[field.strip()] = target.strip()
    return column_mapping(pairs)


def read_gis(
    source: Path,
    *,
    points: str | Sequence[str] | None = None,
    segments: str | Sequence[str] | None = None,
    columns: Mapping[str, str] | None = None,
    crs: str | None = None,
    twin_crs: str = "EPSG:4548",
    snap_m: float = SNAP_M,
    cover_m: float = 1.2,
    layers: GisLayers | None = None,
) -> SurveyTables:
    """Read a GIS dataset into survey tables (see the module's documentation).

    ``columns`` is a mapping as :func:`parse_columns` returns it. InputError for an unreadable
    dataset or layer (F003) and for missing fields (F001).
    """
    if not np.isfinite(snap_m) or snap_m < 0:
        raise InputError(f"--snap {snap_m!r} must be a non-negative number of metres",
                         zh=f"--snap {snap_m!r} 须为非负的米数")
    gis = layers or inspect_gis(source, points=points, segments=segments, crs=crs)
    point_map = {**column_mapping(_catalogue_names("node")), **(columns or {})}
    line_map = {**column_mapping(_catalogue_names("segment")), **(columns or {})}
    point_layers = [_read_layer(gis, n, point_map) for n in gis.points]
    line_layers = [_read_layer(gis, n, line_map) for n in gis.segments]
    both = set(gis.points) & set(gis.segments)
    pt = _point_frame(point_layers, point_map, crs, twin_crs, gis.name, both) if point_layers else None
    if pt is not None and pt.empty:
        pt = None
    points_read = 0 if pt is None else len(pt)
    lines = _line_frame(line_layers, line_map, crs, twin_crs, gis.name, gis.dxf, both)
    if lines.table.empty:
        raise InputError(f"{gis.name}: the line layer has no lines", code="F002",
                         zh=f"{gis.name}：线图层中没有线")
    s = lines.table
    _needs_heights(lines, pt, gis.name)
    if "size" not in s.columns or s["size"].isna().all():
        raise InputError(f"{gis.name}: the lines have no size field (管径/断面, size); "
                         "name it with --columns FIELD=管径", code="F001",
                         zh=f"{gis.name}：线上没有管径字段（管径/断面，size）；请用 --columns 字段=管径 指定")
    if pt is not None:
        counts = _match_ends(lines, pt, snap_m)
        utility = s["utility"]
        if utility.isna().any():  # the start point's, as the checks take it
            utility = utility.where(utility.notna(), s["from_id"].map(
                pt.drop_duplicates("point_id").set_index("point_id")["utility"]))
        _heights_from_z(lines, utility)
    else:
        _heights_from_z(lines, s["utility"])
        pt, counts = _snap_nodes(lines, snap_m, cover_m)
    points_file = f"{gis.name}:{','.join(gis.points) or 'nodes'}"
    segments_file = f"{gis.name}:{','.join(gis.segments)}"
    files = [_file_info(Path(source), len(pt) + len(s))]
    return SurveyTables(points=pt.reset_index(drop=True), segments=s, points_file=points_file,
                        segments_file=segments_file, files=files, kind="gis",
                        counts={"gis": {"points_read": points_read,
                                        "lines_read": int(len(s)),
                                        **counts}})


def _file_info(source: Path, rows: int) -> FileInfo:
    """Name, size and digest of the dataset (a folder: of its files, by name)."""
    digest, size = hashlib.sha256(), 0
    files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else [source]
    for f in files:
        with f.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    return FileInfo(name=source.name, sha256=digest.hexdigest(), bytes=size, rows=rows)


def ingest_gis(
    settings: TwinSettings,
    source: Path,
    *,
    points: str | Sequence[str] | None = None,
    segments: str | Sequence[str] | None = None,
    columns: str | Path | Mapping[str, str] | None = None,
    crs: str | None = None,
    scope: str | None = None,
    snap_m: float = SNAP_M,
    dry_run: bool = False,
    progress: Progress | None = None,
    before_commit: Callable[[sa.Connection, Report], None] | None = None,
) -> Report:
    """Import a GIS dataset, all or nothing: read it, then :func:`ingest.pipeline.ingest_tables`.

    The scope defaults to ``gis:<name>``. A dataset that cannot be read gives a rejected
    report (F001-F003) naming it; bad options (``columns``, ``crs``) raise InputError.
    """
    t0 = time.perf_counter()
    (progress or (lambda _m: None))("reading")
    mapping = parse_columns(columns)
    source = Path(source)
    try:
        tables = read_gis(source, points=points, segments=segments, columns=mapping, crs=crs,
                          twin_crs=settings.crs, snap_m=snap_m, cover_m=settings.default_cover_m)
    except InputError as exc:
        if not exc.code.startswith("F"):
            raise
        report = rejected_report(exc)
        report.files = [{"name": source.name}]
        return report
    read_s = time.perf_counter() - t0
    report = ingest_tables(tables, settings, scope=scope or f"gis:{source.stem}", dry_run=dry_run,
                           progress=progress, before_commit=before_commit)
    report.seconds = {"read": read_s, **report.seconds}
    return report
