"""BCF 3.0 of findings: every XML file checked against buildingSMART's XSDs (tests/data/bcf3,
read by xmlschema) and the file read back by an independent reader, IfcOpenShell's bcf-client
(``bcf.v3``): topics, titles, statuses, labels, comments, viewpoint cameras, snapshots.

The twin is the small survey network (conftest ``small_twin``): the whole-network scan finds
one pair there (the DN100 branch JS5-JS6 passing under the power duct bank DL1-DL2); the
proposal is a DN200 gas main crossing the water main 0.10 m under it and the storm sewer.
"""

from __future__ import annotations

import functools
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
import xmlschema
from bcf.v3.bcfxml import BcfXml
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from analysis.clearance import load_clearance_rules
from analysis.findings import list_findings, scan_and_store
from analysis.proposal import check_proposal
from analysis.proposal_workflow import decide_finding, get_proposal, submit_proposal
from api.app import create_app
from api.auth import add_user
from documents.bcf import (
    MAX_TOPICS,
    SNAPSHOT_SIZE,
    findings_bcf,
    network_findings_bcf,
    proposal_findings_bcf,
    report_bcf,
    topic_guid,
)
from twin.errors import InputError
from twin.settings import get_settings

SCHEMAS = Path(__file__).resolve().parents[1] / "data" / "bcf3"
#: The schema of each XML file of a BCF zip, by name or extension.
XSD = {"bcf.version": "version.xsd", "extensions.xml": "extensions.xsd", "project.bcfp": "project.xsd",
       "documents.xml": "documents.xsd", ".bcf": "markup.xsd", ".bcfv": "visinfo.xsd"}
E0, N0, GROUND = 410000.0, 4035000.0, 35.19
#: Water main JS1-JS4: DN300, 1.40 deep to its top; its bottom at about 33.49 m.
WATER_BOTTOM = GROUND - 1.40 - 0.30
GAS = {"type": "FeatureCollection", "features": [{
    "type": "Feature", "properties": {"id": "P1", "utility": "RQ", "size": "DN200", "z_reference": "top",
                                      "pressure_mpa": 0.2},
    "geometry": {"type": "LineString", "coordinates": [[E0 + 20, N0 - 15, WATER_BOTTOM - 0.10],
                                                       [E0 + 20, N0 + 5, WATER_BOTTOM - 0.10]]}}]}


@functools.cache
def _schema(name: str) -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(SCHEMAS / name)


def validated(data: bytes) -> zipfile.ZipFile:
    """The BCF zip with every XML file valid against its XSD and nothing else but PNG snapshots."""
    z = zipfile.ZipFile(io.BytesIO(data))
    names = z.namelist()
    assert {"bcf.version", "extensions.xml", "project.bcfp"} <= set(names)
    for name in names:
        if name.endswith("/"):
            assert len(name) == 37, name  # a topic folder: its lower-case GUID
            continue
        xsd = XSD.get(name) or XSD.get(Path(name).suffix)
        if xsd:
            _schema(xsd).validate(io.BytesIO(z.read(name)))
        else:
            assert name.endswith("/snapshot.png"), name
    return z


def read_back(data: bytes, tmp: Path) -> BcfXml:
    """The BCF as the independent reader (bcf-client) sees it, after checking it against the XSDs."""
    validated(data)
    path = tmp / f"read-{len(list(tmp.iterdir()))}.bcf"
    path.write_bytes(data)
    return BcfXml.load(path)


def camera_of(topic) -> object:
    (vp,) = topic.viewpoints.values()
    return vp, vp.visualization_info.perspective_camera


def looks_at(cam, xyz: np.ndarray, within_m: float) -> bool:
    """The camera's view ray passes within ``within_m`` of ``xyz``."""
    p = np.array([cam.camera_view_point.x, cam.camera_view_point.y, cam.camera_view_point.z])
    d = np.array([cam.camera_direction.x, cam.camera_direction.y, cam.camera_direction.z])
    v = xyz - p
    return v @ d > 0 and np.linalg.norm(v - (v @ d) * d) <= within_m


@pytest.fixture(scope="module")
def twin(small_twin, twin_settings):
    """The small network scanned (findings stored by ``scanner``) and the gas proposal stored by
    ``ed``, one of its findings accepted by ``ann`` with a note."""
    scan_and_store(small_twin, user="scanner", settings=twin_settings, workers=1)
    report = submit_proposal(small_twin, GAS, twin_settings, name="gas crossing 燃气穿越", user="ed")
    accepted = report.findings[-1].key
    decide_finding(small_twin, report.proposal_id, accepted, "accepted", twin_settings,
                   note="加套管 protective sleeve", user="ann")
    return small_twin, twin_settings, report.proposal_id, accepted


