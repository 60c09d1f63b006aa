"""GeoPackage, Shapefile and GeoJSON exports through pyogrio (GDAL), Arrow in, no row loop.

Two layers, the usual 管点/管线 pair: ``points`` (3D points at ground level) and ``segments``
(3D centrelines), in the twin's CRS; GeoJSON is written as RFC 7946 (CRS84 longitude,
latitude, height), as that format requires. Fields are the id and the catalogue's exported
columns (:mod:`twin.schema`) with their types.

Shapefiles (one ``.shp`` per layer in the output folder) carry a ``.cpg`` of ``GBK``, the code
page Chinese GIS desktops expect, and field names of at most 10 bytes made by
:func:`shapefile_names`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyogrio

from exchange.network import GEOMETRY

__all__ = ["GIS_FORMATS", "LAYERS", "shapefile_names", "write_gis"]

#: format -> (GDAL driver, file suffix, one file per layer)
GIS_FORMATS: dict[str, tuple[str, str, bool]] = {
    "gpkg": ("GPKG", ".gpkg", False),
    "shp": ("ESRI Shapefile", ".shp", True),
    "geojson": ("GeoJSON", ".geojson", True),
}
#: Layer -> its geometry type.
LAYERS: dict[str, str] = {"points": "Point Z", "segments": "LineString Z"}
SHAPEFILE_BYTES = 10
_SHP_FILES = (".shp", ".shx", ".dbf", ".prj", ".cpg")
_SIDECARS = (*_SHP_FILES, ".geojson")


def _short(name: str) -> str:
    """One name cut to 10 bytes (see :func:`shapefile_names`)."""
    words = name.split("_")
    for keep in (4, 3):
        while len(words) > 1 and len("_".join(words)) > SHAPEFILE_BYTES:
            longest = max(range(len(words)), key=lambda i: (len(words[i]), i))
            if len(words[longest]) <= keep:
                break
            words[longest] = words[longest][:keep]
    return "_".join(words)[:SHAPEFILE_BYTES]


def shapefile_names(names: Sequence[str]) -> dict[str, str]:
    """Field names of at most 10 bytes for a Shapefile, the same for the same columns.

    A name of 10 bytes or fewer is kept. A longer name of several words has its longest word
    (the last of equals) cut to 4 letters, again until it fits, then to 3; what is still too
    long, and a name of one word, is cut at 10 bytes. A name that would repeat an earlier one
    ends in a digit instead.

    >>> shapefile_names(["diameter_mm", "well_depth_m", "eccentric_well_id", "appurtenance"])
    {'diameter_mm': 'diam_mm', 'well_depth_m': 'well_dep_m', 'eccentric_well_id': 'ecc_wel_id', \
'appurtenance': 'appurtenan'}
    """
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in names:
        short = name if len(name.encode()) <= SHAPEFILE_BYTES else _short(name)
        k = 1
        base = short
        while short in used:
            short = base[: SHAPEFILE_BYTES - len(str(k))] + str(k)
            k += 1
        used.add(short)
        out[name] = short
    return out


def write_gis(out: Path, fmt: str, layers: dict[str, pa.Table], srid: int) -> tuple[list[Path], dict]:
    """Write ``layers`` (name -> Arrow table with WKB ``geometry``) as ``fmt``.

    ``out`` is the GeoPackage file, or the folder of the Shapefiles or GeoJSON files. Returns
    the files written and, for Shapefiles, the field names used (column -> short name).
    """
    driver, suffix, per_layer = GIS_FORMATS[fmt]
    files: list[Path] = []
    renamed: dict[str, dict[str, str]] = {}
    if per_layer:
        out.mkdir(parents=True, exist_ok=True)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.unlink(missing_ok=True)
    for layer, table in layers.items():
        path = out / f"{layer}{suffix}" if per_layer else out
        for old in (path.with_suffix(s) for s in _SIDECARS):
            old.unlink(missing_ok=True)  # GDAL will not write over an existing layer file
        options: dict[str, str] = {}
        encoding = None
        if fmt == "shp":
            names = [n for n in table.schema.names if n != GEOMETRY]
            short = shapefile_names(names)
            renamed[layer] = short
            table = table.rename_columns([short.get(n, n) for n in table.schema.names])
            encoding = "GBK"
        if fmt == "geojson":
            options = {"RFC7946": "YES", "WRITE_NAME": "NO"}
        pyogrio.write_arrow(table, path, layer=layer, driver=driver, geometry_name=GEOMETRY,
                            geometry_type=LAYERS[layer], crs=f"EPSG:{srid}", encoding=encoding,
                            layer_options=options or None)
        if per_layer or not files:
            files.append(path)
    if fmt == "shp":
        files = [f.with_suffix(s) for f in files for s in _SHP_FILES]
    return files, renamed
