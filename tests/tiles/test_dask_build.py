"""Tile builds on a Dask LocalCluster: the same tileset, byte for byte, as the single-machine build.

Two worker processes read their tiles' features from the twin by id and write the contents;
the demo district's tileset built by the local process pool (``demo_tiles``) is the reference.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.analysis.test_dask_scan import shared_client
from tiles.build import _mesh_batch, build_tileset
from tiles.placement import Frame
from twin.errors import ConfigError


@pytest.fixture(scope="module")
def client(request, demo_twin):
    return shared_client(request, demo_twin)  # one LocalCluster per test process


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted((folder / "t").rglob("*.glb"))}


def test_dask_build_equals_the_local_build(demo_twin, demo_tiles, client, tmp_path):
    local_dir, local = demo_tiles
    heard: list[tuple[str, int, int]] = []
    report = build_tileset(demo_twin, out_dir=tmp_path, full=True, cluster=client,
                           progress=lambda stage, done, total: heard.append((stage, done, total)))
    assert report["tiles_written"] == local["tiles_written"] == report["tiles"] >= 4
    ours, theirs = _contents(tmp_path), _contents(local_dir)
    assert ours.keys() == theirs.keys() and len(ours) == report["tiles"]
    assert [k for k in ours if ours[k] != theirs[k]] == []  # every content byte for byte
    assert json.loads((tmp_path / "tileset.json").read_text()) == json.loads((local_dir / "tileset.json").read_text())
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["tiles"] == json.loads((local_dir / "manifest.json").read_text())["tiles"]
    assert not list(tmp_path.glob(".dask-*"))  # the workers' marker is gone
    meshing = [h for h in heard if h[0] == "meshing tiles"]
    assert meshing[-1][1] == meshing[-1][2] == report["tiles_written"]

    # nothing changed since: the next build keeps every tile
    again = build_tileset(demo_twin, out_dir=tmp_path, cluster=client)
    assert (again["tiles_written"], again["tiles_kept"]) == (0, report["tiles"])


def test_a_worker_that_cannot_see_the_folder_says_so(demo_twin, tmp_path):
    frame = Frame.at(demo_twin.crs, 500000.0, 3400000.0, 0.0)
    with pytest.raises(ConfigError, match="not visible"):
        _mesh_batch(([], [], []), demo_twin, frame, str(tmp_path), ".dask-missing")
