"""The tileset as built: tree invariants, report, CLI, and incremental rebuilds."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from ingest.pipeline import ingest_survey
from ingest.sample import generate_district
from tests.tiles.conftest import tileset_tiles
from tests.tiles.gltf_reader import read_glb
from tiles.build import build_tileset
from tiles.placement import Z_UP_TO_Y_UP
from tiles.style import APPEAR_DISTANCE_M, COARSE_DEPTH, geometric_error_for_distance
from twin.domain import SOURCE_APPURTENANCES


def _box_contains(box, points, tol=1e-3):
    c = np.array(box[:3])
    axes = np.array(box[3:]).reshape(3, 3)
    half = np.linalg.norm(axes, axis=1)
    local = (points - c) @ (axes / half[:, None]).T
    return np.all(np.abs(local) <= half + tol)


def test_tree_invariants(demo_tiles):
    tiles_dir, report = demo_tiles
    tileset = json.loads((tiles_dir / "tileset.json").read_text())
    assert tileset["asset"]["version"] == "1.1"
    root = tileset["root"]
    transform = np.array(root["transform"]).reshape(4, 4).T
    assert np.allclose(transform[:3, :3].T @ transform[:3, :3], np.eye(3), atol=1e-12)
    assert 6.3e6 < np.linalg.norm(transform[:3, 3]) < 6.4e6  # origin on the earth's surface
    assert tileset["geometricError"] >= root["geometricError"]
    y_up_to_z_up = np.linalg.inv(Z_UP_TO_Y_UP)
    contents = 0
    for tile, parent in tileset_tiles(tileset):
        assert tile["refine"] == "ADD" and "box" in tile["boundingVolume"]
        if parent is not None:
            assert tile["geometricError"] <= parent["geometricError"]
            corners = np.array(tile["boundingVolume"]["box"][:3]) + np.array(
                [[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * np.diag(
                np.array(tile["boundingVolume"]["box"][3:]).reshape(3, 3))
            assert _box_contains(parent["boundingVolume"]["box"], corners)
        if not tile.get("children"):
            assert tile["geometricError"] == 0
        if "content" in tile:
            contents += 1
            glb = read_glb(tiles_dir / tile["content"]["uri"])
            m = y_up_to_z_up @ glb.node_matrix()
            for prim in glb.json["meshes"][0]["primitives"]:
                pos = glb.accessor(prim["attributes"]["POSITION"]).astype(float)
                enu = (m[:3, :3] @ pos.T).T + m[:3, 3]
                assert _box_contains(tile["boundingVolume"]["box"], enu)
                assert _box_contains(tile["content"]["boundingVolume"]["box"], enu)
                # Tight: accessor min/max match the data.
                assert np.allclose(glb.json["accessors"][prim["attributes"]["POSITION"]]["min"], pos.min(axis=0))
    assert contents == report["tiles"] == len(list(tiles_dir.glob("t/**/*.glb")))


def test_levels_appear_at_their_distances(demo_tiles):
    """Trunk mains are in the root; services and fittings only in tiles refined into close up."""
    tiles_dir, _ = demo_tiles
    tileset = json.loads((tiles_dir / "tileset.json").read_text())
    root = tileset["root"]
    glb = read_glb(tiles_dir / root["content"]["uri"])
    meta = glb.json["extensions"]["EXT_structural_metadata"]
    pipes = next(t for t in meta["propertyTables"] if t["class"] == "pipe")
    sizes = glb.strings(pipes["properties"]["size"])
    assert any(s in ("DN600", "DN800", "DN1000") for s in sizes)  # trunk mains in the root
    assert not any(s in ("DN25", "DN32", "DN50") for s in sizes)  # services not in the root
    nodes = next(t for t in meta["propertyTables"] if t["class"] == "node")
    kinds = set(glb.strings(nodes["properties"]["kind"]))
    assert kinds and kinds <= set(SOURCE_APPURTENANCES)  # of the fittings, only sources
    detail_error = geometric_error_for_distance(APPEAR_DISTANCE_M[2])
    for tile, parent in tileset_tiles(tileset):
        if parent is None or "content" not in tile:
            continue
        glb = read_glb(tiles_dir / tile["content"]["uri"])
        classes = {t["class"] for t in glb.json["extensions"]["EXT_structural_metadata"]["propertyTables"]}
        if "node" in classes:  # other fittings: refined into from their appearance distance
            assert parent["geometricError"] == pytest.approx(detail_error, abs=1e-3)


def test_sources_are_always_drawn_from_afar(demo_tiles):
    """Sources outrank every pipe in the coarsest tiles; a feature is never drawn from farther
    than its level's distance, and only trunk mains may be drawn as mains."""
    tiles_dir, _ = demo_tiles
    with np.load(tiles_dir / "manifest-features.npz") as z:
        level, drawn, tile, seg, keys = z["level"], z["drawn_level"], z["tile"], z["is_segment"], z["tile_keys"]
    depth = np.array([int(str(k).split("/")[0]) for k in keys])[tile]
    sources = ~seg & (level == 0)
    assert sources.any() and (drawn[sources] == 0).all() and (depth[sources] <= COARSE_DEPTH).all()
    assert (drawn >= level).all() and (drawn[level > 0] == level[level > 0]).all() and (drawn <= 2).all()
    assert np.array_equal(drawn == 0, (level == 0) & (depth <= COARSE_DEPTH))


