"""Reading survey tables: CSV or XLSX, Chinese or English headers, any common encoding.

The readers return :class:`SurveyTables` with *canonical* column names and raw
values (strings); typing and checking happen in :mod:`ingest.checks`. An uploaded table is
measured before it is parsed (:func:`check_table_size`): a small XLSX may unpack to gigabytes
of XML or millions of rows, and parsing it would hold the server for minutes.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import hashlib
import io
import json
import posixpath
import queue
import re
import threading
import zipfile
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zlib import error as zlib_error

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ingest.report import Issue
from twin.errors import InputError
from twin.schema import names
from twin.settings import TwinSettings

__all__ = [
    "POINT_COLUMNS",
    "SEGMENT_COLUMNS",
    "POINT_REQUIRED",
    "SEGMENT_REQUIRED",
    "FileInfo",
    "SurveyTables",
    "read_table",
    "read_survey",
    "canonical_frame",
    "canonical_name",
    "column_mapping",
    "survey_field",
    "survey_column",
    "NUMBER_COLUMNS",
    "load_column_mapping",
    "read_input",
    "TableLimits",
    "check_table_size",
    "TOO_LARGE",
    "TableStream",
    "open_table",
    "WholeReadNeeded",
]

#: Canonical point columns <- header names seen in survey tables (CJJ 61-2017 管线点成果表).
POINT_COLUMNS: dict[str, tuple[str, ...]] = {
    "point_id": ("物探点号", "点号", "管线点号", "点号编码", "pointid"),
    "map_id": ("图上点号", "mapid"),
    "utility": ("管线类型", "管线代码", "管线种类", "管类", "代码", "类型", "utilitycode"),
    "feature": ("特征", "特征点"),
    "appurtenance": ("附属物", "附属设施"),
    "x": ("x坐标", "纵坐标", "northing", "x"),
    "y": ("y坐标", "横坐标", "easting", "y"),
    "ground_z": ("地面高程", "地面标高", "groundz", "ground"),
    "depth": ("埋深",),
    "well_depth": ("井底深", "井深", "welldepth"),
    "eccentric_well_id": ("偏心井点号", "偏心井"),
    "sheet": ("图幅号", "图幅"),
    "survey_date": ("探测日期", "surveydate"),
    "remarks": ("备注", "remark", "note", "notes"),
    # CJJ 61 accuracy class: 明显点 (exposed) or 隐蔽点 (concealed)
    "survey_class": ("点类别", "点性质", "探测类别", "明显/隐蔽", "明隐", "surveyclass", "accuracyclass"),
}
POINT_REQUIRED = ("point_id", "utility", "x", "y", "ground_z")

#: Canonical segment columns <- header names seen in survey tables (管线段成果表).
SEGMENT_COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("管段编号", "管线段号", "管段号", "segmentid"),
    "from_id": ("起点号", "起点点号", "起始点号", "起点", "fromid", "from"),
    "to_id": ("终点号", "连接点号", "终点点号", "终点", "toid", "to"),
    "utility": ("管线类型", "管线代码", "管线种类", "管类", "代码", "类型"),
    "from_depth": ("起点埋深", "fromdepth"),
    "to_depth": ("终点埋深", "todepth"),
    # Elevation at the utility's depth reference (top, or invert for drainage) ...
    "from_elev": ("起点高程", "fromelev", "fromelevation"),
    "to_elev": ("终点高程", "toelev", "toelevation"),
    # ... or named explicitly as top (管顶) or inner bottom (管底, 管内底).
    "from_top_elev": ("起点管顶高程", "fromtopelev"),
    "to_top_elev": ("终点管顶高程", "totopelev"),
    "from_invert_elev": ("起点管底高程", "起点管内底高程", "起点内底高程", "frominvertelev"),
    "to_invert_elev": ("终点管底高程", "终点管内底高程", "终点内底高程", "toinvertelev"),
    "size": ("管径/断面", "管径", "断面", "管径或断面", "断面尺寸", "规格", "管径断面"),
    "material": ("材质", "管材"),
    "burial": ("埋设方式", "埋设类型"),
    "pressure": ("压力/电压", "压力", "电压", "压力电压", "voltage"),
    "cables": ("电缆条数", "电缆根数"),
    "holes_total": ("总孔数", "孔数"),
    "holes_used": ("已用孔数", "占用孔数"),
    "casing": ("套管尺寸", "套管"),
    "flow": ("流向",),
    "built": ("埋设日期", "建设年代", "埋设年代", "建设日期", "year", "builtyear"),
    "owner": ("权属单位", "权属"),
    "road": ("道路名称", "所在道路", "道路", "roadname"),
    "status": ("状态", "使用状态"),
    "remarks": ("备注", "remark", "note", "notes"),
}
SEGMENT_REQUIRED = ("from_id", "to_id", "size")
#: Survey columns that hold numbers: a reader whose fields are typed (GIS) passes them as floats.
NUMBER_COLUMNS: frozenset[str] = frozenset({
    "x", "y", "ground_z", "depth", "well_depth", "from_depth", "to_depth", "from_elev", "to_elev",
    "from_top_elev", "to_top_elev", "from_invert_elev", "to_invert_elev", "pressure", "cables",
    "holes_total", "holes_used"})


#: Survey text columns no check reads, only carried to the twin: the chunked reader keeps them
#: as Arrow text (no Python string per cell), as it does the numbers.
CARRIED_COLUMNS: frozenset[str] = frozenset(
    n for kind in ("node", "segment") for n in names(kind, type="string", surveyed=True)
    if n not in names(kind, reads="checks"))


@dataclass(frozen=True)
class FileInfo:
    """A file of a batch, as recorded on the batch."""

    name: str
    sha256: str
    bytes: int
    encoding: str | None = None
    rows: int = 0


@dataclass
class SurveyTables:
    """One batch of survey data in canonical columns.

    ``points`` and ``segments`` hold canonical columns plus ``_row`` (the 1-based
    row number in the file, header included). ``valves``, ``sources`` and
    ``customers`` are explicit lists some formats carry (EPANET, separate lists):

    - valves: ``segment_id``, ``node_id``, optional ``id``, ``operable``, ``normally_closed``
    - sources: ``node_id``, ``kind``, optional ``id``, ``name``
    - customers: ``node_id``, optional ``id``, ``name``, ``kind``, ``critical``, ``demand``
    """

    points: pd.DataFrame
    segments: pd.DataFrame
    points_file: str = "points"
    segments_file: str = "segments"
    files: list[FileInfo] = field(default_factory=list)
    valves: pd.DataFrame | None = None
    sources: pd.DataFrame | None = None
    customers: pd.DataFrame | None = None
    kind: str = "survey"
    #: What the reader itself found or assumed (e.g. EPANET placeholders), added to the report.
    issues: list[Issue] = field(default_factory=list)
    #: Figures of the reading (e.g. the GIS reader's snapping), added to the report's counts.
    counts: dict[str, Any] = field(default_factory=dict)


def _normalise_header(name: object) -> str:
    text = str(name).replace("\ufeff", "").strip().lower()
    text = re.sub(r"[(（].*?[)）]", "", text)  # units: 地面高程(m)
    return re.sub(r"[\s_\-]+", "", text)


def _known_column(name: str) -> bool:
    return name in POINT_COLUMNS or name in SEGMENT_COLUMNS


def load_column_mapping(path: Path | None) -> dict[str, str]:
    """Read a header mapping file (JSON object or two-column CSV: header,canonical)."""
    if path is None:
        return {}
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the column mapping: {exc}",
                         zh=f"{path}：无法读取列映射：{exc}") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            # A CSV saved by Excel on a Chinese system is GBK.
            text = data.decode("gb18030")
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: the column mapping is neither UTF-8 nor GBK text",
                             zh=f"{path}：列映射既不是 UTF-8 也不是 GBK 文本") from exc
    if path.suffix.lower() == ".json":
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: the column mapping is not valid JSON: {exc}",
                             zh=f"{path}：列映射不是有效的 JSON：{exc}") from exc
        if not isinstance(obj, dict):
            raise InputError(f"{path}: the column mapping must be a JSON object header -> column",
                             zh=f"{path}：列映射须为 JSON 对象 表头 -> 列")
        mapping = {_normalise_header(k): str(v).strip() for k, v in obj.items()}
    else:
        rows = [r for r in csv.reader(io.StringIO(text)) if len(r) >= 2]
        if rows and not _known_column(rows[0][1].strip()):
            rows = rows[1:]  # a header line such as "header,column"
        mapping = {_normalise_header(r[0]): r[1].strip() for r in rows}
    unknown = sorted({v for v in mapping.values() if not _known_column(v)})
    if unknown:
        known = sorted(set(POINT_COLUMNS) | set(SEGMENT_COLUMNS))
        raise InputError(f"{path}: the column mapping names unknown column(s) {', '.join(unknown)}; "
                         f"known columns: {', '.join(known)}",
                         zh=f"{path}：列映射中有未知列 {'、'.join(unknown)}；已知列：{', '.join(known)}")
    return mapping


def _map_headers(
    headers: list[str], columns: Mapping[str, tuple[str, ...]], extra: Mapping[str, str], source: str
) -> dict[str, str]:
    lookup = {_normalise_header(c): c for c in columns}
    for canon, aliases in columns.items():
        for a in aliases:
            lookup.setdefault(_normalise_header(a), canon)
    lookup.update({k: v for k, v in extra.items() if v in columns})
    mapped: dict[str, str] = {}
    for h in headers:
        canon = lookup.get(_normalise_header(h))
        if canon is None:
            continue
        if canon in mapped.values():
            # 压力/电压 and similar may appear twice; keep the first, ignore repeats.
            continue
        mapped[h] = canon
    return mapped


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _decode(data: bytes, encoding: str, path: Path) -> tuple[str, str]:
    if encoding != "auto":
        codec = {"gbk": "gb18030"}.get(encoding.lower(), encoding)
        try:
            return data.decode(codec), encoding
        except (UnicodeDecodeError, LookupError) as exc:
            raise InputError(f"{path.name}: not valid {encoding}: {exc}", code="F003",
                             zh=f"{path.name}：不是有效的 {encoding}：{exc}") from exc
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="strict"), "utf-8-sig"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        # GB18030 is a superset of GBK and GB2312: the Chinese encodings seen in practice.
        return data.decode("gb18030"), "gb18030"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data[:200_000]).best()
    if best is None:
        raise InputError(f"{path.name}: not a text table (binary data, or an unknown text encoding: "
                         "give --encoding)", code="F003",
                         zh=f"{path.name}：不是文本表（二进制数据，或未知文本编码：请用 --encoding 指定）")
    try:
        return data.decode(best.encoding), best.encoding
    except UnicodeDecodeError as exc:
        raise InputError(f"{path.name}: undecodable as {best.encoding}: {exc}", code="F003",
                         zh=f"{path.name}：无法按 {best.encoding} 解码：{exc}") from exc


def read_input(path: Path, what: str = "file") -> bytes:
    """The bytes of an input file; a missing, unreadable or empty file is an InputError."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}", code="F003",
                         zh=f"{path}：无法读取：{exc.strerror or exc}") from exc
    if not data.strip():
        raise InputError(f"{path.name}: the {what} is empty", code="F002",
                         zh=f"{path.name}：{'文件' if what == 'file' else what}为空")
    return data


