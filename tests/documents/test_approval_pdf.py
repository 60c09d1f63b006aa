"""The approval package (管线审批报告) read back with pypdf, the check stamp, and a re-check that
says what changed: by the library, the command and the API, on a twin of its own.

The twin is the small survey network (tests/data/small): a DN300 water main along northing
4035000 (top about 33.79 m), a D600 storm sewer 10 m south and an 800X500 power duct bank
(DL1-DL2, 0.80 m deep) 10 m north. Proposals are short DN200 gas pipes crossing one of them.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pypdf
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from analysis import rule_catalogue
from analysis.cli_drawings import app as commands
from analysis.proposal import check_proposal
from analysis.proposal_workflow import (
    decide_finding,
    decide_proposal,
    recheck_proposal,
    submit_proposal,
)
from documents.approval_pdf import VERDICT_SHORT, approval_pdf, check_pdf
from documents.pdf import quantity
from ingest.derive import change_attributes
from tests.api.conftest import Api, make_twin, open_api
from tests.conftest import drop_schema
from twin.db import change_mark, open_twin
from twin.errors import NotFound

E0, N0 = 410000.0, 4035000.0


def gas(x: float, n1: float, n2: float, top_z: float, fid: str = "P1") -> dict:
    """A DN200 gas pipe (0.2 MPa) north at easting ``x`` from ``n1`` to ``n2``, top at ``top_z``."""
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {
                    "id": fid,
                    "utility": "RQ",
                    "size": "DN200",
                    "z_reference": "top",
                    "pressure_mpa": 0.2,
                },
                "geometry": {"type": "LineString", "coordinates": [[x, n1, top_z], [x, n2, top_z]]},
            }
        ],
    }


#: Through the water main at E0 + 20 (its top is about 33.79): a collision and a clearance finding.
ACROSS_WATER = gas(E0 + 20, N0 - 5, N0 + 5, 33.75)
#: Through the bottom of the power duct bank at E0 + 50 (crosses nothing else).
ACROSS_POWER = gas(E0 + 50, N0 + 5, N0 + 15, 33.95, fid="P2")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    settings = make_twin("test_approval_pdf", tmp_path_factory.mktemp("approval"), data="small")
    yield from open_api(settings)
    drop_schema(settings)


@pytest.fixture(scope="module")
def engine(api: Api) -> Iterator[sa.Engine]:
    engine = open_twin(api.settings)
    yield engine
    engine.dispose()


def text_of(pdf: bytes) -> str:
    """Every page's text, runs of white space as one space."""
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    return re.sub(r"\s+", " ", " ".join(p.extract_text() for p in reader.pages))


def images_of(pdf: bytes) -> list[np.ndarray]:
    """Every picture of the PDF, decoded."""
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    return [np.asarray(im.image.convert("RGB")) for p in reader.pages for im in p.images]


def embedded_fonts(pdf: bytes) -> set[str]:
    """Base names (subset prefix dropped) of the fonts embedded as TrueType programs."""
    out = set()
    for page in pypdf.PdfReader(io.BytesIO(pdf)).pages:
        for font in page["/Resources"]["/Font"].values():
            font = font.get_object()
            for desc in font.get("/DescendantFonts", []):
                descriptor = desc.get_object()["/FontDescriptor"].get_object()
                if "/FontFile2" in descriptor:
                    out.add(str(font["/BaseFont"]).split("+")[-1])
    return out


def assert_findings_printed(text: str, findings: list[dict]) -> None:
    for n, f in enumerate(findings, 1):
        rule = f["rule"].split(": ")[0] if ": " in f["rule"] else ""
        assert f"{n}. " in text and VERDICT_SHORT[f["verdict"]] in text
        assert f"实测 Measured {quantity(f['measured_m'], 'm', 3)}" in text, f["key"]
        if f.get("required_m") is not None:
            assert f"要求 Required {quantity(f['required_m'], 'm', 3)}" in text
        assert f"不确定度 Uncertainty ± {quantity(f['uncertainty_m'], 'm', 3)}" in text
        assert f"编号 Key {f['key']}" in text and rule in text


