"""Placement: twin CRS -> ECEF -> ENU, checked against pyproj; pipes at their surveyed depth."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from pyproj import Transformer

from tests.tiles.conftest import GEOID_OFFSET_M
from tests.tiles.gltf_reader import read_glb
from tiles.placement import Z_UP_TO_Y_UP, Frame

CRS = "EPSG:4548"
TO_ECEF = Transformer.from_crs("EPSG:4548", "EPSG:4978", always_xy=True)
ECEF_TO_LLH = Transformer.from_crs("EPSG:4978", "EPSG:4979", always_xy=True)
GK_TO_LLH = Transformer.from_crs("EPSG:4548", "EPSG:4979", always_xy=True)


def test_frame_round_trips_through_pyproj_ecef():
    frame = Frame.at(CRS, 409_000.0, 4_035_700.0, 30.0, geoid_offset_m=2.0)
    x = np.array([408_100.0, 409_000.0, 410_050.0, 409_500.0])
    y = np.array([4_035_000.0, 4_035_700.0, 4_036_400.0, 4_034_000.0])
    z = np.array([31.0, 30.0, 28.5, 40.0])
    enu = frame.to_enu(x, y, z)
    expected = np.column_stack(TO_ECEF.transform(x, y, z + 2.0))
    assert np.abs(frame.to_ecef(enu) - expected).max() < 1e-6
    # The origin is the frame's zero; up is the ellipsoid normal there.
    assert np.abs(frame.to_enu([409_000.0], [4_035_700.0], [30.0])).max() < 1e-6
    r = frame.rotation
    assert np.allclose(r.T @ r, np.eye(3), atol=1e-12)
    lon, lat = np.radians(frame.lon_deg), np.radians(frame.lat_deg)
    assert np.allclose(r[:, 2], [np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    # 2 m higher in the survey is 2 m up in the frame.
    up = frame.to_enu([409_000.0], [4_035_700.0], [32.0])
    assert abs(up[0, 2] - 2.0) < 1e-6 and np.abs(up[0, :2]).max() < 1e-6


def test_grid_north_is_not_true_north():
    # Meridian convergence: 1 km of grid north at the zone's edge is metres off true north.
    frame = Frame.at(CRS, 370_000.0, 4_035_000.0, 0.0)
    a, b = frame.to_enu([370_000.0, 370_000.0], [4_035_000.0, 4_036_000.0], [0.0, 0.0])
    assert abs(b[0] - a[0]) > 5.0


def _feature_vertices_ecef(tiles_dir, class_name, feature_id):
    """ECEF vertices of one feature, found in whichever tile holds it, and the tile's position
    quantization step (m; KHR_mesh_quantization: the node matrix's scale)."""
    tileset = json.loads((tiles_dir / "tileset.json").read_text())
    root = np.array(tileset["root"]["transform"]).reshape(4, 4).T
    y_up_to_z_up = np.linalg.inv(Z_UP_TO_Y_UP)
    for glb_path in sorted(tiles_dir.glob("t/**/*.glb")):
        glb = read_glb(glb_path)
        meta = glb.json["extensions"]["EXT_structural_metadata"]
        tables = meta["propertyTables"]
        found = []
        for prim in glb.json["meshes"][0]["primitives"]:
            fid = prim["extensions"]["EXT_mesh_features"]["featureIds"][0]
            table = tables[fid["propertyTable"]]
            if table["class"] != class_name:
                continue
            ids = glb.strings(table["properties"]["id"])
            if feature_id not in ids:
                continue
            row = ids.index(feature_id)
            pos = glb.accessor(prim["attributes"]["POSITION"]).astype(float)
            feat = glb.accessor(prim["attributes"]["_FEATURE_ID_0"])
            found.append(pos[feat == row])
        if found:
            pos = np.concatenate(found)
            h = np.column_stack([pos, np.ones(len(pos))])
            ecef = (root @ y_up_to_z_up @ glb.node_matrix() @ h.T).T[:, :3]
            return ecef, float(np.linalg.norm(glb.node_matrix()[:3, 0]))
    raise AssertionError(f"{class_name} {feature_id} is in no tile")


def _survey(demo_twin):
    folder = demo_twin.tiles_dir.parent / "survey"
    with open(folder / "points.csv", encoding="utf-8-sig") as f:
        points = {r["物探点号"]: r for r in csv.DictReader(f)}
    with open(folder / "segments.csv", encoding="utf-8-sig") as f:
        segments = list(csv.DictReader(f))
    return points, segments


@pytest.mark.parametrize(("utility", "depth_text", "reference"), [
    (("JS",), None, "top"),  # water: depth to the top of the pipe
    (("YS", "WS", "PS"), None, "invert"),  # drainage: depth to the invert
])
def test_pipe_lies_its_surveyed_depth_below_the_ground_point(demo_twin, demo_tiles, utility, depth_text,
                                                             reference):
    tiles_dir, _ = demo_tiles
    points, segments = _survey(demo_twin)
    seg = next(s for s in segments if s["管线类型"] in utility
               and (depth_text is None or s["起点埋深"] == depth_text))
    point = points[seg["起点号"]]
    end = points[seg["终点号"]]
    depth = float(seg["起点埋深"])
    # Survey X is northing, Y easting; heights are normal heights (+ the geoid offset).
    east, north, ground = float(point["Y"]), float(point["X"]), float(point["地面高程"])
    ground_llh = GK_TO_LLH.transform(east, north, ground + GEOID_OFFSET_M)
    ecef, step = _feature_vertices_ecef(tiles_dir, "pipe", f"{seg['起点号']}-{seg['终点号']}")
    assert step < 0.02  # the demo's tiles: quantized on a grid finer than 2 cm
    tol = 0.01 + step  # 1 cm, plus the grid step (half a step each way)
    lon, lat, h = ECEF_TO_LLH.transform(ecef[:, 0], ecef[:, 1], ecef[:, 2])
    # The vertices at the pipe's start: those nearest the start along the pipe.
    e2, n2 = float(end["Y"]), float(end["X"])
    start_ecef = np.array(TO_ECEF.transform(east, north, 0.0))
    end_ecef = np.array(TO_ECEF.transform(e2, n2, 0.0))
    axis = (end_ecef - start_ecef) / np.linalg.norm(end_ecef - start_ecef)
    along = (ecef - start_ecef) @ axis
    ring = along < along.min() + 0.002 + step
    # Horizontally at the survey point (within the pipe's radius)...
    d_mm = float(seg["管径/断面"].removeprefix("DN"))
    geod = np.hypot((np.array(lon)[ring].mean() - ground_llh[0]) * 111_320 * np.cos(np.radians(lat[0])),
                    (np.array(lat)[ring].mean() - ground_llh[1]) * 110_574)
    assert geod < tol
    # ...and its top (or invert) is `depth` below the ground point, within 1 cm (and the step).
    if reference == "top":
        assert abs((ground_llh[2] - depth) - np.max(np.array(h)[ring])) < tol
    else:
        assert abs((ground_llh[2] - depth) - np.min(np.array(h)[ring])) < tol
    assert np.ptp(np.array(h)[ring]) == pytest.approx(d_mm / 1000, abs=tol)
