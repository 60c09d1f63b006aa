"""Domain vocabulary of underground pipeline surveys (CJJ 61-2017).

Codes, colours, depth references and the canonical names PipeTwin stores.
Everything here is a fact of the standard, not a rule a deployment tunes; the
tunable numbers (clearances, cover) live in data files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

__all__ = [
    "Utility",
    "UTILITIES",
    "utilities_named",
    "name_zh",
    "SUBTYPE_PARENT",
    "GRAVITY_UTILITIES",
    "PRESSURISED_UTILITIES",
    "FEATURES",
    "APPURTENANCES",
    "FEATURE_DEGREE",
    "SOURCE_APPURTENANCES",
    "VALVE_APPURTENANCES",
    "STATUSES",
    "DepthReference",
    "depth_reference",
    "parse_utility",
    "parse_sizes",
    "map_distinct",
    "canonical_feature",
    "canonical_appurtenance",
]


@dataclass(frozen=True)
class Utility:
    """A utility of CJJ 61 appendix B."""

    code: str
    name_en: str
    name_zh: str
    subtypes: tuple[str, ...]
    rgb: tuple[int, int, int]


UTILITIES: Final[dict[str, Utility]] = {
    u.code: u
    for u in (
        Utility("JS", "water supply", "给水", ("JY", "SS", "ZS", "JP", "JZ", "XS", "LS", "JH"), (0, 255, 255)),
        Utility("PS", "drainage", "排水", ("YS", "WS", "HS"), (76, 57, 38)),
        Utility("RQ", "gas", "燃气", ("MQ", "YH", "TR"), (255, 0, 255)),
        Utility("RL", "heat", "热力", ("RS", "ZQ"), (255, 128, 0)),
        Utility("DL", "power", "电力", ("GD", "LD", "XH", "DC", "GG"), (255, 0, 0)),
        Utility("TX", "telecom", "通信", ("DH", "DS", "XX", "GB"), (0, 255, 0)),
        Utility("GY", "industrial", "工业", (), (0, 0, 0)),
        Utility("QT", "other", "其他", ("ZH", "BM"), (102, 0, 204)),
    )
}

SUBTYPE_PARENT: Final[dict[str, str]] = {
    sub: u.code for u in UTILITIES.values() for sub in u.subtypes
}

_UTILITY_ZH: Final[dict[str, str]] = {
    "给水": "JS", "供水": "JS", "上水": "JS", "排水": "PS", "雨水": "YS", "污水": "WS",
    "合流": "HS", "燃气": "RQ", "煤气": "MQ", "天然气": "TR", "液化气": "YH", "热力": "RL",
    "供热": "RL", "电力": "DL", "供电": "DL", "路灯": "LD", "通信": "TX", "电信": "DX",
    "工业": "GY", "综合管廊": "ZH", "其他": "QT", "不明": "BM",
}

#: Gravity networks: no valves, depth to the invert, must fall along the flow.
GRAVITY_UTILITIES: Final[frozenset[str]] = frozenset({"PS"})
#: Networks segmented by valves (关阀).
PRESSURISED_UTILITIES: Final[frozenset[str]] = frozenset({"JS", "RQ", "RL"})

STATUSES: Final[tuple[str, ...]] = ("active", "abandoned", "planned", "proposed")

#: Point feature (特征): canonical name <- names seen in survey tables.
FEATURES: Final[dict[str, tuple[str, ...]]] = {
    "tee": ("三通", "tee"),
    "cross": ("四通", "cross"),
    "elbow": ("弯头", "拐点", "转折点", "elbow", "bend"),
    "straight": ("直线点", "直通", "straight"),
    "reducer": ("变径", "reducer"),
    "material_change": ("变材", "material change", "material_change"),
    "stub": ("预留口", "stub"),
    "riser": ("出地", "上杆", "riser"),
    "service_entry": ("进楼", "入户", "service entry", "service_entry"),
    "end": ("起讫点", "终点", "起点", "end"),
    "unsurveyed": ("非普查", "unsurveyed"),
    "multi": ("多通", "五通", "multi"),
}

#: Connections a feature implies (数据检查: tee 3, cross 4, end 1, straight 2).
FEATURE_DEGREE: Final[dict[str, int]] = {
    "tee": 3, "cross": 4, "end": 1, "straight": 2, "elbow": 2, "reducer": 2,
    "material_change": 2, "service_entry": 1, "stub": 1, "riser": 1,
}

#: Appurtenance (附属物): canonical name <- names seen in survey tables.
APPURTENANCES: Final[dict[str, tuple[str, ...]]] = {
    "valve": ("阀门", "阀", "valve"),
    "valve_chamber": ("阀门井", "阀井", "valve chamber", "valve_chamber"),
    "manhole": ("检修井", "检查井", "窨井", "manhole"),
    "hydrant": ("消火栓", "消防栓", "hydrant"),
    "meter": ("水表", "水表井", "meter"),
    "air_valve": ("排气阀", "air valve", "air_valve"),
    "drain_valve": ("排污阀", "drain valve", "drain_valve"),
    "gully": ("雨水箅", "雨篦", "雨水口", "gully"),
    "regulator": ("调压箱", "regulator"),
    "transformer": ("变压器", "transformer"),
    "cable_manhole": ("人孔", "cable manhole", "cable_manhole"),
    "handhole": ("手孔", "handhole"),
    "outfall": ("出水口", "排放口", "outfall"),
    "water_source": ("水源", "water source", "water_source"),
    "water_plant": ("水厂", "water plant", "water_plant"),
    "booster_station": ("加压站", "泵站", "booster station", "booster_station"),
    "gas_station": ("调压站", "门站", "gas station", "gas_station"),
    "heat_source": ("热源", "换热站", "heat source", "heat_source"),
    "tank": ("水塔", "水池", "tank"),
}

#: Appurtenances that feed a network (survey tables have no standard source mark).
SOURCE_APPURTENANCES: Final[dict[str, str]] = {
    "water_source": "JS", "water_plant": "JS", "booster_station": "JS", "tank": "JS",
    "gas_station": "RQ", "heat_source": "RL",
}
#: Appurtenances that hold isolation valves.
VALVE_APPURTENANCES: Final[frozenset[str]] = frozenset({"valve", "valve_chamber"})


def map_distinct(values: pd.Series, fn) -> pd.Series:
    """Apply ``fn`` (a function over a Series of distinct trimmed texts) once per distinct value.

    Survey columns repeat a handful of words a million times: factorising first turns a
    million string operations into a few dozen.
    """
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    distinct = pd.Series(list(uniques) + [None], dtype=object).fillna("").astype(str).str.strip()
    result = fn(distinct.astype(object))
    per_value = np.empty(len(distinct), dtype=object)
    per_value[:] = list(result)  # element-wise: results may be tuples
    taken = per_value[np.where(codes < 0, len(uniques), codes)]
    return pd.Series(taken, index=values.index, dtype=object)


def _lookup(table: dict[str, tuple[str, ...]]) -> dict[str, str]:
    return {alias.lower(): canon for canon, aliases in table.items() for alias in aliases}


_FEATURE_LOOKUP: Final = _lookup(FEATURES)
_APPURTENANCE_LOOKUP: Final = _lookup(APPURTENANCES)


def canonical_feature(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Map raw 特征 values to canonical names; returns (canonical, unknown mask)."""
    return _canonical(values, _FEATURE_LOOKUP)