def test_stored_proposal_package(api: Api, engine: sa.Engine, artifacts: Path) -> None:
    settings = api.settings
    report = submit_proposal(
        engine, ACROSS_WATER, settings, name="燃气管 gas main 东昌路", user="alice"
    )
    pid = report.proposal_id
    kinds = [f.kind for f in report.findings]
    # one finding for the crossing, carrying the collision and the vertical clearance it breaks
    assert kinds[0] == "collision" and len(report.findings[0].rules) >= 2
    # the stamp: the network and the rules the check saw, stored with the proposal
    stamp = report.stamp
    assert stamp["network_mark"] == change_mark(engine)
    assert stamp["rules_version"] == rule_catalogue.rules_version(engine, settings)["version"]
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT network_mark, rules_version FROM proposal WHERE id = :p"), {"p": pid}
        ).one()
    assert tuple(row) == (stamp["network_mark"], stamp["rules_version"])
    decide_finding(
        engine,
        pid,
        report.findings[0].key,
        "accepted",
        settings,
        user="bob",
        note="套管保护 casing",
    )
    decide_proposal(engine, pid, "reviewed", settings, user="bob")
    decide_proposal(
        engine, pid, "approved", settings, user="carol", override="业主同意 owner agreed"
    )

    pdf = approval_pdf(engine, settings, pid, user="dora")
    (artifacts / "approval-package.pdf").write_bytes(pdf)
    text = text_of(pdf)
    for heading in (
        "管线审批报告",
        "Approval package",
        "结论 Result",
        "核查印记 Check stamp",
        "平面图 Plan map",
        "断面 Sections",
        "发现项 Findings",
        "决定与记录 Decisions and history",
        "签署 Signatures",
    ):
        assert heading in text, heading
    assert f"管网版本 Network version {stamp['network_mark']}" in text
    assert f"规则表版本 Rule-table version {stamp['rules_version']}" in text
    assert "燃气管 gas main 东昌路" in text and "不通过 FAIL" in text and "已批准 approved" in text
    stored = api.get(f"/proposals/{pid}").json()
    assert_findings_printed(text, stored["findings"])
    assert "套管保护 casing" in text and "业主同意 owner agreed" in text
    assert "违反规则 Rule 1" in text and "违反规则 Rule 2" in text
    for who in ("alice", "bob", "carol", "dora"):
        assert who in text
    # the profile along the proposal crosses the water main: its clear distance is printed
    assert "纵断面 Profile along P1" in text and "JS1-JS2" in text
    # pictures: the plan map and one 3D view per finding, decodable and not blank
    pictures = images_of(pdf)
    assert len(pictures) == 1 + len(stored["findings"])
    for im in pictures:
        assert (
            im.shape[0] > 300
            and im.std() > 10
            and len(np.unique(im.reshape(-1, 3)[::97], axis=0)) > 8
        )
    assert any("DroidSans" in f for f in embedded_fonts(pdf))  # the CJK font travels with the file


def test_recheck_says_what_changed(api: Api, engine: sa.Engine, artifacts: Path) -> None:
    settings = api.settings
    first = submit_proposal(
        engine, ACROSS_POWER, settings, name="gas across the duct bank", user="alice"
    )
    pid = first.proposal_id
    assert first.changes is None and {"P2", "DL1-DL2"} == set(first.findings[0].ids)
    for f in first.findings:
        decide_finding(engine, pid, f.key, "accepted", settings, user="bob", note="ok")
    decide_proposal(engine, pid, "reviewed", settings, user="bob")
    decide_proposal(engine, pid, "approved", settings, user="bob")
    same = recheck_proposal(engine, pid, settings, user="bob")
    assert (same.changes["network_changed"], same.changes["rules_changed"]) == (False, False)
    assert same.changes["added"] == same.changes["gone"] == same.changes["changed"] == []
    assert same.changes["unchanged"] == len(first.findings)

    # the duct bank is relaid 0.30 m higher: the proposal no longer collides with it
    with engine.begin() as conn:
        change_attributes(
            conn,
            "eve",
            "segment",
            "DL1-DL2",
            {"from_depth_m": 0.5, "to_depth_m": 0.5},
            settings=settings,
        )
    later = recheck_proposal(engine, pid, settings, user="bob")
    ch = later.changes
    assert (
        ch["network_changed"] is True and ch["network_writes"] >= 1 and ch["rules_changed"] is False
    )
    assert ch["network_mark_before"] == same.stamp["network_mark"] != ch["network_mark"]
    before, after = {f.key: f for f in same.findings}, {f.key: f for f in later.findings}
    assert {f["key"] for f in ch["gone"]} == before.keys() - after.keys()
    assert {f["key"] for f in ch["added"]} == after.keys() - before.keys()
    assert {f["key"] for f in ch["changed"]} == {
        k
        for k in before.keys() & after.keys()
        if abs(before[k].measured_m - after[k].measured_m) > 1e-3
    }
    assert ch["gone"] or ch["changed"]
    assert [(p["id"], p["change"]) for p in ch["pipes_changed"]] == [("DL1-DL2", "edited")]
    assert later.status == "approved"  # a re-check reports; it does not reopen the approval

    stored = api.post(f"/proposals/{pid}/recheck", "editor").json()  # the API's output says it too
    assert (
        stored["changes"]["network_changed"] is False
        and stored["stamp"]["network_mark"] == ch["network_mark"]
    )

    # the clearance table is replaced: the rules' version moves and the required values change
    current = rule_catalogue.rules_in_use(engine, "clearance_rules", settings).text
    edited = re.sub(r"^(V035,.*?),0\.15,", r"\1,0.40,", current, flags=re.M)
    assert edited != current
    with engine.begin() as conn:
        rule_catalogue.store_rule_table(conn, "clearance_rules", edited, "admin")
    try:
        ruled = recheck_proposal(engine, pid, settings, user="bob")
    finally:
        with engine.begin() as conn:
            rule_catalogue.delete_rule_table(conn, "clearance_rules", settings)
    rc = ruled.changes
    assert (rc["rules_changed"], rc["rules_tables_changed"], rc["network_changed"]) == (
        True,
        ["clearance_rules"],
        False,
    )
    assert rc["rules_version_before"] != rc["rules_version"] == ruled.stamp["rules_version"]
    # the gas - duct bank clearance now asks 0.40 m: a finding added, or one whose required moved
    (dl,) = [f for f in ruled.findings if f.kind == "clearance_vertical" and "DL1-DL2" in f.ids]
    assert dl.required_m == pytest.approx(0.40)
    moved = {c["key"]: c["changed"] for c in rc["changed"]}
    assert dl.key in {f["key"] for f in rc["added"]} or moved[dl.key]["required_m"] == [0.15, 0.4]

    pdf = approval_pdf(engine, settings, pid, pictures=False)
    (artifacts / "approval-package-rechecked.pdf").write_bytes(pdf)
    text = text_of(pdf)
    assert (
        "自上次核查的变化 Changes since the last check" in text
        and "规则表已变更 rules changed" in text
    )
    assert (
        "clearance_rules" in text and f"规则表版本 Rule-table version {rc['rules_version']}" in text
    )
    # the history keeps each check's stamp: the network mark the edit moved to is in it
    assert ch["network_mark"] in text


