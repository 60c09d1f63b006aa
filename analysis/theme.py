"""Thematic classes of pipes the 3D tiles do not carry (专题图): pressure class and survey accuracy.

The tiles' features carry id, utility, size, material, built, owner and status; a thematic map
by a field they lack is served as a compact class map instead: ``{"classes": [...],
"features": {pipe id: class index}}`` (:func:`theme_classes`), which the viewer joins to the
tiles' features by id. Pipes without a class (no pressure recorded) are left out.

- ``pressure``: gas pipes by the GB 50028 pressure classes
  (:func:`analysis.clearance.gas_pressure_class`); other pressurised pipes by nominal pressure
  (PN 0.6 / 1.0 / 1.6 MPa and above).
- ``accuracy``: each pipe's plan tolerance from its survey (CJJ 61-2017 limits,
  :func:`analysis.accuracy.segment_tolerances`): how far the pipe may lie from where it is
  drawn, so how close a clearance can be judged without a trial trench.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import sqlalchemy as sa

from analysis.accuracy import segment_tolerances
from analysis.clearance import gas_pressure_class
from analysis.network import load_network
from twin.errors import NotFound

__all__ = ["THEMES", "theme_classes", "pressure_classes", "accuracy_classes"]

#: Gas classes (GB 50028), then nominal pressure of the other networks: key, 中文, English.
PRESSURE_CLASSES = (
    ("low", "燃气 低压", "gas low < 0.01 MPa"),
    ("medium_b", "燃气 中压B", "gas medium B 0.01–0.2 MPa"),
    ("medium_a", "燃气 中压A", "gas medium A 0.2–0.4 MPa"),
    ("subhigh_b", "燃气 次高压B", "gas sub-high B 0.4–0.8 MPa"),
    ("subhigh_a", "燃气 次高压A", "gas sub-high A 0.8–1.6 MPa"),
    ("high_b", "燃气 高压B", "gas high B 1.6–2.5 MPa"),
    ("high_a", "燃气 高压A", "gas high A 2.5–4.0 MPa"),
    ("pn06", "公称压力 ≤ 0.6 MPa", "nominal ≤ 0.6 MPa"),
    ("pn10", "公称压力 0.6–1.0 MPa", "nominal 0.6–1.0 MPa"),
    ("pn16", "公称压力 1.0–1.6 MPa", "nominal 1.0–1.6 MPa"),
    ("pn_high", "公称压力 > 1.6 MPa", "nominal > 1.6 MPa"),
)
#: Upper bounds (m) of the plan tolerance classes, and their labels.
ACCURACY_CLASSES = (
    (0.05, "明显点 ≤ 0.05 m", "exposed ≤ 0.05 m"),
    (0.10, "平面限差 ≤ 0.10 m", "plan tolerance ≤ 0.10 m"),
    (0.20, "平面限差 0.10–0.20 m", "plan tolerance 0.10–0.20 m"),
    (0.30, "平面限差 0.20–0.30 m", "plan tolerance 0.20–0.30 m"),
    (np.inf, "平面限差 > 0.30 m", "plan tolerance > 0.30 m"),
)
_PN_BOUNDS = np.array([0.6, 1.0, 1.6])
#: The statuses a thematic map colours (the tiles draw these).
_STATUSES = ("active", "planned", "proposed", "abandoned")


def pressure_classes(utility: np.ndarray, pressure_mpa: np.ndarray) -> np.ndarray:
    """Index into :data:`PRESSURE_CLASSES` per pipe, -1 where no pressure is recorded.

    >>> pressure_classes(np.array(["RQ", "RQ", "JS", "JS", "DL"]), np.array([0.3, 0.005, 0.4, 2.0, np.nan])).tolist()
    [2, 0, 7, 10, -1]
    """
    p = np.asarray(pressure_mpa, dtype=float)
    gas = np.asarray(utility, dtype=object) == "RQ"
    keys = [k for k, *_ in PRESSURE_CLASSES]
    names = gas_pressure_class(p)
    out = np.full(p.shape, -1, dtype=np.int64)
    for k, name in enumerate(keys[:7]):
        out[gas & (names == name)] = k
    pressurised = ~gas & np.isfinite(p) & (p > 0)  # power and telecom carry voltage_kv instead
    out[pressurised] = 7 + np.searchsorted(_PN_BOUNDS, p[pressurised], side="left")
    return out


def accuracy_classes(plan_tolerance_m: np.ndarray) -> np.ndarray:
    """Index into :data:`ACCURACY_CLASSES` per pipe.

    >>> accuracy_classes(np.array([0.05, 0.1, 0.15, 0.25, 0.4])).tolist()
    [0, 1, 2, 3, 4]
    """
    bounds = np.array([b for b, *_ in ACCURACY_CLASSES])
    return np.searchsorted(bounds, np.round(np.asarray(plan_tolerance_m, dtype=float), 6), side="left")


#: The thematic maps served: name -> (title 中文, English).
THEMES = {"pressure": ("压力等级", "pressure class"), "accuracy": ("探测精度", "survey accuracy (CJJ 61)")}


def theme_classes(conn: sa.Connection, name: str) -> dict:
    """The class of every pipe in the thematic map ``name`` (one of :data:`THEMES`)."""
    if name not in THEMES:
        raise NotFound(f"no thematic map {name!r}: one of {', '.join(THEMES)}")
    net = load_network(conn, include=_STATUSES)
    segs = net.segments
    if name == "pressure":
        idx = pressure_classes(segs["utility"].astype(str).to_numpy(object),
                               pd.to_numeric(segs["pressure_mpa"], errors="coerce").to_numpy(float))
        classes = [{"key": k, "zh": zh, "en": en} for k, zh, en in PRESSURE_CLASSES]
    else:
        plan, _ = segment_tolerances(segs, net.nodes, net.vertices, net.offsets)
        idx = accuracy_classes(plan)
        classes = [{"key": f"le_{b:g}", "zh": zh, "en": en, "max_m": None if np.isinf(b) else b}
                   for b, zh, en in ACCURACY_CLASSES]
    known = idx >= 0
    ids = segs["id"].astype(str).to_numpy(object)[known]
    zh, en = THEMES[name]
    return {"name": name, "title": {"zh": zh, "en": en}, "classes": classes,
            "features": dict(zip(ids.tolist(), idx[known].tolist(), strict=True)),
            "counts": np.bincount(idx[known], minlength=len(classes)).tolist()}
