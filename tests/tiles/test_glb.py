"""Every GLB of the demo tileset: Khronos validator, GLB layout, feature ids and property tables."""

from __future__ import annotations

import struct

import numpy as np
import sqlalchemy as sa

from tests.tiles.conftest import validate_glbs
from tests.tiles.gltf_reader import read_glb
from tiles.content import NODE_PROPERTIES, PIPE_PROPERTIES
from twin.db import open_twin


def test_every_glb_passes_the_khronos_validator(demo_tiles):
    tiles_dir, report = demo_tiles
    paths = sorted(tiles_dir.glob("t/**/*.glb"))
    assert len(paths) == report["tiles"] > 1
    results = validate_glbs(paths)
    assert len(results) == len(paths)
    assert [(r["file"], r["messages"]) for r in results if r["errors"]] == []


def test_glb_chunks_are_padded_to_four_bytes(demo_tiles):
    tiles_dir, _ = demo_tiles
    for path in tiles_dir.glob("t/**/*.glb"):
        data = path.read_bytes()
        magic, version, length = struct.unpack_from("<4sII", data)
        assert (magic, version, length) == (b"glTF", 2, len(data)) and length % 4 == 0
        glb = read_glb(path)
        assert [c[0] for c in glb.chunks] == [0x4E4F534A, 0x004E4942]
        for _, start, size in glb.chunks:
            assert start % 4 == 0 and size % 4 == 0
        assert glb.json["buffers"][0]["byteLength"] <= len(glb.bin) < glb.json["buffers"][0]["byteLength"] + 4
        buffers = glb.json["buffers"]
        for view in glb.json["bufferViews"]:
            # EXT_structural_metadata wants 8-byte aligned views; vertex data 4-byte aligned.
            assert view.get("byteOffset", 0) % 8 == 0
            assert view.get("byteOffset", 0) + view["byteLength"] <= buffers[view["buffer"]]["byteLength"]
            ext = view.get("extensions", {}).get("EXT_meshopt_compression")
            if view["buffer"] == 0:
                assert ext is None and view.get("byteOffset", 0) + view["byteLength"] <= len(glb.bin)
            else:  # the fallback buffer has no data: the view is compressed into the GLB buffer
                assert buffers[view["buffer"]]["extensions"]["EXT_meshopt_compression"] == {"fallback": True}
                assert "uri" not in buffers[view["buffer"]]
                assert ext["buffer"] == 0 and ext["byteOffset"] % 4 == 0
                assert ext["byteOffset"] + ext["byteLength"] <= len(glb.bin)
                assert ext["count"] * ext["byteStride"] == view["byteLength"]


def test_feature_ids_index_their_property_tables(demo_tiles):
    tiles_dir, _ = demo_tiles
    for path in tiles_dir.glob("t/**/*.glb"):
        glb = read_glb(path)
        meta = glb.json["extensions"]["EXT_structural_metadata"]
        classes = meta["schema"]["classes"]
        assert set(classes["pipe"]["properties"]) == set(PIPE_PROPERTIES) if "pipe" in classes else True
        assert set(classes["node"]["properties"]) == set(NODE_PROPERTIES) if "node" in classes else True
        used = {i: set() for i in range(len(meta["propertyTables"]))}
        for prim in glb.json["meshes"][0]["primitives"]:
            fids = prim["extensions"]["EXT_mesh_features"]["featureIds"]
            assert len(fids) == 1 and fids[0]["attribute"] == 0
            table = meta["propertyTables"][fids[0]["propertyTable"]]
            ids = glb.accessor(prim["attributes"]["_FEATURE_ID_0"])
            assert np.all(ids == np.round(ids)) and ids.min() >= 0
            assert ids.max() < fids[0]["featureCount"] == table["count"]
            used[fids[0]["propertyTable"]] |= set(ids.astype(int).tolist())
            # Every triangle belongs to one feature.
            tri = glb.accessor(prim["indices"]).reshape(-1, 3)
            assert tri.max() < len(ids)
            assert np.all(ids[tri[:, 0]] == ids[tri[:, 1]]) and np.all(ids[tri[:, 0]] == ids[tri[:, 2]])
        for t, table in enumerate(meta["propertyTables"]):
            n = table["count"]
            assert used[t] == set(range(n))  # every row is drawn
            schema = classes[table["class"]]["properties"]
            for name, prop in table["properties"].items():
                if schema[name]["type"] == "STRING":
                    offsets = glb.string_offsets(prop)
                    assert len(offsets) == n + 1 and offsets[0] == 0 and np.all(np.diff(offsets.astype(np.int64)) >= 0)
                    assert offsets[-1] <= len(glb.view(prop["values"]))
                else:
                    assert len(glb.view(prop["values"])) == 4 * n


def test_each_feature_is_in_exactly_one_tile_with_its_attributes(demo_twin, demo_tiles):
    tiles_dir, report = demo_tiles
    rows: dict[str, list] = {"pipe": [], "node": []}
    for path in tiles_dir.glob("t/**/*.glb"):
        glb = read_glb(path)
        for table in glb.json["extensions"]["EXT_structural_metadata"]["propertyTables"]:
            cols = {k: glb.strings(v) for k, v in table["properties"].items() if k != "depth_m"}
            rows[table["class"]] += [dict(zip(cols, vals, strict=True))
                                     for vals in zip(*cols.values(), strict=True)]
            assert table["count"] <= 2000
    engine = open_twin(demo_twin)
    with engine.connect() as conn:
        segs = {r.id: r for r in conn.execute(sa.text(
            "SELECT id, utility, material, status, owner FROM current_segment"))}
        n_drawn = conn.execute(sa.text(
            "SELECT count(*) FROM current_node WHERE appurtenance IS NOT NULL OR feature = 'service_entry'"
        )).scalar()
        valves = {r[0] for r in conn.execute(sa.text("SELECT id FROM current_node WHERE appurtenance = 'valve'"))}
    engine.dispose()
    pipe_ids = [r["id"] for r in rows["pipe"]]
    assert len(pipe_ids) == len(set(pipe_ids)) == len(segs) == report["segments"]
    assert set(pipe_ids) == set(segs)
    for r in rows["pipe"]:
        s = segs[r["id"]]
        assert (r["utility"], r["material"], r["status"], r["owner"]) == (s.utility, s.material or "",
                                                                         s.status, s.owner or "")
    node_ids = [r["id"] for r in rows["node"]]
    assert len(node_ids) == len(set(node_ids)) == n_drawn == report["nodes"]
    assert {r["id"] for r in rows["node"] if r["kind"] == "valve"} == valves