def test_report_counts_what_was_written(demo_tiles):
    tiles_dir, report = demo_tiles
    files = list(tiles_dir.glob("t/**/*.glb"))
    assert report["tiles_written"] == report["tiles"] == len(files) and report["tiles_kept"] == 0
    assert report["bytes"] == sum(f.stat().st_size for f in files)
    triangles = 0
    for f in files:
        glb = read_glb(f)
        triangles += sum(glb.json["accessors"][p["indices"]]["count"] // 3
                         for p in glb.json["meshes"][0]["primitives"])
    assert report["triangles"] == triangles
    assert report["features"] == report["segments"] + report["nodes"] > 2000


def _twin(*args, schema):
    env = {**os.environ, "TWIN_DB_SCHEMA": schema}
    proc = subprocess.run([str(Path(sys.executable).with_name("twin")), *args], capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_cli_builds_and_reports_json(demo_twin, tmp_path):
    out = tmp_path / "cli_tiles"
    report = json.loads(_twin("tiles", "build", "--out", str(out), "--json", schema=demo_twin.db_schema))
    assert report["full"] and report["tiles_written"] == report["tiles"] > 0
    assert {"tiles_written", "tiles_kept", "features", "triangles", "bytes", "seconds"} <= set(report)
    assert (out / "tileset.json").exists()
    again = json.loads(_twin("tiles", "build", "--out", str(out), "--json", schema=demo_twin.db_schema))
    assert not again["full"] and again["tiles_written"] == 0 and again["tiles_kept"] == report["tiles"]
    forced = _twin("tiles", "build", "--out", str(out), "--full", schema=demo_twin.db_schema)
    assert "full build" in forced and f"{report['tiles']:,}" in forced


def _digests(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.glob("t/**/*.glb")}


def _pipe_rows(path):
    glb = read_glb(path)
    for t in glb.json["extensions"]["EXT_structural_metadata"]["propertyTables"]:
        if t["class"] == "pipe":
            cols = {k: glb.strings(v) for k, v in t["properties"].items() if k != "depth_m"}
            return {i: dict(zip(cols, vals, strict=True)) for i, vals in zip(cols["id"], zip(*cols.values(),
                                                                                                   strict=True),
                                                                                   strict=True)}
    return {}


def test_incremental_rebuild_touches_only_changed_tiles(twin_settings, twin_engine, tmp_path):
    generate_district(tmp_path / "survey", scale=1, seed=0)
    assert ingest_survey(tmp_path / "survey" / "points.csv", tmp_path / "survey" / "segments.csv",
                         twin_settings).status == "applied"
    out = tmp_path / "tiles"
    first = build_tileset(twin_settings, out_dir=out)
    assert first["full"] and first["tiles_written"] == first["tiles"]
    before = _digests(out)

    same = build_tileset(twin_settings, out_dir=out)
    assert not same["full"] and same["tiles_written"] == 0 and same["tiles_kept"] == first["tiles"]
    assert list(same["stages"]) == ["compare"]  # the change mark has not moved: nothing read
    assert _digests(out) == before

    # Change the material of a few services (detail tiles) in one small area.
    with twin_engine.begin() as conn:
        changed = conn.execute(sa.text("""
            UPDATE segment SET material = 'PE100 (changed)'
             WHERE id IN (SELECT id FROM current_segment WHERE diameter_mm < 100 ORDER BY id LIMIT 3)
            RETURNING id""")).scalars().all()
    assert len(changed) == 3
    features = np.load(out / "manifest-features.npz")
    blob, offsets = features["id_bytes"].tobytes(), features["id_offsets"]
    ids = np.array([blob[a:b].decode() for a, b in zip(offsets[:-1], offsets[1:], strict=True)])
    tile_names = features["tile_keys"].astype(str)[features["tile"]]
    tile_of = dict(zip(ids[features["is_segment"]], tile_names[features["is_segment"]], strict=True))
    expected = {tile_of[i] for i in changed}
    inc = build_tileset(twin_settings, out_dir=out)
    assert not inc["full"] and "index" not in inc["stages"]  # no re-tiling: the tiles stay put
    assert 1 <= inc["tiles_written"] <= len(expected) + 2 and inc["tiles_written"] < inc["tiles"]
    assert inc["tiles_kept"] == inc["tiles"] - inc["tiles_written"]
    after = _digests(out)
    rewritten = {k for k in after if after[k] != before.get(k)}
    assert {f"t/{t}.glb" for t in expected} <= rewritten
    assert len(rewritten) <= inc["tiles_written"]
    for t in expected:
        rows = _pipe_rows(out / f"t/{t}.glb")
        assert all(rows[i]["material"] == "PE100 (changed)" for i in changed if tile_of[i] == t)

    # The incremental result is the full build's, byte for byte.
    full_out = tmp_path / "full"
    build_tileset(twin_settings, out_dir=full_out, full=True)
    assert _digests(full_out) == after

    # A customer renamed: its service connection's tile only, still without re-tiling.
    with twin_engine.begin() as conn:
        node_id = conn.execute(sa.text("UPDATE customer SET name = 'renamed 改名' WHERE id = "
                                       "(SELECT min(id) FROM current_customer) RETURNING node_id")).scalar()
    node_tile = dict(zip(ids[~features["is_segment"]], tile_names[~features["is_segment"]], strict=True))[node_id]
    named = build_tileset(twin_settings, out_dir=out)
    assert "index" not in named["stages"] and named["tiles_written"] == 1
    glb = read_glb(out / f"t/{node_tile}.glb")
    table = next(t for t in glb.json["extensions"]["EXT_structural_metadata"]["propertyTables"]
                 if t["class"] == "node")
    names = dict(zip(glb.strings(table["properties"]["id"]), glb.strings(table["properties"]["name"]), strict=True))
    assert names[node_id] == "renamed 改名"

    # Retiring a pipe drops it from its tile.
    gone = changed[0]
    with twin_engine.begin() as conn:
        conn.execute(sa.text("UPDATE segment SET retired_at = now() WHERE id = :id"), {"id": gone})
    retired = build_tileset(twin_settings, out_dir=out)
    assert "index" in retired["stages"]  # a feature left: re-tiled from the whole index
    assert 1 <= retired["tiles_written"] < retired["tiles"]
    assert gone not in _pipe_rows(out / f"t/{tile_of[gone]}.glb")
    assert retired["segments"] == first["segments"] - 1
