"""The water network (utility JS) as an EPANET ``.inp``, written by wntr, and its valve layer.

- Junctions are the water points, at their ground elevation (normal heights, m), with the
  demand of the customers on them where known.
- Pipes are the active water segments (abandoned and planned ones carry no water): length
  (m) and diameter (mm; a box section's hydraulic diameter 2wh/(w+h)), Hazen-Williams
  roughness :data:`ROUGHNESS` (the twin keeps none).
- Sources become reservoirs at their ground elevation (a tank kind: a tank there).
- Valves cannot be written in EPANET's own terms (an EPANET valve is a link); they are written
  beside the ``.inp`` as a WNTR valve layer (``<name>.valves.csv``: valve id, ``link``,
  ``node``), which :func:`wntr.metrics.topographic.valve_segments` reads as it is.

Units are SI (flow in L/s). Pipes without a size get :data:`PLACEHOLDER_DIAMETER_MM` and
points without a ground elevation 0 m; the export's report counts them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import shapely
import wntr

from twin.errors import InputError

__all__ = ["write_inp", "ROUGHNESS", "PLACEHOLDER_DIAMETER_MM", "TANK_KINDS", "valve_layer_path"]

#: Hazen-Williams C given to every pipe (the twin keeps no roughness): a middling value for
#: ductile iron and PE in service.
ROUGHNESS = 100.0
#: Diameter of a pipe whose size the survey did not give (EPANET needs one).
PLACEHOLDER_DIAMETER_MM = 100.0
#: Source kinds written as tanks; other sources (plants, wells, stations) are reservoirs.
TANK_KINDS = frozenset({"tank"})


def valve_layer_path(inp: Path) -> Path:
    """Where the valve layer of ``inp`` goes: ``net.inp`` -> ``net.valves.csv``."""
    return inp.with_name(inp.stem + ".valves.csv")


def _diameters_m(seg: pd.DataFrame) -> tuple[np.ndarray, int]:
    d = seg["diameter_mm"].to_numpy(dtype=float, na_value=np.nan)
    w = seg["width_mm"].to_numpy(dtype=float, na_value=np.nan)
    h = seg["height_mm"].to_numpy(dtype=float, na_value=np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        box = 2 * w * h / (w + h)
    d = np.where(np.isfinite(d) & (d > 0), d, box)
    missing = ~(np.isfinite(d) & (d > 0))
    return np.where(missing, PLACEHOLDER_DIAMETER_MM, d) / 1000.0, int(missing.sum())


def write_inp(out: Path, points: pa.Table, segments: pa.Table, valves: pa.Table, sources: pa.Table,
              customers: pa.Table) -> tuple[list[Path], dict]:
    """Write the EPANET model of the water rows of the tables; returns files and what was assumed."""
    seg = segments.to_pandas()
    seg = seg[(seg["utility"] == "JS") & seg["status"].fillna("active").eq("active")]
    if seg.empty:
        raise InputError("no water (JS) pipes to write as EPANET in this selection",
                         zh="所选范围内没有可写成 EPANET 的给水（JS）管线")
    pts = points.to_pandas()
    pts = pts[pts["id"].isin(seg["from_node"]) | pts["id"].isin(seg["to_node"])]
    xy = shapely.get_coordinates(shapely.from_wkb(pts["geometry"].to_numpy()))
    ground = pts["ground_z"].to_numpy(dtype=float, na_value=np.nan)
    no_ground = int(np.isnan(ground).sum())
    ground = np.nan_to_num(ground, nan=0.0)
    src = sources.to_pandas().drop_duplicates("node_id")
    src = src[src["node_id"].isin(pts["id"])]
    demand = customers.to_pandas().groupby("node_id")["demand"].sum(min_count=1)
    wn = wntr.network.WaterNetworkModel()
    kinds = dict(zip(src["node_id"], src["kind"], strict=True))
    for nid, x, y, z in zip(pts["id"], xy[:, 0], xy[:, 1], ground, strict=True):
        kind = kinds.get(nid)
        if kind is None:
            base = float(demand.get(nid, 0.0) or 0.0) / 1000.0  # L/s -> m3/s
            wn.add_junction(nid, base_demand=base, elevation=float(z), coordinates=(x, y))
        elif kind in TANK_KINDS:
            wn.add_tank(nid, elevation=float(z), init_level=1.0, min_level=0.0, max_level=5.0,
                        diameter=10.0, coordinates=(x, y))
        else:
            wn.add_reservoir(nid, base_head=float(z), coordinates=(x, y))
    diameter, no_size = _diameters_m(seg)
    for sid, a, b, length, d in zip(seg["id"], seg["from_node"], seg["to_node"],
                                    seg["length_m"].to_numpy(dtype=float, na_value=np.nan), diameter,
                                    strict=True):
        wn.add_pipe(sid, a, b, length=float(length) if np.isfinite(length) else 1.0,
                    diameter=float(d), roughness=ROUGHNESS)
    out.parent.mkdir(parents=True, exist_ok=True)
    wntr.network.write_inpfile(wn, str(out), units="LPS")
    layer = valves.to_pandas()
    layer = layer[layer["segment_id"].isin(seg["id"]) & layer["node_id"].isin(pts["id"])]
    layer = pd.DataFrame({"link": layer["segment_id"].to_numpy(), "node": layer["node_id"].to_numpy()},
                         index=pd.Index(layer["id"].to_numpy(), name="valve"))
    layer.to_csv(valve_layer_path(out), encoding="utf-8")
    assumed = {"junctions": wn.num_junctions, "reservoirs": wn.num_reservoirs, "tanks": wn.num_tanks,
               "pipes": wn.num_pipes, "valves": len(layer),
               "placeholder_diameters": no_size, "zero_elevations": no_ground}
    return [out, valve_layer_path(out)], assumed