def _read_csv(path: Path, data: bytes, encoding: str) -> tuple[pd.DataFrame, str, int, bool]:
    """Returns the frame, the encoding used, the line number of the first data row and
    whether cells are already trimmed (empty ones None)."""
    text, used = _decode(data, encoding, path)
    if not text.strip():
        raise InputError(f"{path.name}: the file is empty", code="F002", zh=f"{path.name}：文件为空")
    if "\x00" in text:
        raise InputError(f"{path.name}: holds binary data (NUL bytes), not a text table", code="F003",
                         zh=f"{path.name}：含二进制数据（NUL 字节），不是文本表")
    blank = re.match(r"(?:[ \t]*\r?\n)*", text)
    lead = text[: blank.end()].count("\n") if blank else 0
    text = text[blank.end():] if blank else text
    sample = text[:10_000]
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=",\t;").delimiter
    except csv.Error:
        delimiter = ","
    frame = _read_csv_arrow(text, delimiter)
    if frame is not None:
        return frame, used, lead + 2, True
    try:
        # Keep blank lines (as empty rows) so that ``_row`` counts the file's lines;
        # read_table drops empty rows after numbering.
        frame = pd.read_csv(
            io.StringIO(text), sep=delimiter, dtype=str, keep_default_na=False, na_values=[""],
            skipinitialspace=True, skip_blank_lines=False, engine="c",
        )
    except (pd.errors.ParserError, ValueError) as exc:
        raise InputError(f"{path.name}: not a readable CSV table: {exc}", code="F003",
                         zh=f"{path.name}：不是可读的 CSV 表：{exc}") from exc
    return frame, used, lead + 2, False


