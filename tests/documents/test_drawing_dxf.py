"""DXF of the cross-section and the profile: audited and read back with ezdxf, and with GDAL.

A small surveyed street (its own twin): a DN300 water main A1-A2-A3 along northing N0, a D600
storm sewer 5 m south of it, a DN200 gas main 4 m north, and a 400X300 telecom duct crossing
the water main square at easting E0 + 20. The section line runs north across the three mains
at easting E0 + 50; the profile follows the water main from A1 to A3 (80 m, one crossing).
The drawings are compared with the section's and the profile's own numbers.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import ezdxf
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from analysis.profile import longitudinal_profile
from analysis.section import cross_section
from api.app import create_app
from api.auth import add_user
from documents.drawing_dxf import LAYERS, profile_dxf, profile_scales, section_dxf
from ingest.pipeline import ingest_survey
from tests.api.conftest import ALLOWED_HOSTS, JWT_SECRET, Api, password, sign_in, wait_job
from tests.conftest import write_survey
from twin.db import open_twin
from twin.domain import UTILITIES
from twin.errors import InputError
from twin.settings import TwinSettings, get_settings

E0, N0 = 410000.0, 4035000.0
#  id    utility feature  easting   northing   ground  depth (top; drainage: invert)
POINTS = [
    ("A1", "JS", "终点", E0, N0, 35.00, 1.20),
    ("A2", "JS", "直线点", E0 + 40, N0, 35.20, 1.40),
    ("A3", "JS", "终点", E0 + 80, N0, 35.00, 1.20),
    ("W1", "YS", "终点", E0, N0 - 5, 35.00, 2.50),
    ("W2", "YS", "终点", E0 + 80, N0 - 5, 35.00, 2.70),
    ("G1", "RQ", "终点", E0, N0 + 4, 35.00, 1.00),
    ("G2", "RQ", "终点", E0 + 80, N0 + 4, 35.00, 1.00),
    ("T1", "TX", "终点", E0 + 20, N0 - 10, 35.10, 0.60),
    ("T2", "TX", "终点", E0 + 20, N0 + 10, 35.10, 0.60),
]
SEGMENTS = [("A1", "A2", "JS", "DN300"), ("A2", "A3", "JS", "DN300"), ("W1", "W2", "YS", "D600"),
            ("G1", "G2", "RQ", "DN200"), ("T1", "T2", "TX", "400X300")]
LINE = [(E0 + 50, N0 - 10), (E0 + 50, N0 + 10)]
LINE_TEXT = ",".join(f"{v:.1f}" for p in LINE for v in p)


def _write_survey(folder: Path) -> None:
    write_survey(folder, POINTS, SEGMENTS)


@pytest.fixture(scope="module")
def street(twin_settings: TwinSettings, twin_engine: sa.Engine, tmp_path_factory: pytest.TempPathFactory
           ) -> TwinSettings:
    """The street in this module's twin, with a viewer who may sign in (read-only for the tests)."""
    tmp = tmp_path_factory.mktemp("street")
    settings = get_settings(db_schema=twin_settings.db_schema, tiles_dir=tmp / "tiles", jwt_secret=JWT_SECRET,
                            allowed_hosts=ALLOWED_HOSTS, live_subscriber=False)
    _write_survey(tmp)
    report = ingest_survey(tmp / "points.csv", tmp / "segments.csv", settings)
    assert report.status == "applied", report.as_dict()["errors"]
    with twin_engine.begin() as conn:
        add_user(conn, "viewer", "viewer", password("viewer"), by="tests")
    return settings


@pytest.fixture(scope="module")
def drawings(street: TwinSettings, artifacts: Path) -> dict:
    engine = open_twin(street)
    sec = cross_section(engine, LINE, crs="EPSG:4548")
    prof = longitudinal_profile(engine, "A1", "A3", crs="EPSG:4548")
    engine.dispose()
    out = {"section": sec, "profile": prof, "section_dxf": section_dxf(sec), "profile_dxf": profile_dxf(prof)}
    (artifacts / "drawing_section.dxf").write_bytes(out["section_dxf"])
    (artifacts / "drawing_profile.dxf").write_bytes(out["profile_dxf"])
    return out


def _read(data: bytes) -> ezdxf.document.Drawing:
    doc = ezdxf.read(io.StringIO(data.decode("utf-8")))
    auditor = doc.audit()
    assert not auditor.has_errors and not auditor.has_fixes, [str(e) for e in auditor.errors + auditor.fixes]
    return doc


def _texts(doc: ezdxf.document.Drawing, layer: str | None = None) -> list[str]:
    return [t.dxf.text for t in doc.modelspace().query("TEXT")
            if layer is None or t.dxf.layer == layer]


