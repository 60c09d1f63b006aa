"""The twin's coordinate reference system and survey-coordinate conventions."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pyproj import CRS, Transformer

from twin.errors import ConfigError

__all__ = ["TwinCRS", "twin_crs", "transformer"]


@dataclass(frozen=True)
class TwinCRS:
    """A projected CRS in metres, as the twin stores geometry."""

    crs: CRS
    srid: int
    central_meridian: float | None
    false_easting: float | None

    @property
    def gk_zone_3deg(self) -> int | None:
        """3-degree Gauss-Kruger zone number (central meridian / 3), if the CRS is one."""
        if self.central_meridian is None:
            return None
        zone = self.central_meridian / 3.0
        return int(round(zone)) if abs(zone - round(zone)) < 1e-9 else None

    def strip_zone_prefix(self, easting: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Remove a Gauss-Kruger zone prefix (``39408700.00`` -> ``408700.00``).

        Returns the eastings and a mask of values whose prefix names another zone.
        Values without a prefix pass through unchanged.
        """
        easting = np.asarray(easting, dtype=float)
        prefixed = easting >= 1e7
        if not prefixed.any() or self.false_easting is None or self.false_easting >= 1e6:
            return easting, np.zeros(easting.shape, dtype=bool)
        zone = np.floor(easting / 1e6)
        wrong = prefixed & (zone != (self.gk_zone_3deg or -1))
        return np.where(prefixed, easting - zone * 1e6, easting), wrong


@lru_cache(maxsize=8)
def twin_crs(user_input: str) -> TwinCRS:
    """Parse and validate the twin CRS (``TWIN_CRS``): projected, metres, with an EPSG code."""
    try:
        crs = CRS.from_user_input(user_input)
    except Exception as exc:  # pyproj raises CRSError with a helpful text
        raise ConfigError(f"TWIN_CRS {user_input!r} is not a CRS: {exc}",
                          zh=f"TWIN_CRS {user_input!r} 不是坐标参照系：{exc}") from exc
    if not crs.is_projected:
        raise ConfigError(f"TWIN_CRS {user_input!r} is not projected; the twin needs metres",
                          zh=f"TWIN_CRS {user_input!r} 不是投影坐标系；孪生库需要以米为单位")
    units = {ax.unit_name for ax in crs.axis_info}
    if units != {"metre"}:
        raise ConfigError(f"TWIN_CRS {user_input!r} has units {sorted(units)}, not metres",
                          zh=f"TWIN_CRS {user_input!r} 的单位为 {sorted(units)}，不是米")
    epsg = crs.to_epsg()
    if epsg is None:
        raise ConfigError(f"TWIN_CRS {user_input!r} has no EPSG code; PostGIS needs one",
                          zh=f"TWIN_CRS {user_input!r} 没有 EPSG 代码；PostGIS 需要它")
    cm = fe = None
    if crs.coordinate_operation is not None:
        for p in crs.coordinate_operation.params:
            if p.name == "Longitude of natural origin":
                cm = float(p.value)
            elif p.name == "False easting":
                fe = float(p.value)
    return TwinCRS(crs=crs, srid=epsg, central_meridian=cm, false_easting=fe)


@lru_cache(maxsize=64)
def transformer(source: str | int, target: str | int) -> Transformer:
    """A cached lon/lat-ordered (``always_xy``) transformer between two CRSs.

    Building one costs a quarter of a second; every caller shares them through here.
    ``source`` and ``target`` are anything :meth:`pyproj.CRS.from_user_input` takes and can
    hash (an EPSG code, "EPSG:4548", "OGC:CRS84", WKT).

    >>> e, n = transformer("EPSG:4326", "EPSG:4548").transform(117.0, 39.0)
    >>> round(e), round(n)
    (500000, 4318504)
    """
    return Transformer.from_crs(CRS.from_user_input(source), CRS.from_user_input(target), always_xy=True)
