"""``export_network``: the one library call behind ``twin export`` and ``POST /exports``.

It reads the selection (:mod:`exchange.network`) in one repeatable-read transaction, so every
layer shows the network at the same moment, and writes it in the asked format:

======== ================================================================ ====================
format   what                                                             OUT
======== ================================================================ ====================
gpkg     GeoPackage, layers ``points`` and ``segments`` (3D, twin CRS)    the file
shp      Shapefiles ``points.shp``, ``segments.shp``, GBK ``.cpg``        a folder
geojson  ``points.geojson``, ``segments.geojson`` (RFC 7946, CRS84)       a folder
dxf      the CAD pipeline drawing (管线图)                                 the file
cjj61    ``points.csv``, ``segments.csv`` (``xlsx=True``: ``.xlsx``)       a folder
inp      EPANET model of the water network and ``<name>.valves.csv``      the ``.inp`` file
======== ================================================================ ====================
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from exchange.cjj61 import survey_tables, write_cjj61
from exchange.gis import GIS_FORMATS, write_gis
from exchange.network import Selection, parse_at, parse_bbox, parse_utility, read_layer
from twin.db import twin_srid
from twin.errors import InputError

__all__ = ["FORMATS", "FOLDER_FORMATS", "ExportReport", "export_network", "selection", "check_format"]

FORMATS: tuple[str, ...] = ("gpkg", "shp", "geojson", "dxf", "cjj61", "inp")
#: Formats that write a folder of files (the API sends them zipped).
FOLDER_FORMATS = frozenset({"shp", "geojson", "cjj61"})

Progress = Callable[[int, str], None]


@dataclass
class ExportReport:
    """What an export wrote."""

    format: str
    out: str
    files: list[str]
    counts: dict[str, int]
    selection: dict
    seconds: float
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def selection(utility: str | None = None, bbox: str | None = None,
              at: str | datetime | None = None) -> Selection:
    """The selection of the command's or request's ``utility``, ``bbox`` and ``at`` (checked)."""
    parent, subtype = parse_utility(utility)
    return Selection(utility=parent, subtype=subtype, bbox=parse_bbox(bbox), at=parse_at(at))


def check_format(fmt: str, sel: Selection) -> None:
    """The format is known and fits the selection (EPANET: water only)."""
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt[:20]!r}: one of {', '.join(FORMATS)}",
                         zh=f"未知格式 {fmt[:20]!r}：可选 {', '.join(FORMATS)}")
    if fmt == "inp" and sel.utility not in (None, "JS"):
        raise InputError("the EPANET export is of the water network: leave out "
                         "--utility or give JS",
                         zh="EPANET 只导出给水管网：请去掉 --utility 或指定 JS")


def _write(conn: sa.Connection, out: Path, fmt: str, sel: Selection, xlsx: bool,
           step: Progress) -> tuple[list[Path], dict[str, int], dict]:
    srid = twin_srid(conn)
    if fmt == "cjj61":
        points, segments = survey_tables(conn, sel)
        step(60, "writing")
        return write_cjj61(out, points, segments, xlsx=xlsx), {
            "points": len(points), "segments": len(segments)}, {}
    if fmt == "inp":
        sel = Selection(utility="JS", subtype=sel.subtype, bbox=sel.bbox, at=sel.at)
    ordered = fmt not in GIS_FORMATS  # a GIS layer's order means nothing; skip the sort
    layers = {"points": read_layer(conn, "node", sel, ordered=ordered),
              "segments": read_layer(conn, "segment", sel, ordered=ordered)}
    counts = {k: t.num_rows for k, t in layers.items()}
    step(50, "writing")
    if fmt in GIS_FORMATS:
        files, names = write_gis(out, fmt, layers, srid)
        return files, counts, ({"field_names": names} if names else {})
    # DXF and EPANET load their libraries (ezdxf, wntr: a second or two) only when asked for, so
    # a GIS or CJJ 61 export, and the `twin export` command's start, do without them.
    if fmt == "dxf":
        from exchange.dxf import write_dxf

        return write_dxf(out, layers["points"], layers["segments"]), counts, {}
    extra = {k: read_layer(conn, kind, sel, geometry=False)
             for k, kind in (("valves", "valve"), ("sources", "source"), ("customers", "customer"))}
    from exchange.epanet import write_inp

    files, assumed = write_inp(out, layers["points"], layers["segments"], **extra)
    return files, {k: v for k, v in assumed.items() if k in ("junctions", "pipes", "valves")}, assumed


def export_network(engine: sa.Engine, out: Path, fmt: str, *, utility: str | None = None,
                   bbox: str | None = None, at: str | datetime | None = None, xlsx: bool = False,
                   progress: Progress | None = None) -> ExportReport:
    """Export the selected network to ``out`` as ``fmt`` (one of :data:`FORMATS`)."""
    sel = selection(utility, bbox, at)
    check_format(fmt, sel)
    out = Path(out)
    folder = fmt in FOLDER_FORMATS
    if out.exists() and out.is_dir() != folder:
        raise InputError(f"{out} exists and is {'not ' if folder else ''}a folder; the {fmt} export "
                         f"writes {'a folder' if folder else 'a file'}",
                         zh=f"{out} 已存在且{'不' if folder else ''}是文件夹；{fmt} 导出写入的是{'文件夹' if folder else '文件'}")
    step = progress or (lambda _p, _m: None)
    t0 = time.perf_counter()
    step(5, "reading")
    with engine.connect() as conn:
        conn.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
        try:
            files, counts, details = _write(conn, out, fmt, sel, xlsx, step)
        except OSError as exc:  # a folder that cannot be written, a full disk
            raise InputError(f"cannot write {out}: {exc.strerror or exc}",
                             zh=f"无法写入 {out}：{exc.strerror or exc}") from None
        conn.rollback()
    step(95, "done")
    return ExportReport(format=fmt, out=str(out), files=[str(f) for f in files], counts=counts,
                        selection=sel.describe(), seconds=round(time.perf_counter() - t0, 3),
                        details=details)