def _promote_header(raw: pd.DataFrame, columns: Mapping[str, tuple[str, ...]], extra: Mapping[str, str]
                    ) -> tuple[pd.DataFrame, int]:
    """Find the header row of a workbook sheet: 成果表 often carry a title row or two above it.

    The header is the row among the first ten that names the most known columns. Returns the
    frame under that header and the sheet row number of its first data row.
    """
    best, best_hits = 0, -1
    for i in range(min(10, len(raw))):
        cells = [str(v) for v in raw.iloc[i].tolist() if pd.notna(v) and str(v).strip()]
        hits = len(_map_headers(cells, columns, extra, ""))
        if hits > best_hits:
            best, best_hits = i, hits
    if len(raw) == 0:
        return raw, 2
    header = [str(v) if pd.notna(v) and str(v).strip() else f"column{j + 1}"
              for j, v in enumerate(raw.iloc[best].tolist())]
    frame = raw.iloc[best + 1:].reset_index(drop=True)
    frame.columns = header
    return frame, best + 2


def _read_csv_arrow(text: str, delimiter: str) -> pd.DataFrame | None:
    """Fast path: Arrow's multithreaded CSV reader, every column as trimmed text.

    Returns None when the file needs the careful reader (blank lines, ragged rows, line
    breaks inside quoted cells), whose row numbering counts every line.
    """
    first_line = text.split("\n", 1)[0].removesuffix("\r")
    try:
        header = next(csv.reader([first_line], delimiter=delimiter), [])
    except csv.Error:  # a lone carriage return inside the header line: the careful reader
        return None
    if not header or len(set(header)) != len(header) or re.search(r"\n[ \t\r]*\n", text):
        return None
    try:
        table = pacsv.read_csv(
            io.BytesIO(text.encode("utf-8")),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(
                column_types={h: pa.string() for h in header}, strings_can_be_null=True,
                null_values=[""], quoted_strings_can_be_null=True),
        )
    except (pa.ArrowInvalid, pa.ArrowKeyError):
        return None
    if table.column_names != header:
        return None
    return _object_frame(header, table.columns)


