"""Light tiles: quantized, meshopt-compressed GLB read back with meshoptimizer's own decoders;
coarse tiles (trunk mains only) with 4-sided tubes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import shapely
from scipy.spatial import cKDTree

from tests.tiles.conftest import validate_glbs
from tests.tiles.gltf_reader import Glb, read_glb
from tiles.content import build_content, is_coarse
from tiles.glb import QUANT_MAX, Primitive, PropertyColumn, PropertyTable, encode_glb
from tiles.mesh import OCTAHEDRON, circle_profile, instances, sweep
from tiles.placement import Frame, gltf_node_matrix

CRS = "EPSG:4547"  # CGCS2000 / 3-degree Gauss-Kruger CM 114E


def _tubes(rng: np.random.Generator, count: int, sides: int, spread: float):
    lengths = rng.integers(2, 6, count)
    pts = [np.cumsum(np.vstack([rng.uniform(-spread, spread, 3) * [1, 1, 0.02],
                                rng.uniform(-1, 1, (n - 1, 3)) * [3, 6, 1] + [8, 0, 0]]), axis=0)
           for n in lengths]
    starts = np.concatenate([[0], np.cumsum(lengths)])
    r = rng.uniform(0.05, 0.6, count)
    mesh, built = sweep(np.vstack(pts), starts, circle_profile(sides), np.column_stack([r, r]))
    assert built.all()
    return mesh


def _table(name: str, n: int) -> PropertyTable:
    return PropertyTable(name, name, [PropertyColumn("id", "STRING", [f"{name}-{i}" for i in range(n)])])


@pytest.fixture(scope="module")
def light_glb(tmp_path_factory):
    """One GLB of three primitives (the last over 65,535 vertices: 4-byte indices), its source."""
    rng = np.random.default_rng(18)
    small = _tubes(rng, 60, 12, 300.0)
    fittings = instances(OCTAHEDRON, rng.uniform(-300, 300, (40, 3)) * [1, 1, 0.02],
                         rng.uniform(0.1, 0.4, (40, 3)), np.arange(40))
    big = _tubes(rng, 1500, 16, 800.0)
    assert len(big.positions) > 0xFFFF
    meshes = [small, fittings, big]
    tables = [_table("pipe", 60), _table("node", 40), _table("trunk", 1500)]
    prims = [Primitive(m.positions, m.normals, m.indices, m.feature, i, i) for i, m in enumerate(meshes)]
    materials = [{"name": f"m{i}"} for i in range(3)]
    centre = np.array([120.0, -40.0, -2.0])  # the tile centre the node already translates by
    path = tmp_path_factory.mktemp("light") / "light.glb"
    path.write_bytes(encode_glb(prims, materials, tables, gltf_node_matrix(centre)))
    plain = encode_glb(prims, materials, tables, gltf_node_matrix(centre), compress=False)
    return path, meshes, centre, len(plain)


def test_decoded_geometry_is_the_source_within_the_grid_step(light_glb):
    path, meshes, centre, plain_bytes = light_glb
    glb = read_glb(path)
    assert set(glb.json["extensionsRequired"]) == {"KHR_mesh_quantization", "EXT_meshopt_compression"}
    assert path.stat().st_size < plain_bytes / 3
    # The node matrix undoes the grid: z-up -> y-up, tile centre, grid offset and one uniform scale.
    m = glb.node_matrix()
    step = float(np.linalg.norm(m[:3, 0]))
    lo = np.min([x.positions.min(axis=0) for x in meshes], axis=0)
    hi = np.max([x.positions.max(axis=0) for x in meshes], axis=0)
    assert step == pytest.approx((hi - lo).max() / 2 / QUANT_MAX)
    expected = gltf_node_matrix(centre)
    unscaled = m.copy()
    unscaled[:3, :3] /= step
    assert np.allclose(unscaled[:3, :3], np.array(expected).reshape(4, 4).T[:3, :3])
    for prim, src in zip(glb.json["meshes"][0]["primitives"], meshes, strict=True):
        q = glb.accessor(prim["attributes"]["POSITION"])
        assert q.dtype == np.int16 and np.abs(q).max() <= QUANT_MAX
        acc = glb.json["accessors"][prim["attributes"]["POSITION"]]
        assert acc["min"] == q.min(axis=0).tolist() and acc["max"] == q.max(axis=0).tolist()
        y_up = (m @ np.column_stack([q, np.ones(len(q))]).T).T[:, :3]
        pos = np.column_stack([y_up[:, 0], -y_up[:, 2], y_up[:, 1]])  # y-up back to the frame's z-up
        source = src.positions + centre
        # Normals (in the mesh's frame, like the quantized positions): octahedral 8-bit.
        nrm = glb.accessor(prim["attributes"]["NORMAL"])
        nrm = nrm / np.linalg.norm(nrm, axis=1, keepdims=True)
        # Every decoded vertex is one source vertex (flat-shaded corners repeat a position with
        # another normal: matched on both), within half a step on each axis.
        w = 10 * step
        _, match = cKDTree(np.hstack([source, src.normals * w])).query(np.hstack([pos, nrm * w]))
        assert len(np.unique(match)) == len(source) == len(pos)
        assert np.abs(pos - source[match]).max() <= step / 2 + 1e-6
        fid = glb.accessor(prim["attributes"]["_FEATURE_ID_0"])
        assert np.array_equal(fid, src.feature[match].astype(np.float32))
        assert np.degrees(np.arccos(np.clip(np.sum(nrm * src.normals[match], axis=1), -1, 1))).max() < 2.0
        # The same triangles, same winding (the index codec may rotate a triangle, never flip it).
        tri = match[glb.accessor(prim["indices"]).reshape(-1, 3)]
        assert glb.json["accessors"][prim["indices"]]["componentType"] == (5125 if len(meshes[2].positions) > 0xFFFF
                                                                              else 5123)

        def canonical(t: np.ndarray) -> np.ndarray:
            """Triangles rotated to start at their least index, sorted."""
            k = np.argmin(t, axis=1)
            rolled = np.stack([t[np.arange(len(t)), (k + j) % 3] for j in range(3)], axis=1)
            return rolled[np.lexsort(rolled.T[::-1])]

        assert np.array_equal(canonical(tri), canonical(src.indices.astype(np.int64)))


def test_light_glb_passes_the_khronos_validator(light_glb):
    path, *_ = light_glb
    [result] = validate_glbs([path])
    assert result["errors"] == 0 and result["messages"] == []


def _segments(rows: list[tuple[str, float, tuple]]) -> pd.DataFrame:
    x0, y0 = 500_000.0, 3_400_000.0
    lines = [shapely.LineString([(x0 + a[0], y0 + a[1], 40.0), (x0 + a[0] + 60, y0 + a[1] + 5, 39.5)])
             for _, _, a in rows]
    n = len(rows)
    return pd.DataFrame({
        "id": [f"s{i}" for i in range(n)], "utility": "JS", "subtype": "", "material": "DI", "built": "",
        "owner": "", "status": "active", "size": [f"DN{d:g}" for _, d, _ in rows], "depth_m": 1.5,
        "geom": shapely.to_wkb(lines, hex=True, flavor="extended", output_dimension=3),
        "shape": [s for s, _, _ in rows], "diameter_mm": [d for _, d, _ in rows],
        "width_mm": np.nan, "height_mm": np.nan,
    })


def test_tiles_of_trunk_mains_only_have_four_sided_tubes():
    frame = Frame.at(CRS, 500_000.0, 3_400_000.0, 40.0)
    no_nodes = pd.DataFrame({"is_source": pd.Series([], dtype=bool)})
    trunks = _segments([("circular", 800.0, (0, 0)), ("circular", 1200.0, (0, 30)), ("circular", 600.0, (0, 60))])
    assert is_coarse(trunks, no_nodes)
    coarse = build_content(trunks, no_nodes, frame)
    # A straight 4-sided tube: 4 quads and two 2-triangle caps.
    assert coarse.triangles == 3 * (4 * 2 + 2 * 2)
    mixed = pd.concat([trunks, _segments([("circular", 300.0, (0, 90))])], ignore_index=True)
    assert not is_coarse(mixed, no_nodes)
    fine = build_content(mixed, no_nodes, frame)
    # Beside a main, trunks keep 16 (>= DN800) and 12 sides, the DN300 main 12.
    assert fine.triangles == sum(2 * s + 2 * (s - 2) for s in (16, 16, 12, 12))
    assert Glb(coarse.glb).json["extensions"]["EXT_structural_metadata"]["propertyTables"][0]["count"] == 3