def test_network_findings_are_valid_bcf_topics_read_back(twin, tmp_path, artifacts):
    engine, settings, _, _ = twin
    listed = list_findings(engine)["findings"]
    assert listed, "the small network has a crossing the scan reports"
    export = network_findings_bcf(engine, settings, author="exporter")
    (artifacts / "network-findings.bcf").write_bytes(export.data)
    z = validated(export.data)
    assert export.keys == [f["key"] for f in listed] and export.snapshots == len(listed)
    b = read_back(export.data, tmp_path)
    assert b.version.version_id == "3.0"
    assert set(b.topics) == {topic_guid(f["key"]) for f in listed}
    clauses = load_clearance_rules(None, settings, db=engine).set_index("id")["source"]
    for f in listed:
        t = b.topics[topic_guid(f["key"])]
        assert t.topic.title.startswith(f"{f['verdict_label']} 垂直净距") and f["a_id"] in t.topic.title
        assert t.topic.topic_status == f"{f['status_label']} {f['status']}"
        assert t.topic.topic_status in b.extensions.topic_statuses.topic_status
        assert set(t.topic.labels.label) == {"DL 电力", "JS 给水"}
        assert t.topic.creation_author == "scanner"  # who ran the scan that found it
        desc = t.topic.description
        assert f"实测 measured: {f['measured_m']:.3f} m" in desc and f"要求 required: {f['required_m']:.3f} m" in desc
        assert f"条款 clause: {clauses[f['rule_id']]}" in desc and f"± {f['uncertainty_m']:.3f} m" in desc
        vp, cam = camera_of(t)
        assert looks_at(cam, np.array([f["x"], f["y"], f["z"]]), within_m=1.0)
        assert cam.aspect_ratio == pytest.approx(SNAPSHOT_SIZE[0] / SNAPSHOT_SIZE[1]) and 0 < cam.field_of_view < 90
        ids = [c.authoring_tool_id for c in vp.visualization_info.components.selection.component]
        assert ids == [f["a_id"], f["b_id"]]
        png = Image.open(io.BytesIO(vp.snapshot))
        assert png.size == SNAPSHOT_SIZE and max(png.size) <= 1500
        assert np.asarray(png.convert("L"), float).std() > 5  # a picture, not a blank
        assert z.read(f"{topic_guid(f['key'])}/snapshot.png") == vp.snapshot


def test_proposal_findings_with_decisions_and_stable_guids(twin, tmp_path, artifacts):
    engine, settings, pid, accepted = twin
    stored = get_proposal(engine, pid)
    export = proposal_findings_bcf(engine, settings, pid, snapshots=1)
    (artifacts / "proposal-findings.bcf").write_bytes(export.data)
    validated(export.data)
    assert export.snapshots == 1 and len(export.keys) == len(stored["findings"]) >= 2
    b = read_back(export.data, tmp_path)
    assert b.project.name.startswith("gas crossing 燃气穿越")
    guids = [topic_guid(f["key"], f"proposal/{pid}") for f in stored["findings"]]
    assert set(b.topics) == set(guids)
    for n, f in enumerate(stored["findings"]):
        t = b.topics[guids[n]]
        assert t.topic.creation_author == "ed" and "P1" in t.topic.title
        assert "RQ 燃气" in t.topic.labels.label
        vp, cam = camera_of(t)
        assert "P1" in [c.authoring_tool_id for c in vp.visualization_info.components.selection.component]
        assert (vp.snapshot is not None) == (n == 0)  # the first topic only: snapshots=1
        assert looks_at(cam, np.array([f["x"], f["y"], f["z"]]), within_m=1.0)
        if f["key"] == accepted:
            assert t.topic.topic_status == "已接受 accepted" and t.topic.modified_author == "ann"
            (c,) = t.comments
            assert (c.author, c.comment) == ("ann", "加套管 protective sleeve")
            assert c.viewpoint.guid == vp.guid
        else:
            assert t.topic.topic_status == "待定 open" and not t.comments
    again = read_back(proposal_findings_bcf(engine, settings, pid, snapshots=0).data, tmp_path)
    assert set(again.topics) == set(guids)  # exported again: the same topics, for a BIM tool to update
    assert all(again.topics[g].topic.title == b.topics[g].topic.title for g in guids)