def canonical_appurtenance(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Map raw 附属物 values to canonical names; returns (canonical, unknown mask)."""
    return _canonical(values, _APPURTENANCE_LOOKUP)


def _canonical(values: pd.Series, lookup: dict[str, str]) -> tuple[pd.Series, pd.Series]:
    def canon(distinct: pd.Series) -> list[tuple[str | None, bool]]:
        return [(lookup.get(v.lower(), v), v.lower() not in lookup) if v else (None, False) for v in distinct]

    pairs = map_distinct(values, canon)
    return (pd.Series([p[0] for p in pairs], index=values.index, dtype=object),
            pd.Series([p[1] for p in pairs], index=values.index, dtype=bool))


def utilities_named(text: str) -> list[tuple[str, str | None]]:
    """The utilities, as (code, subtype or None), a search text names: a code (``PS``, ``ys``),
    a Chinese name or part of one (``排水``, ``雨水管``), or the start of an English name.

    >>> utilities_named("PS"), utilities_named("雨水管"), utilities_named("drain"), utilities_named("PS12")
    ([('PS', None)], [('PS', 'YS')], [('PS', None)], [])
    """
    t = text.strip()
    out: list[tuple[str, str | None]] = []

    def add(code: str) -> None:
        code = "TX" if code == "DX" else code  # 电信 is telecom
        pair = (code, None) if code in UTILITIES else (SUBTYPE_PARENT[code], code) if code in SUBTYPE_PARENT else None
        if pair is not None and pair not in out:
            out.append(pair)

    add(t.upper())
    if t and not t.isascii():
        for name, code in _UTILITY_ZH.items():
            if name in t or t in name:
                add(code)
    elif len(t) >= 3:
        low = t.lower()
        for u in UTILITIES.values():
            if any(word.startswith(low) for word in u.name_en.split()) or u.name_en.startswith(low):
                add(u.code)
    return out


def name_zh(code: str) -> str:
    """The Chinese name of a utility or subtype code.

    >>> name_zh("PS"), name_zh("YS"), name_zh("XX")
    ('排水', '雨水', '')
    """
    if code in UTILITIES:
        return UTILITIES[code].name_zh
    return next((name for name, c in _UTILITY_ZH.items() if c == code), "")


def parse_utility(values: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Split utility codes into (parent code, subtype, unknown mask).

    Accepts parent codes (``JS``), subtype codes (``YS``) and Chinese names.

    >>> p, s, bad = parse_utility(pd.Series(["JS", "ys", "污水", "??"]))
    >>> list(p), list(s), bad.tolist()
    (['JS', 'PS', 'PS', None], [None, 'YS', 'WS', None], [False, False, False, True])
    """
    def classify(distinct: pd.Series) -> list[tuple[str | None, str | None]]:
        out = []
        for v in distinct:
            code = _UTILITY_ZH.get(v, v.upper())
            if code == "DX":  # 电信 is telecom
                code = "TX"
            out.append((code, None) if code in UTILITIES
                       else (SUBTYPE_PARENT[code], code) if code in SUBTYPE_PARENT else (None, None))
        return out

    pairs = map_distinct(values, classify)
    parent = pd.Series([p[0] for p in pairs], index=values.index, dtype=object)
    subtype = pd.Series([p[1] for p in pairs], index=values.index, dtype=object)
    return parent, subtype, parent.isna().to_numpy()


class DepthReference:
    """What a surveyed depth is measured to."""

    TOP = "top"  # 管顶: top of pipe or duct bank
    INVERT = "invert"  # 管内底: inner bottom (drainage)


def depth_reference(parent: np.ndarray) -> np.ndarray:
    """Depth reference per utility: drainage to the invert, all others to the top."""
    return np.where(np.isin(parent, list(GRAVITY_UTILITIES)), DepthReference.INVERT, DepthReference.TOP)


_SIZE_RE: Final = re.compile(
    r"^\s*(?:(?:DN|De|D|Φ|φ|Ø|ø|ф)\s*)?(?P<d>\d+(?:\.\d+)?)\s*(?:mm)?\s*$"
    r"|^\s*(?P<w>\d+(?:\.\d+)?)\s*[Xx×*＊]\s*(?P<h>\d+(?:\.\d+)?)\s*(?:mm)?\s*$",
    re.IGNORECASE,
)


def parse_sizes(values: pd.Series) -> pd.DataFrame:
    """Parse 管径/断面 strings into ``diameter_mm``, ``width_mm``, ``height_mm``, ``bad``.

    Circular: ``300``, ``DN300``, ``Φ300``, ``D800``; rectangular: ``1000X800``, ``1000×800``.
    Empty sizes are not bad (they are reported separately); unparseable ones are.

    >>> parse_sizes(pd.Series(["DN300", "1000×800", "abc", None])).to_dict("list")["diameter_mm"]
    [300.0, nan, nan, nan]
    """
    nan = float("nan")

    def parse(v: str) -> tuple[float, float, float, bool]:
        if not v:
            return (nan, nan, nan, False)
        m = _SIZE_RE.match(v)
        if m is None:
            return (nan, nan, nan, True)
        if m.group("d") is not None:
            d = float(m.group("d"))
            return (d, nan, nan, d <= 0)
        w, h = float(m.group("w")), float(m.group("h"))
        return (nan, w, h, w <= 0 or h <= 0)

    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    distinct = [parse(str(v).strip()) for v in uniques] + [parse("")]
    table = np.array([d[:3] for d in distinct], dtype=float).reshape(-1, 3)
    bad = np.array([d[3] for d in distinct], dtype=bool)
    take = np.where(codes < 0, len(uniques), codes)
    out = pd.DataFrame(table[take], columns=["diameter_mm", "width_mm", "height_mm"], index=values.index)
    out["bad"] = bad[take]
    return out
