"""Survey accuracy (CJJ 61-2017): limits by class and depth, classes from the survey or the point's
kind, the survey class read from survey tables (Chinese and English headers) into the twin
(migration 0011), kept by edits and history, and read back by the scan."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import sqlalchemy as sa

from analysis.accuracy import load_survey_accuracy, point_classes, point_tolerances, verdicts
from analysis.network import load_network
from analysis.pieces import combine
from analysis.scan import load_scan_network
from ingest.derive import change_attributes
from ingest.pipeline import ingest_survey
from twin.errors import InputError

E0, N0, GROUND = 410000.0, 4035000.0, 35.0


@pytest.mark.parametrize(
    "cls,h,plan,depth",
    [
        # class, centre depth (m), plan and depth limits by hand
        ("concealed", 0.6, 0.10, 0.15),  # h taken as 1 m
        ("concealed", 1.0, 0.10, 0.15),
        ("concealed", 2.4, 0.24, 0.36),  # 0.10 x 2.4, 0.15 x 2.4
        ("concealed", np.nan, 0.10, 0.15),  # depth unknown: the floor
        ("exposed", 2.4, 0.05, 0.05),  # measured where seen: depth does not matter
    ],
)
def test_limits_by_class_and_depth(cls, h, plan, depth):
    p, d = point_tolerances(np.array([cls]), np.array([h]))
    assert (p[0], d[0]) == (pytest.approx(plan), pytest.approx(depth))


def test_shipped_limits_carry_their_source():
    t = load_survey_accuracy()
    assert set(t.index) == {"exposed", "concealed"}
    assert t["source"].str.startswith("CJJ 61-2017").all() and not t["verified"].eq("true").any()


def test_class_from_the_survey_else_from_the_point():
    cls = point_classes(
        np.array(["exposed", None, None, None, "concealed", ""], dtype=object),
        np.array([None, "manhole", "valve", None, "manhole", None], dtype=object),
        np.array([None, None, None, "riser", None, "tee"], dtype=object),
    )
    # the survey's own class wins over the manhole's default
    assert cls.tolist() == ["exposed", "exposed", "exposed", "exposed", "concealed", "concealed"]


@pytest.mark.parametrize(
    "text,message",
    [
        ("class,plan_factor\nexposed,0\n", "lacks column"),
        (
            "class,plan_factor,depth_factor,min_depth_m,plan_m,depth_m,source,verified\n"
            "exposed,0,0,1,0.05,0.05,s,false\n",
            "one row each",
        ),
        (
            "class,plan_factor,depth_factor,min_depth_m,plan_m,depth_m,source,verified\n"
            "exposed,0,0,1,-1,0.05,s,false\nconcealed,0.1,0.15,1,0,0,s,false\n",
            "plan_m",
        ),
    ],
)
def test_bad_accuracy_tables(tmp_path, text, message):
    path = tmp_path / "acc.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        load_survey_accuracy(path)


def test_verdict_boundaries():
    # measured, required, uncertainty: exactly at the limit passes (the standard asks "at least")
    got = verdicts(
        np.array([0.4, 0.3, 0.5, 0.6]), np.array([0.5] * 4), np.array([0.1, 0.1, 0.0, 0.1])
    )
    assert got.tolist() == ["uncertain", "violation", "compliant", "compliant"]


HEADERS = ["物探点号", "管线类型", "特征", "附属物", "X", "Y", "地面高程", "埋深", "点类别"]


def _survey(folder, classes: dict[str, str], header: str = "点类别") -> tuple:
    """Water main W1-W2-W3 (DN300, 1.40 m to the top), its points' survey class as given."""
    points, segments = folder / "points.csv", folder / "segments.csv"
    with open(points, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow([*HEADERS[:-1], header])
        for k, pid in enumerate(("W1", "W2", "W3")):
            w.writerow(
                [
                    pid,
                    "JS",
                    "直线点" if k == 1 else "终点",
                    "",
                    f"{N0:.2f}",
                    f"{E0 + 50 * k:.2f}",
                    f"{GROUND:.3f}",
                    "1.40",
                    classes.get(pid, ""),
                ]
            )
    with open(segments, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["起点号", "终点号", "管线类型", "起点埋深", "终点埋深", "管径/断面", "材质"])
        w.writerow(["W1", "W2", "JS", "1.40", "1.40", "DN300", "铸铁"])
        w.writerow(["W2", "W3", "JS", "1.40", "1.40", "DN300", "铸铁"])
    return points, segments


@pytest.fixture(scope="module")
def surveyed(twin_settings, twin_engine, tmp_path_factory):
    folder = tmp_path_factory.mktemp("acc")
    report = ingest_survey(*_survey(folder, {"W1": "明显点", "W2": "隐蔽点"}), twin_settings)
    assert report.status == "applied", report.as_dict()["errors"]
    return twin_engine, twin_settings


def test_the_survey_class_is_read_stored_and_used(surveyed):
    engine, _ = surveyed
    with engine.connect() as conn:
        got = dict(
            conn.execute(sa.text("SELECT id, survey_class FROM current_node ORDER BY id")).all()
        )
    assert got == {"W1": "exposed", "W2": "concealed", "W3": None}
    # centre depth 1.55 m: W1-W2 concealed at W2 (0.155 / 0.2325), W2-W3 likewise (W3 unknown: concealed)
    for net in (load_network(engine), load_scan_network(engine)):
        pieces = combine(net)
        order = np.argsort(pieces.segments["id"].to_numpy())
        assert pieces.plan_tol[order] == pytest.approx([0.155, 0.155])
        assert pieces.depth_tol[order] == pytest.approx([0.2325, 0.2325])


def test_an_edit_keeps_the_class_and_the_history_keeps_the_old_one(surveyed):
    engine, settings = surveyed
    with engine.begin() as conn:
        change_attributes(conn, "ann", "node", "W3", {"survey_class": "exposed"}, settings=settings)
    with engine.begin() as conn:
        change_attributes(conn, "ann", "node", "W3", {"remarks": "resurveyed"}, settings=settings)
    with engine.connect() as conn:
        now = conn.execute(
            sa.text("SELECT survey_class, remarks, version FROM current_node WHERE id = 'W3'")
        ).one()
        old = conn.execute(
            sa.text("SELECT survey_class, op FROM node_history WHERE id = 'W3' ORDER BY version")
        ).all()
        as_of = conn.execute(
            sa.text("SELECT count(*) FROM node_as_of(now()) WHERE survey_class = 'exposed'")
        ).scalar()
    assert (now.survey_class, now.remarks, now.version) == ("exposed", "resurveyed", 3)
    assert [r.survey_class for r in old] == [None, "exposed"] and {r.op for r in old} == {"update"}
    assert as_of == 2
    with engine.begin() as conn, pytest.raises(InputError, match="survey class"):
        change_attributes(
            conn, "ann", "node", "W3", {"survey_class": "somewhat"}, settings=settings
        )


@pytest.mark.parametrize("header", ["点类别", "探测类别", "survey_class"])
def test_an_unknown_class_is_a_data_check_error(twin_settings, tmp_path, header):
    report = ingest_survey(
        *_survey(tmp_path, {"W1": "半明显", "W2": " Exposed "}, header), twin_settings, dry_run=True
    )
    assert report.status != "applied"
    errors = report.as_dict()["errors"]
    assert [e["code"] for e in errors] == ["E109"] and "半明显" in errors[0]["message"]