def test_an_unstored_check_and_the_cap(twin, tmp_path):
    engine, settings, _, _ = twin
    report = check_proposal(engine, GAS, settings)
    export = report_bcf(engine, settings, report, GAS, snapshots=0)
    b = read_back(export.data, tmp_path)
    assert len(b.topics) == len(report.findings) and export.snapshots == 0
    assert set(b.topics).isdisjoint(topic_guid(f.key, "proposal/1") for f in report.findings)
    # the schema check does catch a topic out of the standard (its title renamed)
    z = zipfile.ZipFile(io.BytesIO(export.data))
    markup = next(n for n in z.namelist() if n.endswith("markup.bcf"))
    broken = z.read(markup).replace(b"<Title>", b"<Name>").replace(b"</Title>", b"</Name>")
    with pytest.raises(xmlschema.XMLSchemaValidationError):
        _schema("markup.xsd").validate(io.BytesIO(broken))
    many = [{"key": f"{i:016x}", "kind": "vertical", "a_id": "A", "b_id": "B", "x": E0, "y": N0}
            for i in range(MAX_TOPICS + 1)]
    with pytest.raises(InputError, match=f"at most {MAX_TOPICS} topics") as exc:
        findings_bcf(engine, many)
    assert exc.value.code == "TOO_MANY_TOPICS"
    with pytest.raises(InputError, match="limit"):
        network_findings_bcf(engine, settings, limit=MAX_TOPICS + 1)
    empty = network_findings_bcf(engine, settings, road="no such road")
    assert empty.keys == [] and not read_back(empty.data, tmp_path).topics


def _audit(engine: sa.Engine, action: str) -> tuple:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT user_name, params, affected FROM audit_log WHERE action = :a "
                                    "ORDER BY id DESC LIMIT 1"), {"a": action}).one()


def test_cli_writes_bcf_of_network_findings_and_of_a_proposal(twin, tmp_path):
    from analysis.cli import app

    engine, settings, _, _ = twin
    env = {"TWIN_DB_SCHEMA": settings.db_schema, "TWIN_USER": "dora"}
    out = tmp_path / "out" / "network.bcf"
    res = CliRunner().invoke(app, ["findings", "--verdict", "uncertain", "--bcf", str(out), "--snapshots", "0"],
                             env=env)
    assert res.exit_code == 0, res.output
    keys = [f["key"] for f in list_findings(engine, verdict=["uncertain"])["findings"]]
    assert len(validated(out.read_bytes()).namelist()) > 3 and keys
    user, params, affected = _audit(engine, "findings-bcf")
    assert (user, params["verdict"], params["topics"]) == ("dora", ["uncertain"], len(keys))
    assert affected == [f"finding:{k}" for k in keys]
    proposal = tmp_path / "gas.geojson"
    proposal.write_text(json.dumps(GAS), encoding="utf-8")
    res = CliRunner().invoke(app, ["proposal", str(proposal), "--no-store", "--bcf", str(tmp_path / "p.bcf")],
                             env=env)
    assert res.exit_code == 1, res.output  # the proposal fails its check; the BCF is written all the same
    b = read_back((tmp_path / "p.bcf").read_bytes(), tmp_path)
    assert len(b.topics) >= 2 and _audit(engine, "proposal-bcf")[0] == "dora"


def test_api_routes(twin, tmp_path):
    engine, settings, pid, _ = twin
    settings = get_settings(db_schema=settings.db_schema, tiles_dir=tmp_path / "tiles", jwt_secret="s" * 48,
                            allowed_hosts=["testserver"], live_subscriber=False)
    with engine.begin() as conn:
        add_user(conn, "vera", "viewer", "vera-password", by="tests")
    with TestClient(create_app(settings)) as client:
        assert client.get("/findings.bcf").status_code == 401
        assert client.get(f"/proposals/{pid}/findings.bcf").status_code == 401
        token = client.post("/token", data={"username": "vera", "password": "vera-password"}).json()
        auth = {"Authorization": f"Bearer {token['access_token']}"}
        r = client.get("/findings.bcf", params={"status": "new", "utility-pair": "DL-JS"}, headers=auth)
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "application/octet-stream"
        assert r.headers["content-disposition"] == 'attachment; filename="findings.bcf"'
        b = read_back(r.content, tmp_path)
        (t,) = b.topics.values()
        assert t.topic.reference_links.reference_link[0].startswith("http://testserver/findings/")
        assert _audit(engine, "findings-bcf")[0] == "vera"
        assert client.get("/findings.bcf", params={"limit": MAX_TOPICS + 1}, headers=auth).status_code == 422
        assert client.get("/findings.bcf", params={"verdict": "wrong"}, headers=auth).status_code == 422
        assert client.get("/findings.bcf", params={"snapshots": 21}, headers=auth).status_code == 422
        r = client.get(f"/proposals/{pid}/findings.bcf", params={"snapshots": 1}, headers=auth)
        assert r.status_code == 200 and f'filename="proposal-{pid}-findings.bcf"' in r.headers["content-disposition"]
        b = read_back(r.content, tmp_path)  # (kept: the reader closes its zip when it goes)
        assert len(b.topics) >= 2 and {t.topic.creation_author for t in b.topics.values()} == {"ed"}  # submitter
        assert client.get("/proposals/999999/findings.bcf", headers=auth).status_code == 404