def _utility_layers(doc: ezdxf.document.Drawing) -> dict[str, tuple[int, int, int]]:
    return {layer.dxf.name: layer.rgb for layer in doc.layers
            if layer.dxf.name not in LAYERS and layer.dxf.name not in ("0", "Defpoints")}


def test_section_dxf_reads_back_at_true_size(drawings: dict) -> None:
    sec, doc = drawings["section"], _read(drawings["section_dxf"])
    assert doc.header["$INSUNITS"] == 6 and doc.dxfversion >= "AC1024"
    assert [p.id for p in sec.pipes] == ["W1-W2", "A2-A3", "G1-G2"]
    # one layer per utility, named and coloured as CJJ 61 says
    assert _utility_layers(doc) == {f"{c}_{UTILITIES[c].name_zh}": UTILITIES[c].rgb for c in ("JS", "PS", "RQ")}
    assert doc.layers.get("JS_给水").color == 4  # cyan for readers without true colour
    # every cut a circle of the pipe's radius at (chainage, centre elevation), on its layer
    circles = {c.dxf.layer: c for c in doc.modelspace().query("CIRCLE")}
    for p in sec.pipes:
        c = circles[f"{p.utility}_{UTILITIES[p.utility].name_zh}"]
        assert c.dxf.radius == pytest.approx(p.cut_half_width_m, abs=1e-9)
        assert (c.dxf.center.x, c.dxf.center.y) == pytest.approx((p.offset_m, p.centre_z), abs=1e-9)
    main = next(p for p in sec.pipes if p.id == "A2-A3")
    assert main.offset_m == pytest.approx(10.0) and 2 * circles["JS_给水"].dxf.radius == pytest.approx(0.3)
    assert main.top_z == pytest.approx(35.2 - 1.40) == pytest.approx(35.0 - 1.20)  # A2 and A3 both 33.80
    # the ground line at the section's own ground elevations
    ground = doc.modelspace().query('LWPOLYLINE[layer=="地面线_ground"]').first
    xy = [(x, y) for x, y, *_ in ground.get_points()]
    assert xy[0] == pytest.approx((0.0, sec.ground_z[0])) and len(xy) == len(sec.ground_z)


def test_section_dxf_labels_and_dimensions(drawings: dict) -> None:
    sec, doc = drawings["section"], _read(drawings["section_dxf"])
    texts = _texts(doc)
    assert any(t.startswith("横断面 Cross-section") for t in texts)
    for p in sec.pipes:
        assert p.id in texts and f"{p.top_z:.2f} / {p.bottom_z:.2f}" in texts
        assert f"{p.cover_m:.2f} / {p.depth_m:.2f}" in texts
    assert "给水 JS DN300" in texts and "排水 PS/YS DN600" in texts  # Chinese first, the subtype kept
    assert doc.styles.get(doc.modelspace().query("TEXT").first.dxf.style).dxf.font == "simsun.ttc"
    # the clear distances as linear dimensions, measured between the walls
    dims = doc.modelspace().query("DIMENSION")
    assert len(dims) == len(sec.spacings) == 2
    for d, s in zip(sorted(dims, key=lambda d: d.dxf.defpoint2.x), sec.spacings, strict=True):
        assert d.get_measurement() == pytest.approx(s.horizontal_m, abs=1e-6)
        assert d.dxf.text == f"{s.horizontal_m:.2f}"
    # the title block, Chinese first
    assert "比例 scale" in texts and any(t.startswith("1:") and "H = V" in t for t in texts)


def test_profile_dxf_lengths_and_exaggeration(drawings: dict) -> None:
    prof, doc = drawings["profile"], _read(drawings["profile_dxf"])
    n_h, n_v = profile_scales(prof)
    k = n_h / n_v
    assert k > 1  # the SVG's vertical exaggeration, applied and stated
    texts = _texts(doc)
    assert any(f"竖向放大 vertical ×{k:g}" in t for t in texts)
    top, invert = doc.modelspace().query('LWPOLYLINE[layer=="JS_给水"]')
    xs = [p[0] for p in top.get_points()]
    assert xs[0] == pytest.approx(0.0) and xs[-1] == pytest.approx(prof.length_m) == pytest.approx(80.0)
    zmin = float(texts[[i for i, t in enumerate(texts) if t == "坐标 coordinates"][0] + 1].split("Y = ")[1]
                 .split(" ")[0])
    ys = [p[1] for p in top.get_points()]
    assert [zmin + (z - zmin) * k for z in prof.top_z] == pytest.approx(ys, abs=1e-6)
    for n in prof.nodes:
        assert n.id in texts and f"{n.chainage_m:.2f}" in texts and f"{n.depth_m:.2f}" in texts
    # the crossing duct as an ellipse of its height (stretched k times) at its chainage
    (c,) = prof.crossings
    e = doc.modelspace().query('ELLIPSE[layer=="TX_通信"]').first
    assert e.dxf.center.x == pytest.approx(c.chainage_m) == pytest.approx(20.0)
    assert e.dxf.major_axis.magnitude == pytest.approx((c.top_z - c.bottom_z) / 2 * k)
    assert any(t.startswith(f"{c.id} TX 400X300 净距") for t in texts)
    # at true scale on request
    flat = _read(profile_dxf(prof, vertical_exaggeration=1))
    top1 = flat.modelspace().query('LWPOLYLINE[layer=="JS_给水"]').first
    assert [p[1] for p in top1.get_points()] == pytest.approx(list(prof.top_z), abs=1e-9)
    with pytest.raises(InputError):
        profile_dxf(prof, vertical_exaggeration=math.nan)