def _trimmed(col: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Arrow text trimmed, empty cells null."""
    col = pc.utf8_trim_whitespace(col)
    return pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)


def _object_frame(header: list[str], columns: list[pa.ChunkedArray | pa.Array],
                  arrow: frozenset[str] = frozenset(), *, trimmed: bool = False) -> pd.DataFrame:
    """Arrow text columns trimmed (unless ``trimmed`` already), empty cells None, as the Python
    objects the checks read; the ``arrow`` columns stay Arrow text (numbers parsed by Arrow,
    texts carried to the COPY)."""
    out = {}
    for h, col in zip(header, columns, strict=True):
        col = col if trimmed else _trimmed(col)
        out[h] = (pd.Series(pd.arrays.ArrowExtensionArray(col)) if h in arrow
                  else pd.Series(col.to_numpy(zero_copy_only=False), dtype=object))
    return pd.DataFrame(out)


def _read_xlsx(path: Path) -> pd.DataFrame:
    """The first sheet, every cell as text, no header (see :func:`_promote_header`)."""
    try:
        frame = pd.read_excel(path, dtype=str, engine="openpyxl", keep_default_na=False, na_values=[""],
                              header=None)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, EOFError) as exc:
        raise InputError(f"{path.name}: not a readable XLSX workbook ({exc.__class__.__name__}: {exc})",
                         code="F003",
                         zh=f"{path.name}：不是可读的 XLSX 工作簿（{exc.__class__.__name__}：{exc}）") from exc
    except Exception as exc:  # openpyxl raises many kinds on damaged files
        raise InputError(f"{path.name}: damaged XLSX workbook ({exc.__class__.__name__}: {exc})",
                         code="F003",
                         zh=f"{path.name}：XLSX 工作簿已损坏（{exc.__class__.__name__}：{exc}）") from exc
    return frame


def read_table(
    path: Path,
    columns: Mapping[str, tuple[str, ...]],
    required: tuple[str, ...],
    *,
    encoding: str = "auto",
    mapping: Mapping[str, str] | None = None,
) -> tuple[pd.DataFrame, FileInfo]:
    """Read one survey table into canonical columns (strings) plus ``_row``."""
    path = Path(path)
    data = read_input(path)
    used: str | None = None
    first_row = 2
    trimmed = False  # the Arrow reader trims cells and nulls empty ones itself
    if data[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1":  # OLE2: .xls, or an encrypted workbook
        raise InputError(f"{path.name}: looks like an old .xls (or password-protected) workbook; "
                         "save it as .xlsx or CSV", code="F003",
                         zh=f"{path.name}：看起来是旧版 .xls（或有密码保护的）工作簿；请另存为 .xlsx 或 CSV")
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        frame, first_row = _promote_header(_read_xlsx(path), columns, mapping or {})
    elif data[:4] == b"PK\x03\x04":
        raise InputError(f"{path.name}: looks like a workbook; name it .xlsx", code="F003",
                         zh=f"{path.name}：看起来是工作簿；请命名为 .xlsx")
    else:
        frame, used, first_row, trimmed = _read_csv(path, data, encoding)
    if len(frame.columns) == 0:
        raise InputError(f"{path.name}: the table is empty (no header row)", code="F002",
                         zh=f"{path.name}：表为空（没有表头行）")
    if frame.empty:
        raise InputError(f"{path.name}: the table has a header but no rows", code="F002",
                         zh=f"{path.name}：表有表头但没有数据行")
    frame = canonical_frame(frame, columns, required, mapping=mapping, name=path.name,
                            first_row=first_row, trimmed=trimmed)
    if frame.empty:
        raise InputError(f"{path.name}: the table has a header but no rows", code="F002",
                         zh=f"{path.name}：表有表头但没有数据行")
    info = FileInfo(name=path.name, sha256=_sha256(data), bytes=len(data), encoding=used, rows=len(frame))
    return frame, info


def canonical_frame(
    frame: pd.DataFrame,
    columns: Mapping[str, tuple[str, ...]],
    required: tuple[str, ...],
    *,
    mapping: Mapping[str, str] | None,
    name: str,
    first_row: int = 2,
    trimmed: bool = False,
    drop_empty: bool = True,
) -> pd.DataFrame:
    """A table's columns renamed to the canonical ``columns`` (Chinese or English names, or
    ``mapping``), text trimmed (empty cells None), numbered in ``_row`` from ``first_row``.

    A missing ``required`` column is an InputError F001 naming the columns found (or
    ``frame.attrs["fields"]``, all a reader saw). ``drop_empty`` drops rows with no value.
    """
    headers = [str(h) for h in frame.columns]
    mapped = _map_headers(headers, columns, mapping or {}, name)
    missing = [c for c in required if c not in mapped.values()]
    if missing:
        raise InputError(
            f"{name}: missing column(s) {', '.join(missing)}; found "
            f"{', '.join(frame.attrs.get('fields', headers))}; "
            "give a --columns mapping for other names",
            code="F001",
            zh=f"{name}：缺少列 {'、'.join(missing)}；实际列为 "
               f"{', '.join(frame.attrs.get('fields', headers))}；"
               "其他列名请用 --columns 映射",
        )
    frame = frame[list(mapped)].rename(columns=mapped)
    for c in columns:
        if c not in frame.columns:
            frame[c] = None
    frame = frame[list(columns)]
    # Text as Python objects (what the checks read); numbers a typed reader gave stay floats,
    # Arrow text of the chunked reader stays Arrow.
    frame = frame.astype({c: object for c, dtype in frame.dtypes.items()
                          if dtype.kind != "f" and not isinstance(dtype, pd.ArrowDtype)})
    if not trimmed:
        frame = frame.where(frame.notna(), None)
        for c in frame.columns:
            frame[c] = _strip(frame[c])
    frame["_row"] = range(first_row, len(frame) + first_row)
    if drop_empty:
        # Rows with no value at all (blank lines, ",,,," or empty spreadsheet rows) carry no data.
        frame = frame[frame[list(columns)].notna().any(axis=1)].reset_index(drop=True)
    return frame


def survey_field(name: str, mapping: Mapping[str, str] | None = None) -> bool:
    """Whether a source field names a survey column (an alias, or a key of ``mapping``)."""
    return _normalise_header(name) in (mapping or {}) or canonical_name(name) is not None


def survey_column(name: str, mapping: Mapping[str, str] | None = None) -> str | None:
    """The survey column a source field stands for: ``mapping``'s (normalised keys, as
    :func:`column_mapping` makes them) first, else its Chinese or English name's."""
    return (mapping or {}).get(_normalise_header(name)) or canonical_name(name)