def test_unstored_check_package(engine: sa.Engine, api: Api) -> None:
    report = check_proposal(engine, ACROSS_WATER, api.settings, name="quick look")
    pdf = check_pdf(engine, api.settings, report, ACROSS_WATER, user="alice", pictures=False)
    text = text_of(pdf)
    assert "未存储 not stored" in text and report.stamp["network_mark"] in text
    assert_findings_printed(text, [f.as_dict() for f in report.findings])
    assert len(images_of(pdf)) == 1  # the plan map (3D pictures not asked for)


def test_command_writes_the_package(api: Api, tmp_path: Path) -> None:
    (tmp_path / "gas.geojson").write_text(json.dumps(ACROSS_WATER), encoding="utf-8")
    env = {"TWIN_DB_SCHEMA": api.settings.db_schema, "TWIN_USER": "alice"}
    out = tmp_path / "out" / "package.pdf"
    run = CliRunner().invoke  # in process: the command's own code, without a second start-up
    res = run(
        commands,
        ["proposal", str(tmp_path / "gas.geojson"), "--no-store", "--pdf", str(out)],
        env=env,
    )
    assert res.exit_code == 1, res.output[-2000:]  # the proposal fails; the package is written
    assert "checked against 管网版本 network" in res.stdout
    text = text_of(out.read_bytes())
    assert "管线审批报告" in text and "发现项 Findings" in text and "碰撞 collision" in text
    assert "alice" in text and "未存储 not stored" in text
    # an unknown proposal is an error for twin.cli.main to print (error [CODE] message, exit 2)
    res = run(commands, ["proposal-show", "999999", "--pdf", str(tmp_path / "x.pdf")], env=env)
    assert isinstance(res.exception, NotFound) and not (tmp_path / "x.pdf").exists()


def test_api_report_pdf(api: Api, engine: sa.Engine) -> None:
    # a metre under the water main: it passes (no 3D pictures to render)
    made = api.post("/proposals", "editor", json=gas(E0 + 70, N0 - 5, N0 + 5, 32.5, fid="P3"))
    assert made.status_code == 201, made.text
    pid = made.json()["proposal_id"]
    assert any(
        link["href"].endswith(f"/proposals/{pid}/report.pdf") for link in made.json()["links"]
    )
    r = api.get(f"/proposals/{pid}/report.pdf")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert "attachment" in r.headers["content-disposition"] and r.content.startswith(b"%PDF-")
    text = text_of(r.content)
    assert "管线审批报告" in text and "通过 PASS" in text and "无发现项" in text
    assert "viewer" in text  # generated by the signed-in user
    with engine.connect() as conn:
        action = conn.execute(
            sa.text("SELECT action FROM audit_log ORDER BY id DESC LIMIT 1")
        ).scalar()
    assert action == "proposal-pdf"
    assert api.client.get(f"/proposals/{pid}/report.pdf").status_code == 401  # not signed in
    assert api.get("/proposals/999999/report.pdf").status_code == 404
    assert api.get("/proposals/0/report.pdf").status_code in (400, 422)
