"""Fixtures of the tiles tests: the demo district in a schema of its own, built once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ingest.pipeline import ingest_survey
from ingest.sample import generate_district
from tests.conftest import drop_schema
from tiles.build import build_tileset
from twin.db import open_twin
from twin.settings import TwinSettings, get_settings

ROOT = Path(__file__).resolve().parents[2]
GEOID_OFFSET_M = 4.25
VALIDATE_JS = Path(__file__).with_name("validate_glb.js")


@pytest.fixture(scope="session")
def demo_twin(tmp_path_factory: pytest.TempPathFactory) -> TwinSettings:
    """Settings of a schema holding the demo district (as `make demo` loads it), read-only."""
    out = tmp_path_factory.mktemp("tiles_demo")
    # A geoid offset so the placement tests see it applied.
    settings = get_settings(db_schema=f"test_tiles_demo_{os.getpid()}", tiles_dir=out / "tiles",
                            geoid_offset_m=GEOID_OFFSET_M)  # the process id: one schema per test worker
    open_twin(get_settings()).dispose()  # starts the private cluster when it is the one in use
    drop_schema(settings)
    generate_district(out / "survey", scale=1, seed=0)
    report = ingest_survey(out / "survey" / "points.csv", out / "survey" / "segments.csv", settings)
    assert report.status == "applied"
    yield settings
    drop_schema(settings)


@pytest.fixture(scope="session")
def demo_tiles(demo_twin: TwinSettings) -> tuple[Path, dict]:
    """The demo district's tileset (folder, build report), built in two worker processes."""
    report = build_tileset(demo_twin, full=True, workers=2)
    return Path(report["out_dir"]), report


def tileset_tiles(tileset: dict) -> list[tuple[dict, dict | None]]:
    """Every tile of a tileset document with its parent, depth first."""
    out: list[tuple[dict, dict | None]] = []
    stack: list[tuple[dict, dict | None]] = [(tileset["root"], None)]
    while stack:
        tile, parent = stack.pop()
        out.append((tile, parent))
        stack.extend((c, tile) for c in tile.get("children", []))
    return out


def validate_glbs(paths: list[Path]) -> list[dict]:
    """Run the Khronos glTF validator (npm gltf-validator, through node) on GLB files."""
    node = shutil.which("node")
    assert node, "node is needed to run gltf-validator"
    proc = subprocess.run([node, str(VALIDATE_JS), *map(str, paths)], capture_output=True, text=True,
                          cwd=ROOT, env={"NODE_PATH": str(ROOT / "node_modules"), "PATH": "/usr/bin:/bin"},
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