def canonical_name(name: str) -> str | None:
    """The canonical column a survey header name (Chinese, English or canonical) stands for."""
    for columns in (POINT_COLUMNS, SEGMENT_COLUMNS):
        found = _map_headers([name], columns, {}, "")
        if found:
            return found[name]
    return None


def column_mapping(pairs: Mapping[str, str], what: str = "--columns") -> dict[str, str]:
    """A mapping source name -> survey column (canonical, Chinese or English name), as
    :func:`read_table` takes it; an unknown survey name is an InputError."""
    mapping: dict[str, str] = {}
    for source, target in pairs.items():
        canon = canonical_name(str(target).strip())
        if canon is None:
            known = sorted(set(POINT_COLUMNS) | set(SEGMENT_COLUMNS))
            raise InputError(f"{what}: {target!r} is not a survey column; known columns: {', '.join(known)} "
                             "(or their Chinese names)", code="F001",
                             zh=f"{what}：{target!r} 不是成果表列；已知列：{', '.join(known)}（或其中文名）")
        mapping[_normalise_header(source)] = canon
    return mapping


def _strip(values: pd.Series) -> pd.Series:
    s = values.astype(object)
    mask = s.notna()
    if mask.any():
        stripped = s[mask].astype(str).str.strip()
        s = s.copy()
        s[mask] = stripped.where(stripped != "", None)
    return s


def read_survey(
    points: Path,
    segments: Path,
    *,
    encoding: str = "auto",
    mapping: Mapping[str, str] | None = None,
) -> SurveyTables:
    """Read the CJJ 61 two-table format (point table + segment table)."""
    p, pinfo = read_table(points, POINT_COLUMNS, POINT_REQUIRED, encoding=encoding, mapping=mapping)
    s, sinfo = read_table(segments, SEGMENT_COLUMNS, SEGMENT_REQUIRED, encoding=encoding, mapping=mapping)
    return SurveyTables(points=p, segments=s, points_file=pinfo.name, segments_file=sinfo.name,
                        files=[pinfo, sinfo])


# ----------------------------------------------------------------------------- tables in chunks
#: Rows of a table handled at once by a streamed import: memory stays flat whatever the size.
CHUNK_ROWS = 131_072
_SCAN_BLOCK = 1 << 22
_BLANK_LINE = re.compile(rb"\n[ \t\r]*\n")


class WholeReadNeeded(Exception):
    """A table the chunked reader cannot number line by line (ragged rows, line breaks in
    quoted cells): it is read whole instead (:func:`open_table` with ``whole=True``)."""


@dataclass
class TableStream:
    """One survey table as chunks of canonical rows (:func:`canonical_frame`'s columns and
    ``_row``), in file order; ``info`` has the file's digest, and its rows once all are read."""

    name: str
    info: FileInfo
    chunks: Any  # Iterator[pd.DataFrame]
    rows: int = 0
    #: The file's whole scan, when it runs beside the reading (:func:`_scan_behind`): its digest,
    #: or :class:`WholeReadNeeded` when the bytes past the first block are not plain UTF-8.
    scanned: Future | None = None

    def __iter__(self):
        for chunk in self.chunks:
            self.rows += len(chunk)
            yield chunk
        self.scanned_info()
        if self.rows == 0:
            raise InputError(f"{self.name}: the table has a header but no rows", code="F002",
                             zh=f"{self.name}：表有表头但没有数据行")
        self.info = dataclasses.replace(self.info, rows=self.rows)

    def scanned_info(self) -> FileInfo:
        """``info`` with the file's digest once its scan has ended (raises
        :class:`WholeReadNeeded` when the scan found the file not plain UTF-8)."""
        if self.scanned is not None:
            self.info = dataclasses.replace(self.info, sha256=self.scanned.result())
            self.scanned = None
        return self.info


def _scan_behind(path: Path) -> Future:
    """The whole scan of a file whose first block is plain UTF-8, on a thread while the file is
    read (hashing runs without the GIL): the digest, or :class:`WholeReadNeeded` if a later
    block is not plain UTF-8 (what the scan before the reading would have sent to the whole read)."""
    def scan() -> str:
        digest, _size, plain, decodes = _scan_as(path, "utf-8", True)
        if not (plain and decodes):
            raise WholeReadNeeded(f"{path.name}: not plain UTF-8 past its first {_SCAN_BLOCK:,} bytes")
        return digest

    pool = ThreadPoolExecutor(1, thread_name_prefix="twin-scan")
    try:
        return pool.submit(scan)
    finally:
        pool.shutdown(wait=False)


