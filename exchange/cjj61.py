"""CJJ 61 survey tables (管线点成果表, 管线段成果表) of the network, as CSV or XLSX.

The headers are the ingest's own vocabulary (:data:`ingest.tables.POINT_COLUMNS` and
:data:`ingest.tables.SEGMENT_COLUMNS`, the first, Chinese name of each column), so the tables
re-import into an empty twin as the same network: X is northing and Y easting, depths are to
each utility's depth reference, sizes as surveyed, features and appurtenances by their Chinese
names. CSV is UTF-8 with a byte-order mark (spreadsheets then read the Chinese right); text a
spreadsheet would run as a formula is defused (:mod:`twin.cells`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from exchange.network import Selection, read_layer
from ingest.tables import POINT_COLUMNS, SEGMENT_COLUMNS
from twin.cells import spreadsheet_safe
from twin.domain import APPURTENANCES, FEATURES
from twin.schema import columns, names

__all__ = ["survey_tables", "write_cjj61", "POINT_FIELDS", "SEGMENT_FIELDS"]

#: Survey columns whose twin column has another name (or is computed on export: ``code`` is the
#: subtype or utility, ``x``/``y`` the northing/easting, ``pressure`` MPa or kV).
_POINT_RENAMED = {"point_id": "id", "utility": "code", "x": "x", "y": "y", "depth": "depth_m",
                  "well_depth": "well_depth_m"}
_SEGMENT_RENAMED = {"utility": "code", "from_id": "from_node", "to_id": "to_node",
                    "from_depth": "from_depth_m", "to_depth": "to_depth_m", "pressure": "pressure"}


def _fields(vocabulary: dict[str, tuple[str, ...]], kind: str, renamed: dict[str, str]) -> dict[str, str]:
    """Survey column -> twin column, in the survey table's order: the renamed ones, the
    catalogue's columns of the same name, and those an edit takes under the survey's name
    (``size`` -> ``size_text``). Survey columns the twin does not keep are left out."""
    out = {}
    for name in vocabulary:
        if name in renamed:
            out[name] = renamed[name]
        elif name in names(kind):
            out[name] = name
        elif edited := [c.name for c in columns(kind) if c.edit_as == name]:
            out[name] = edited[0]
    return out


#: Survey column <- the twin's column (or computed column) it is written from.
POINT_FIELDS: dict[str, str] = _fields(POINT_COLUMNS, "node", _POINT_RENAMED)
SEGMENT_FIELDS: dict[str, str] = _fields(SEGMENT_COLUMNS, "segment", _SEGMENT_RENAMED)
_CODE = ("coalesce(subtype, utility)", pa.string())  # a subtype code keeps its parent on import


def _header(vocabulary: dict[str, tuple[str, ...]], name: str) -> str:
    return vocabulary[name][0].upper()  # the first (Chinese) name; 'x坐标' -> 'X坐标'


def _named(values: pd.Series, names: dict[str, tuple[str, ...]]) -> pd.Series:
    """Canonical feature or appurtenance names -> their first (Chinese) survey name."""
    return values.map(lambda v: names[v][0] if v in names else v, na_action="ignore")


def _frame(table: pa.Table, fields: dict[str, str], vocabulary: dict[str, tuple[str, ...]]
           ) -> pd.DataFrame:
    frame = table.to_pandas(types_mapper={pa.int32(): pd.Int32Dtype()}.get)  # counts stay whole
    out = pd.DataFrame({_header(vocabulary, k): frame[v] for k, v in fields.items()})
    for name in out.columns:
        col = out[name]
        if col.dtype == object:
            risky = col.str.startswith(("=", "+", "-", "@", "\t", "\r"), na=False)
            if risky.any():
                out.loc[risky, name] = col[risky].map(spreadsheet_safe)
    return out


def survey_tables(conn: sa.Connection, sel: Selection) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The point and segment tables of the selection, with CJJ 61 headers."""
    points = read_layer(conn, "node", sel, geometry=False, extra={
        "x": ("ST_Y(geom)", pa.float64()), "y": ("ST_X(geom)", pa.float64()), "code": _CODE})
    segments = read_layer(conn, "segment", sel, geometry=False, extra={
        "pressure": ("coalesce(pressure_mpa, voltage_kv)", pa.float64()), "code": _CODE})
    p = _frame(points, POINT_FIELDS, POINT_COLUMNS)
    p[_header(POINT_COLUMNS, "feature")] = _named(p[_header(POINT_COLUMNS, "feature")], FEATURES)
    name = _header(POINT_COLUMNS, "appurtenance")
    p[name] = _named(p[name], APPURTENANCES)
    s = _frame(segments, SEGMENT_FIELDS, SEGMENT_COLUMNS)
    return p, s


def write_cjj61(out: Path, points: pd.DataFrame, segments: pd.DataFrame, *, xlsx: bool = False
                ) -> list[Path]:
    """``points`` and ``segments`` as ``points.csv`` and ``segments.csv`` (or ``.xlsx``) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for stem, frame in (("points", points), ("segments", segments)):
        if xlsx:
            path = out / f"{stem}.xlsx"
            frame.to_excel(path, index=False, sheet_name=stem)
        else:
            path = out / f"{stem}.csv"
            frame.to_csv(path, index=False, encoding="utf-8-sig")
        files.append(path)
    return files
