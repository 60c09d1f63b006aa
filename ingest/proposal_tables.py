"""A proposal given as CJJ 61 survey tables (points + segments) turned into proposal GeoJSON.

Designers often hand in a proposed pipe in the same two tables a survey uses. They are read
by :func:`ingest.tables.read_survey` and run through the import's own checks and derivation
(:func:`ingest.prepare.prepare`: missing points, sizes, depths, heights ``ground - depth -/+ r``
by depth reference); a table with an error is refused, and so is one beyond the proposal
tables' size limits (:meth:`ingest.tables.TableLimits.proposal`), before it is parsed. Each
segment becomes one LineString of its derived centreline (easting, northing, centre
elevation) in the twin CRS, with ``z_reference: "centre"``, so
:func:`analysis.proposal_input.read_proposal` reads back the same centrelines.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ingest.prepare import prepare
from ingest.tables import TableLimits, check_table_size, read_survey
from twin.crs import twin_crs
from twin.errors import InputError
from twin.schema import names
from twin.settings import TwinSettings

__all__ = ["tables_to_geojson", "LISTED_ISSUES"]

#: Text attributes a proposal pipe carries into its GeoJSON (the catalogue's ``reads="proposal"``).
_CARRIED = names("segment", reads="proposal")

#: How many of a refused table's errors the message lists.
LISTED_ISSUES = 5
_DECIMALS = 4  # 0.1 mm


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and not np.isfinite(value)) or value is pd.NA:
        return None
    text = str(value).strip()
    return text or None


def tables_to_geojson(
    points_path: str | Path,
    segments_path: str | Path,
    settings: TwinSettings,
    *,
    axis_order: str = "ne",
    encoding: str = "auto",
    mapping: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Proposal GeoJSON (a FeatureCollection in the twin CRS) from CJJ 61 point and segment tables.

    ``axis_order`` ``ne``: X is northing (Chinese survey tables), ``en``: X is easting.
    Raises :class:`twin.errors.InputError` (its ``code`` the first check's, or
    ``TABLE_TOO_LARGE``) when the tables are too large, cannot be read or the data checks find
    an error; warnings do not refuse a proposal.

    Examples
    --------
    >>> doc = tables_to_geojson("points.csv", "segments.csv", settings)  # doctest: +SKIP
    >>> doc["features"][0]["properties"]["z_reference"]  # doctest: +SKIP
    'centre'
    """
    if axis_order not in ("ne", "en"):
        raise InputError(f"axis order must be 'ne' or 'en', not {axis_order!r}",
                         zh=f"坐标轴顺序须为 'ne'（X 为北坐标）或 'en'（X 为东坐标），不是 {axis_order!r}")
    limits = TableLimits.proposal(settings)
    for path in (points_path, segments_path):
        check_table_size(Path(path), limits)
    tables = read_survey(Path(points_path), Path(segments_path), encoding=encoding, mapping=mapping)
    crs = twin_crs(settings.crs)
    # a proposed main may well run longer than a surveyed segment: no W205
    prepared = prepare(tables, settings, crs, axis_order=axis_order, check_long=False)
    errors = prepared.report.errors
    if errors:
        listed = "; ".join(
            f"{i.code} {i.file or ''} row {i.row}: {i.message}" if i.row is not None else f"{i.code}: {i.message}"
            for i in errors[:LISTED_ISSUES])
        more = prepared.report.error_count - min(len(errors), LISTED_ISSUES)
        raise InputError(f"the proposal tables have {prepared.report.error_count} error(s): {listed}"
                         + (f"; and {more} more" if more > 0 else ""), code=errors[0].code,
                         zh=f"方案表有 {prepared.report.error_count} 个错误：{listed}"
                            + (f"；另有 {more} 个" if more > 0 else ""))
    seg = prepared.segments[prepared.segments["_valid"].to_numpy(dtype=bool)]
    if not len(seg):
        raise InputError("the proposal tables hold no segment", zh="方案表中没有管线")
    if seg["vertices"].notna().any():  # only hydraulic models carry interior vertices
        raise InputError("proposal tables with interior vertices are not supported",
                         zh="不支持含中间顶点的方案表")
    ends = np.round(seg[["x1", "y1", "from_z", "x2", "y2", "to_z"]].to_numpy(float), _DECIMALS)
    rect = seg["shape"].to_numpy() == "rect"
    sizes = np.round(seg[["diameter_mm", "width_mm", "height_mm"]].to_numpy(float), 3)
    pressure = seg["pressure_mpa"].to_numpy(float)
    voltage = seg["voltage_kv"].to_numpy(float)
    records = seg[["id", "utility", "subtype", "size_text", *_CARRIED]].to_dict("records")
    features = []
    for k, rec in enumerate(records):
        props: dict[str, Any] = {"id": str(rec["id"]), "utility": _text(rec["subtype"]) or _text(rec["utility"])}
        if rect[k]:
            props["width_mm"], props["height_mm"] = float(sizes[k, 1]), float(sizes[k, 2])
        else:
            props["diameter_mm"] = float(sizes[k, 0])
        props["size"] = _text(rec["size_text"])
        props["z_reference"] = "centre"
        for key in _CARRIED:
            props[key] = _text(rec[key])
        if np.isfinite(pressure[k]):
            props["pressure_mpa"] = float(pressure[k])
        if np.isfinite(voltage[k]):
            props["voltage_kv"] = float(voltage[k])
        features.append({
            "type": "Feature",
            "id": props["id"],
            "properties": {key: v for key, v in props.items() if v is not None},
            "geometry": {"type": "LineString", "coordinates": ends[k].reshape(2, 3).tolist()},
        })
    return {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": f"urn:ogc:def:crs:EPSG::{crs.srid}"}},
        "features": features,
    }