def _plain_utf8_head(head: bytes, encoding: str) -> bool:
    """Whether a file's first block is plain UTF-8 (no NUL, no blank line) and more follows:
    the reading may then start before the whole file is scanned."""
    if encoding.lower().replace("_", "-") not in ("auto", "utf-8", "utf8", "utf-8-sig") or len(head) < _SCAN_BLOCK:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return b"\x00" not in head and not _BLANK_LINE.search(head)


def _scan(path: Path, encoding: str) -> tuple[str, int, str, bool]:
    """Passes over a text table's bytes: digest, size, the encoding it decodes with, and
    whether it is plain (no NUL, no blank line): what the chunked reader needs to know first.
    UTF-8 is tried first; GB18030 (GBK's superset) only when that fails."""
    codecs_ = [{"gbk": "gb18030"}.get(encoding.lower(), encoding)] if encoding != "auto" else ["utf-8", "gb18030"]
    measured: tuple[str, int, bool] | None = None
    for codec in filter(_codec_known, codecs_):
        digest, size, plain, decodes = _scan_as(path, codec, measured is None)
        measured = measured or (digest, size, plain)
        if decodes:
            return *measured[:2], codec, measured[2]
    return "", 0, "", False


def _scan_as(path: Path, codec: str, measure: bool) -> tuple[str, int, bool, bool]:
    """Whether the file decodes as ``codec``; with ``measure``, also its digest, size, plainness."""
    digest, size, plain, tail = hashlib.sha256(), 0, True, b""
    decoder = codecs.getincrementaldecoder(codec)()
    decodes = True
    try:
        with path.open("rb") as f:
            while block := f.read(_SCAN_BLOCK):
                if measure:
                    digest.update(block)
                    size += len(block)
                    window = tail + block
                    plain = plain and b"\x00" not in block and not _BLANK_LINE.search(window)
                    tail = window[-64:]
                if decodes:
                    try:
                        decoder.decode(block)
                    except UnicodeDecodeError:
                        decodes = False
                        if not measure:
                            break
            if decodes:
                decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        decodes = False
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}", code="F003",
                         zh=f"{path}：无法读取：{exc.strerror or exc}") from exc
    return (digest.hexdigest() if measure else "", size, plain, decodes)


def _codec_known(name: str) -> bool:
    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return True


def _whole(path: Path, columns: Mapping[str, tuple[str, ...]], required: tuple[str, ...], encoding: str,
           mapping: Mapping[str, str] | None, chunk_rows: int) -> TableStream:
    frame, info = read_table(path, columns, required, encoding=encoding, mapping=mapping)
    chunks = (frame.iloc[i:i + chunk_rows] for i in range(0, len(frame), chunk_rows))
    return TableStream(path.name, info, chunks)


def open_table(
    path: Path,
    columns: Mapping[str, tuple[str, ...]],
    required: tuple[str, ...],
    *,
    encoding: str = "auto",
    mapping: Mapping[str, str] | None = None,
    chunk_rows: int | None = None,
    whole: bool = False,
) -> TableStream:
    """A survey table to be read in chunks of ``chunk_rows``: a plain CSV in UTF-8 or GB18030
    through Arrow's streaming reader (the file is never held whole); anything else (XLSX,
    blank lines, other encodings) read whole by :func:`read_table`, then handed out in chunks.

    The header is checked at once (F001, F002, F003); a table without rows is F002 once read.
    Iterating may raise :class:`WholeReadNeeded` (rows the chunked reader cannot number).
    """
    path = Path(path)
    chunk_rows = chunk_rows or CHUNK_ROWS
    try:
        with path.open("rb") as f:
            head = f.read(_SCAN_BLOCK)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}", code="F003",
                         zh=f"{path}：无法读取：{exc.strerror or exc}") from exc
    if whole or path.suffix.lower() in (".xlsx", ".xlsm") or head[:4] == b"PK\x03\x04" \
            or head[:8] == b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" or not head[:1].strip():
        return _whole(path, columns, required, encoding, mapping, chunk_rows)
    scanned = _scan_behind(path) if _plain_utf8_head(head, encoding) else None
    if scanned is not None:
        digest, size, used, plain = "", path.stat().st_size, "utf-8", True
    else:
        digest, size, used, plain = _scan(path, encoding)
    if not plain or not used:
        return _whole(path, columns, required, encoding, mapping, chunk_rows)
    text = head.decode(used, errors="ignore")
    text = text.removeprefix("\ufeff")
    try:
        delimiter = csv.Sniffer().sniff(text[:10_000], delimiters=",\t;").delimiter
    except csv.Error:
        delimiter = ","
    try:
        header = next(csv.reader([text.split("\n", 1)[0].removesuffix("\r")], delimiter=delimiter), [])
    except csv.Error:
        header = []
    if not header or len(set(header)) != len(header):
        return _whole(path, columns, required, encoding, mapping, chunk_rows)
    # The header alone: a missing column is F001 before any row is read.
    canonical_frame(pd.DataFrame(columns=header), columns, required, mapping=mapping, name=path.name,
                    drop_empty=False)
    canonical = _map_headers(header, columns, mapping or {}, path.name)
    mapped = list(canonical)
    arrow = frozenset(h for h, c in canonical.items() if c in NUMBER_COLUMNS | CARRIED_COLUMNS)
    label = encoding if encoding != "auto" else ("utf-8-sig" if head[:3] == b"\xef\xbb\xbf" else used)
    info = FileInfo(name=path.name, sha256=digest, bytes=size, encoding=label)
    read = pacsv.ReadOptions(block_size=min(max(1 << 16, chunk_rows * 48), 1 << 26), use_threads=False,
                             encoding="utf8" if used == "utf-8" else used)
    parse = pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=False)
    convert = pacsv.ConvertOptions(column_types={h: pa.string() for h in mapped}, include_columns=mapped,
                                   strings_can_be_null=True, null_values=[""], quoted_strings_can_be_null=True)
    return TableStream(path.name, info, _csv_chunks(path, read, parse, convert, columns, required,
                                                     mapping, chunk_rows, arrow), scanned=scanned)


