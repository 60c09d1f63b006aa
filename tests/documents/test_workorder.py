"""The shutoff work order (关阀作业单) and the plan map, on the hand-built loop of the shutdown
tests (tests/analysis/test_shutdown.py: valves V1..V5, hydrant H1, customers C1, C2 and the
hospital C3), read back with pypdf; the command (``--pdf``) and the API (``?f=pdf``, a
shutdown's ``workorder.pdf``) with sign-in and bad input.

A burst on V1-B with V2 reported failed: the closing order is the shutoff's own (V1, V4, V5 in
some order the answer gives), the next ring is listed, the hospital C3 (critical) is notified
before C1, and the hydrant H1 is out of service.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator

import numpy as np
import pypdf
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

from analysis.cli_emergency import app
from analysis.shutdown import plan_shutdown
from analysis.shutoff import shutoff
from api.app import create_app
from documents.planmap import Mark, map_frame, plan_map
from documents.workorder import work_order_pdf
from ingest.pipeline import ingest_survey
from tests.analysis.test_shutdown import X0, Y0, write_loop_survey
from tests.api.conftest import Api, make_twin, sign_in
from tests.conftest import drop_schema
from twin.db import open_twin
from twin.errors import InputError
from twin.settings import TwinSettings

BURST = "V1-B"


@pytest.fixture(scope="module")
def loop_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwinSettings]:
    """A twin of its own (users per role) holding the loop."""
    tmp = tmp_path_factory.mktemp("workorder")
    settings = make_twin("test_doc_workorder", tmp, data="empty")
    report = ingest_survey(*write_loop_survey(tmp), settings)
    assert report.status == "applied", report
    yield settings
    drop_schema(settings)


@pytest.fixture(scope="module")
def loop(loop_settings):
    engine = open_twin(loop_settings)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def answer(loop) -> dict:
    return shutoff(loop, pipe=BURST, failed_valves=["V2"]).as_dict()


@pytest.fixture(scope="module")
def work_order(loop, loop_settings, answer, artifacts) -> bytes:
    pdf = work_order_pdf(loop, loop_settings, answer, by="王工 wang")
    (artifacts / "work-order.pdf").write_bytes(pdf)
    return pdf


@pytest.fixture(scope="module")
def api(loop_settings) -> Iterator[Api]:
    """An in-process client signed in as a viewer (reads and runs analyses) only."""
    with TestClient(create_app(loop_settings)) as client:
        yield Api(client, loop_settings, {"viewer": sign_in(client, "viewer")})


def text_of(pdf: bytes) -> str:
    return "\n".join(p.extract_text() for p in pypdf.PdfReader(io.BytesIO(pdf)).pages)


def positions(text: str, ids: list[str]) -> list[int]:
    """Where each id first stands as a whole word in the text."""
    found = [re.search(rf"(?<![\w-]){re.escape(i)}(?![\w-])", text) for i in ids]
    assert all(found), [i for i, m in zip(ids, found, strict=True) if not m]
    return [m.start() for m in found]


def test_the_answer_is_the_one_worked_out(answer):
    # the loop's own figures (test_shutdown): V2 failed pulls segment D in; E and C3 lose supply
    assert sorted(v["id"] for v in answer["valves"]) == ["V1", "V4", "V5"]
    assert [c["id"] for c in answer["customers"]] == ["C3", "C1"]


def test_work_order_text(work_order, answer):
    text = text_of(work_order)
    assert "关阀作业单" in text and "Shutoff work order" in text and "王工 wang" in text
    valves = text[text.index("关阀顺序"):text.index("平面图")]
    ids = [v["id"] for v in answer["valves"]]
    assert positions(valves, ids) == sorted(positions(valves, ids))  # in the closing order
    for v in answer["valves"]:  # each with its position (E/N of the twin)
        assert f"E {v['x']:.2f}" in valves and f"N {v['y']:.2f}" in valves
    assert "V2" in valves and "reported failed" in valves  # the failed valve, with its reason
    ring = text[text.index("二次关阀"):text.index("通知用户")]
    assert all(v in ring for v in answer["next_ring"])
    assert "通知用户 Customers to notify: 2 (重要 critical 1)" in text
    customers = text[text.index("通知用户"):]
    a, b = positions(customers, ["C3", "C1"])
    assert a < b and "市人民医院" in customers and "幸福小区" in customers
    assert "消火栓停用 Hydrants out of service: 1" in text
    assert "H1" in text[text.index("消火栓停用 Hydrants out of service"):]


def test_work_order_pictures(work_order):
    reader = pypdf.PdfReader(io.BytesIO(work_order))
    images = [im for p in reader.pages for im in p.images]
    assert len(images) == 2  # the plan map and the dig site in 3D
    for im in images:
        pixels = np.asarray(im.image.convert("RGB"), dtype=float)
        assert min(pixels.shape[:2]) >= 400
        assert pixels.std() > 10  # not blank
    for page in reader.pages:  # A4 portrait
        assert round(float(page.mediabox.width)) == 595 and round(float(page.mediabox.height)) == 842


def test_plan_map_puts_marks_and_pipes_where_they_are(loop):
    # V1 sits at northing X0 + 30, easting Y0 + 100 (X is northing in survey tables)
    x, y, r = map_frame(np.array([[Y0 + 100, X0 + 30], [Y0 + 160, X0 + 90]]))
    assert (x, y) == (Y0 + 130, X0 + 60) and r == pytest.approx(45.0)
    png = plan_map(loop, x, y, r, highlight=["V1-B"], marks=[Mark(Y0 + 100, X0 + 30, "1")],
                   size_px=(1000, 1000), dpi=100)
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)

    def pixel(e: float, n: float, dx: int = 0) -> np.ndarray:  # axes span 1 %..99 % of the figure
        col = (0.01 + 0.98 * (e - (x - r)) / (2 * r)) * 1000
        row = (1 - (0.01 + 0.98 * (n - (y - r)) / (2 * r))) * 1000
        return img[int(round(row)), int(round(col)) + dx]

    red = pixel(Y0 + 100, X0 + 30, dx=-9)  # the filled mark, beside its white number
    assert red[0] > 180 and red[1] < 80 and red[2] < 80
    on_pipe = pixel(Y0 + 100, X0 + 45)  # half way along V1-B, highlighted
    assert np.abs(on_pipe - np.array([251, 250, 246])).sum() > 60  # not the paper
    paper = pixel(Y0 + 145, X0 + 75)  # between the pipes
    assert np.abs(paper - np.array([251, 250, 246])).sum() < 10
    with pytest.raises(InputError):
        plan_map(loop, x, y, 0.0)


def test_shutdown_record_work_order(loop, loop_settings, api):
    record = plan_shutdown(loop, loop_settings, pipe="C-V4", start="2027-03-01T08:00",
                           end="2027-03-01T12:00", reason="换阀 valve change", by="planner")
    r = api.get(f"/shutdowns/{record['id']}/workorder.pdf")
    assert r.status_code == 200 and r.headers["content-type"] == "application/pdf"
    assert f'filename="shutdown-{record["id"]}-workorder.pdf"' in r.headers["content-disposition"]
    text = text_of(r.content)
    assert f"#{record['id']} 计划 planned" in text and "换阀 valve change" in text
    valves = text[text.index("关阀顺序"):text.index("平面图")]
    ids = [v["id"] for v in record["valves"] if v["needed"]]
    assert ids and positions(valves, ids) == sorted(positions(valves, ids))
    assert api.client.get(f"/shutdowns/{record['id']}/workorder.pdf").status_code == 401
    assert api.get("/shutdowns/999999/workorder.pdf").status_code == 404


def test_api_pdf(api):
    path = "/processes/shutoff/execution"
    body = {"inputs": {"pipe": BURST, "failed_valves": ["V2"]}}
    # a PDF is answered at once: the preference for a job is not applied
    r = api.post(path, params={"f": "pdf"}, json=body, headers={"Prefer": "respond-async"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/pdf" and "preference-applied" not in r.headers
    assert r.headers["content-disposition"] == f'attachment; filename="work-order-{BURST}.pdf"'
    assert "关阀作业单" in text_of(r.content)
    assert api.client.post(path, params={"f": "pdf"}, json=body).status_code == 401
    assert api.post(path, params={"f": "pdf"}, json={"inputs": {"pipe": "NOPE"}}).status_code == 404
    assert api.post(path, params={"f": "svg"}, json=body).status_code == 400
    assert api.post(path, params={"f": "doc"}, json=body).status_code == 422
    hazards = {"inputs": {"at": [Y0 + 100, X0 + 45], "radius_m": 10}}
    assert api.post("/processes/hazards/execution", params={"f": "pdf"}, json=hazards).status_code == 400
    described = api.get("/processes/shutoff").json()
    assert described["outputs"]["pdf"]["schema"]["contentMediaType"] == "application/pdf"


def test_cli_pdf(loop_settings, tmp_path):
    env = {"TWIN_DB_SCHEMA": loop_settings.db_schema, "TWIN_USER": "crew"}
    out = tmp_path / "order.pdf"
    res = CliRunner().invoke(app, ["shutoff", "--pipe", BURST, "--failed-valves", "V2", "--pdf", str(out)],
                             env=env)
    assert res.exit_code == 0, res.output
    text = text_of(out.read_bytes())
    assert "关阀作业单" in text and "crew" in text
    bad = CliRunner().invoke(app, ["shutoff", "--pipe", BURST, "--pdf", str(tmp_path / "no" / "x.pdf")],
                             env=env)
    assert isinstance(bad.exception, InputError) and "no folder" in str(bad.exception)
    assert not (tmp_path / "no").exists()


def test_not_an_answer(loop, loop_settings):
    with pytest.raises(InputError):
        work_order_pdf(loop, loop_settings, {"pipe": BURST})
