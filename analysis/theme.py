"""Thematic classes of pipes the 3D tiles do not carry (专题图): pressure class, survey accuracy
and criticality.

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
- ``criticality``: customers who lose supply when the pipe's valve segment is shut off, from
  the stored criticality results (:mod:`analysis.criticality`: read as stored, never computed
  here; ``state`` says when and whether the network moved since). Pipes with no result (gravity
  and cable networks, or nothing computed yet) are 未评估 not assessed (``none``).

Every answer names what its pipes without a class are (``none``: 中文, English).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import sqlalchemy as sa

from analysis.accuracy import segment_tolerances
from analysis.clearance import gas_pressure_class
from analysis.criticality import stored_state
from analysis.network import load_network
from twin.errors import NotFound

__all__ = ["THEMES", "theme_classes", "theme_version", "pressure_classes", "accuracy_classes",
           "criticality_classes"]

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
#: Lower bounds of the customers cut off by a shutoff of the pipe's segment, and their labels
#: (the viewer's criticality layer uses the same classes).
CRITICALITY_CLASSES = (
    (0, "停水 0 户", "0 customers cut off"),
    (1, "停水 1–9 户", "1–9 customers cut off"),
    (10, "停水 10–49 户", "10–49 customers cut off"),
    (50, "停水 50–199 户", "50–199 customers cut off"),
    (200, "停水 ≥ 200 户", "≥ 200 customers cut off"),
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


def criticality_classes(customers: np.ndarray) -> np.ndarray:
    """Index into :data:`CRITICALITY_CLASSES` per pipe from the customers its shutoff cuts off.

    >>> criticality_classes(np.array([0, 1, 9, 10, 49, 50, 199, 200, 5000])).tolist()
    [0, 1, 1, 2, 2, 3, 3, 4, 4]
    """
    bounds = np.array([b for b, *_ in CRITICALITY_CLASSES])
    return np.searchsorted(bounds, np.asarray(customers, dtype=float), side="right") - 1


#: The thematic maps served: name -> (title 中文, English).
THEMES = {"pressure": ("压力等级", "pressure class"), "accuracy": ("探测精度", "survey accuracy (CJJ 61)"),
          "criticality": ("关阀影响", "criticality (customers cut off)")}
#: What the pipes without a class are, per map.
_NONE = {"pressure": ("无数据", "not recorded"), "accuracy": ("无数据", "not recorded"),
         "criticality": ("未评估", "not assessed")}


def theme_version(conn: sa.Connection, name: str) -> str:
    """What a map depends on besides the network: the stored criticality run ('' for the others),
    so a cache keyed by the network's change mark can add it."""
    if name != "criticality":
        return ""
    state = stored_state(conn)
    return f"{state.get('mark')}@{state.get('computed_at')}"


def _criticality(conn: sa.Connection) -> tuple[np.ndarray, np.ndarray, dict]:
    """Pipe ids and class indices from the stored results, and the stored run's state."""
    rows = conn.execute(sa.text(
        "SELECT p.pipe_id, s.customers FROM criticality_pipe p JOIN criticality_segment s USING (segment)")).all()
    ids = np.array([r[0] for r in rows], dtype=object)
    idx = criticality_classes(np.array([r[1] for r in rows], dtype=float))
    return ids, idx, stored_state(conn)


def theme_classes(conn: sa.Connection, name: str) -> dict:
    """The class of every pipe in the thematic map ``name`` (one of :data:`THEMES`)."""
    if name not in THEMES:
        raise NotFound(f"no thematic map {name!r}: one of {', '.join(THEMES)}",
                       zh=f"没有专题图 {name!r}：取 {'、'.join(THEMES)} 之一")
    zh, en = THEMES[name]
    none = {"zh": _NONE[name][0], "en": _NONE[name][1]}
    if name == "criticality":
        ids, idx, state = _criticality(conn)
        classes = [{"key": f"ge_{b}", "zh": zh_, "en": en_, "min_customers": b} for b, zh_, en_ in CRITICALITY_CLASSES]
        return {"name": name, "title": {"zh": zh, "en": en}, "classes": classes, "none": none,
                "features": dict(zip(ids.tolist(), idx.tolist(), strict=True)),
                "counts": np.bincount(idx, minlength=len(classes)).tolist(), "state": state}
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
    return {"name": name, "title": {"zh": zh, "en": en}, "classes": classes, "none": none,
            "features": dict(zip(ids.tolist(), idx[known].tolist(), strict=True)),
            "counts": np.bincount(idx[known], minlength=len(classes)).tolist()}