def _csv_chunks(path: Path, read: pacsv.ReadOptions, parse: pacsv.ParseOptions,
                convert: pacsv.ConvertOptions, columns: Mapping[str, tuple[str, ...]], required: tuple[str, ...],
                mapping: Mapping[str, str] | None, chunk_rows: int, arrow: frozenset[str]):
    """Canonical chunks of a plain CSV, numbered by line (the header is line 1): Arrow parses and
    trims the next chunk on a thread (no GIL: the second core) while this one is checked."""
    for header, text, line in prefetched(_csv_text(path, read, parse, convert, chunk_rows)):
        yield canonical_frame(_object_frame(header, text, arrow, trimmed=True), columns, required,
                              mapping=mapping, name=path.name, first_row=line, trimmed=True)


def _csv_text(path: Path, read: pacsv.ReadOptions, parse: pacsv.ParseOptions, convert: pacsv.ConvertOptions,
              chunk_rows: int):
    """A plain CSV in chunks of about ``chunk_rows`` rows as Arrow text, trimmed, empty cells
    null: (header, columns, first line) each."""
    line = 2
    try:
        reader = pacsv.open_csv(path, read_options=read, parse_options=parse, convert_options=convert)
        header = reader.schema.names
        pending: list[pa.RecordBatch] = []
        while True:
            try:
                batch = reader.read_next_batch()
            except StopIteration:
                batch = None
            if batch is not None:
                pending.append(batch)
            rows = sum(b.num_rows for b in pending)
            if pending and (batch is None or rows >= chunk_rows):
                text = [_trimmed(col) for col in pa.Table.from_batches(pending).columns]
                pending = []  # (the raw text is not held while the chunk waits for the caller)
                yield header, text, line
                line += rows
            if batch is None:
                return
    except (pa.ArrowInvalid, pa.ArrowKeyError, UnicodeDecodeError) as exc:
        raise WholeReadNeeded(f"{path.name}: {exc}") from exc


_DONE = object()


def prefetched(chunks: Iterator, depth: int = 1) -> Iterator:
    """``chunks`` made on a thread ``depth`` ahead of the caller; errors reach the caller in
    order, and a caller that stops early stops the thread."""
    out: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for chunk in chunks:
                if not put((chunk, None)):
                    return
            put((_DONE, None))
        except BaseException as exc:  # handed to the caller, raised there
            put((None, exc))

    threading.Thread(target=produce, name="twin-read", daemon=True).start()
    try:
        while True:
            chunk, exc = out.get()
            if exc is not None:
                raise exc
            if chunk is _DONE:
                return
            yield chunk
    finally:
        stop.set()


# ----------------------------------------------------------------------------- size before parsing
#: Error code of a table refused for its size before it is parsed.
TOO_LARGE = "TABLE_TOO_LARGE"
_CHUNK = 1 << 20
#: A namespace-prefixed row start tag (``<x:row r="1">``); at most 38 bytes long.
_PREFIXED_ROW = re.compile(rb"<\w{1,32}:row[\s>/]")
_KEEP = 64  # longer than any row tag counted
_DIMENSION = re.compile(rb"<(?:\w{1,32}:)?dimension\s+ref=\"[A-Z]*\d*:?[A-Z]*(\d+)\"")


@dataclass(frozen=True)
class TableLimits:
    """How large an uploaded table may be: rows below the header, and bytes once unpacked."""

    rows: int
    unpacked_bytes: int

    @classmethod
    def survey(cls, settings: TwinSettings) -> TableLimits:
        """The limits of an import's or an as-built's tables (TWIN_MAX_TABLE_ROWS, TWIN_MAX_TABLE_MB)."""
        return cls(settings.max_table_rows, int(settings.table_mb * 1e6))

    @classmethod
    def proposal(cls, settings: TwinSettings) -> TableLimits:
        """The limits of a proposal's tables (TWIN_MAX_PROPOSAL_TABLE_ROWS, TWIN_MAX_PROPOSAL_TABLE_MB)."""
        return cls(settings.max_proposal_table_rows, int(settings.max_proposal_table_mb * 1e6))


def _too_large(path: Path, what: str, limit: str, zh: str) -> InputError:
    return InputError(f"{path.name}: {what}; {limit}", code=TOO_LARGE, zh=f"{path.name} 过大：{zh}")