def test_gdal_reads_the_entities(drawings: dict, tmp_path: Path) -> None:
    path = tmp_path / "section.dxf"
    path.write_bytes(drawings["section_dxf"])
    res = subprocess.run(["ogrinfo", "-ro", "-q", "-sql", "SELECT Layer, SubClasses, Text FROM entities",
                          str(path)], capture_output=True, text=True, timeout=60,
                         env={**os.environ, "DXF_ENCODING": "UTF-8"})
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for layer in ("JS_给水", "PS_排水", "RQ_燃气", "地面线_ground"):
        assert f"Layer (String) = {layer}" in out
    assert "AcDbCircle" in out and "Text (String) = 给水 JS DN300" in out


def test_cli_writes_both_drawings(street: TwinSettings, tmp_path: Path) -> None:
    from analysis.cli import app

    run, env = CliRunner().invoke, {"TWIN_DB_SCHEMA": street.db_schema}
    res = run(app, ["section", "--line", LINE_TEXT, "--dxf", str(tmp_path / "s.dxf"), "--json"], env=env)
    assert res.exit_code == 0, res.output
    sec = json.loads(res.stdout)
    doc = _read((tmp_path / "s.dxf").read_bytes())
    assert sorted(c.dxf.center.x for c in doc.modelspace().query("CIRCLE")) == pytest.approx(
        [p["offset_m"] for p in sec["pipes"]], abs=1e-4)
    res = run(app, ["profile", "--from", "A1", "--to", "A3", "--dxf", str(tmp_path / "p" / "p.dxf")], env=env)
    assert res.exit_code == 0, res.output
    assert "A2" in _texts(_read((tmp_path / "p" / "p.dxf").read_bytes()))
    bad = run(app, ["profile", "--from", "A1", "--to", "G2", "--dxf", str(tmp_path / "x.dxf")], env=env)
    assert bad.exit_code != 0 and not (tmp_path / "x.dxf").exists()  # two utilities: no drawing


@pytest.fixture(scope="module")
def api(street: TwinSettings) -> Iterator[Api]:
    with TestClient(create_app(street)) as client:  # one role: each sign-in costs a password hash
        yield Api(client, street, {"viewer": sign_in(client, "viewer")})


def test_api_gives_dxf_to_signed_in_users_only(api: Api, drawings: dict) -> None:
    body = {"inputs": {"line": [list(p) for p in LINE]}}
    r = api.post("/processes/section/execution", json=body, params={"f": "dxf"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/dxf")
    assert r.headers["content-disposition"] == 'attachment; filename="cross_section.dxf"'
    doc = _read(r.content)
    assert len(doc.modelspace().query("CIRCLE")) == len(drawings["section"].pipes)
    prof = api.post("/processes/profile/execution", json={"inputs": {"from_node": "A1", "to_node": "A3"},
                                                          "outputs": {"dxf": {}}})
    assert prof.status_code == 200 and prof.headers["content-type"].startswith("application/dxf")
    assert "纵断面 Longitudinal profile" in _texts(_read(prof.content))
    unsigned = api.client.post("/processes/section/execution", json=body, params={"f": "dxf"})
    assert unsigned.status_code == 401
    assert api.post("/processes/section/execution", json={"inputs": {"line": [[1.0, 1.0], [2.0, 2.0]]}},
                    params={"f": "dxf"}).status_code == 400  # looks like lon/lat
    assert api.post("/processes/profile/execution", json={"inputs": {"from_node": "A1", "to_node": "NOPE"}},
                    params={"f": "dxf"}).status_code == 404
    assert api.post("/processes/hazards/execution", json={"inputs": {"at": list(LINE[0])}},
                    params={"f": "dxf"}).status_code == 400  # the hazards give no drawing
    assert api.post("/processes/section/execution", json=body, params={"f": "dwg"}).status_code == 422
    job = api.post("/processes/section/execution", json=body, params={"f": "dxf"},
                   headers={"Prefer": "respond-async"})
    assert job.status_code == 201 and wait_job(api, job.json()["jobID"])["status"] == "successful"
    res = api.get(f"/jobs/{job.json()['jobID']}/results")
    assert res.headers["content-type"].startswith("application/dxf") and _read(res.content)