def check_table_size(path: Path, limits: TableLimits) -> None:
    """Refuse (InputError ``TABLE_TOO_LARGE``) a table over ``limits`` without parsing it.

    An XLSX is measured by the unpacked size its zip declares (Python's zip reader never
    unpacks more) and by the rows of its first sheet: the ``<dimension>`` it declares, then the
    ``<row>`` tags counted while streaming, stopping past the limit. A CSV is measured by its
    bytes and lines. A file that is no readable table passes: its reader says what is wrong.
    """
    path = Path(path)
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        _check_workbook(path, limits)
    else:
        _check_text(path, limits)


def _check_text(path: Path, limits: TableLimits) -> None:
    lines, last = 0, b"\n"
    try:
        size = path.stat().st_size
        if size > limits.unpacked_bytes:
            raise _too_large(path, f"{size / 1e6:,.1f} MB",
                             f"a table is at most {limits.unpacked_bytes / 1e6:,.1f} MB",
                             zh=f"{size / 1e6:,.1f} MB；一个表最大 {limits.unpacked_bytes / 1e6:,.1f} MB")
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                lines += chunk.count(b"\n")
                last = chunk[-1:]
                if lines - 1 > limits.rows:
                    break
    except OSError:
        return  # missing or unreadable: read_table reports it
    rows = lines - (last == b"\n")  # the header line is not a row; a last line may lack its newline
    if rows > limits.rows:
        raise _too_large(path, f"more than {limits.rows:,} rows", f"a table holds at most {limits.rows:,}",
                         zh=f"超过 {limits.rows:,} 行；一个表最多 {limits.rows:,} 行")


def _check_workbook(path: Path, limits: TableLimits) -> None:
    try:
        book = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        return  # not a workbook: read_table reports it
    with book:
        unpacked = sum(i.file_size for i in book.infolist())
        if unpacked > limits.unpacked_bytes:
            raise _too_large(path, f"unpacks to {unpacked / 1e6:,.1f} MB",
                             f"a table is at most {limits.unpacked_bytes / 1e6:,.1f} MB unpacked",
                             zh=f"解压后 {unpacked / 1e6:,.1f} MB；一个表解压后最大 {limits.unpacked_bytes / 1e6:,.1f} MB")
        for sheet in _first_sheet(book):
            rows = _sheet_rows(book, sheet, limits.rows + 1) - 1  # less the header row
            if rows > limits.rows:
                raise _too_large(path, f"more than {limits.rows:,} rows", f"a table holds at most {limits.rows:,}",
                                 zh=f"超过 {limits.rows:,} 行；一个表最多 {limits.rows:,} 行")


def _head(book: zipfile.ZipFile, name: str) -> bytes:
    """The first megabyte of a member (b'' when it is missing or damaged)."""
    try:
        with book.open(name) as f:
            return f.read(_CHUNK)
    except (KeyError, zipfile.BadZipFile, OSError, EOFError, RuntimeError):
        return b""


def _first_sheet(book: zipfile.ZipFile) -> list[str]:
    """The member holding the first sheet (the one read); every worksheet when that is unclear."""
    names = set(book.namelist())
    sheet = re.search(rb"<(?:\w{1,32}:)?sheet\s[^>]*?\s\w{1,32}:id=\"([^\"]+)\"", _head(book, "xl/workbook.xml"))
    if sheet is not None:
        for rel in re.finditer(rb"<(?:\w{1,32}:)?Relationship\s[^>]*>", _head(book, "xl/_rels/workbook.xml.rels")):
            tag = rel.group(0)
            target = re.search(rb'\sTarget="([^"]+)"', tag)
            if target is None or not re.search(rb'\sId="' + re.escape(sheet.group(1)) + rb'"', tag):
                continue
            text = target.group(1).decode("utf-8", "replace")
            name = text.lstrip("/") if text.startswith("/") else posixpath.normpath(posixpath.join("xl", text))
            if name in names:
                return [name]
    return sorted(n for n in names if n.startswith("xl/worksheets/") and n.endswith(".xml"))


def _sheet_rows(book: zipfile.ZipFile, name: str, cap: int) -> int:
    """Rows of a sheet, counted while unpacking it; stops once past ``cap`` (or at the declared size)."""
    rows, carry, first = 0, b"", True
    try:
        with book.open(name) as f:
            while chunk := f.read(_CHUNK):
                buf = carry + chunk
                if first:
                    first = False
                    declared = _DIMENSION.search(buf[:_CHUNK])
                    if declared is not None and int(declared.group(1)) > cap:
                        return int(declared.group(1))
                # a row tag may straddle chunks: keep what follows the last '<' when it is short
                cut = buf.rfind(b"<")
                if cut < 0 or len(buf) - cut > _KEEP:
                    cut = len(buf)
                rows, carry = rows + _row_tags(buf[:cut]), buf[cut:]
                if rows > cap:
                    return rows
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError, zlib_error):
        pass  # damaged: read_table reports it
    return rows + _row_tags(carry)


def _row_tags(xml: bytes) -> int:
    """Row start tags in a piece of sheet XML (``bytes.count`` runs at memory speed; a regex
    only for namespace-prefixed tags). Any other element named ``row...`` would be counted too:
    SpreadsheetML has one, ``rowBreaks``."""
    n = xml.count(b"<row") - xml.count(b"<rowBreaks")
    if b":row" in xml:
        n += len(_PREFIXED_ROW.findall(xml))
    return n
