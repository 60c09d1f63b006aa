"""3D pictures rendered off-screen with pyvista: real renders of the small network, checked
pixel by pixel against where the camera puts the pipes (:meth:`Picture.project`, itself
checked against VTK's own world-to-display transform). Pictures are saved to
``test-artifacts/documents/`` for a look."""

from __future__ import annotations

import csv
import io
import threading

import numpy as np
import pytest
import pyvista as pv
from PIL import Image

from analysis.proposal import check_proposal
from analysis.proposal_input import read_proposal
from analysis.shutoff import shutoff
from documents.pictures import (
    Camera,
    ExtraPipe,
    Picture,
    finding_picture,
    place_camera,
    proposal_extras,
    shutoff_picture,
    site_picture,
)
from ingest.pipeline import ingest_survey
from ingest.sample import POINT_HEADERS, SEGMENT_HEADERS
from twin.errors import InputError

E0, N0 = 410000.0, 4035000.0
#: JS1-JS2 (DN300, 1.40 m to the top under ground 35.20-35.18): its centre about 33.65 m.
WATER_Z = 35.19 - 1.4 - 0.15
#: A proposed gas main DN200 crossing JS1-JS2 square at E 410020, its top 0.10 m under the water.
GAS_Z = WATER_Z - 0.15 - 0.10 - 0.10
SIZE = (960, 720)


# ------------------------------------------------------------------------------- pixel tests
def pixels(pic: Picture) -> np.ndarray:
    img = Image.open(io.BytesIO(pic.png))
    assert img.format == "PNG" and img.size == (pic.width, pic.height)
    return np.asarray(img.convert("RGB")).astype(int)


def is_water(rgb: np.ndarray) -> np.ndarray:
    """Cyan (CJJ 61 water 0,255,255), shaded and seen through the ground: green and blue high."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return (g - r > 50) & (b - r > 50) & (abs(g - b) < 60)


def is_gas(rgb: np.ndarray) -> np.ndarray:
    """Magenta (gas 255,0,255): red and blue high, green low."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return (r - g > 60) & (b - g > 60)


def is_burst(rgb: np.ndarray) -> np.ndarray:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return (r > 120) & (g < 70) & (b < 70)


def is_valve_yellow(rgb: np.ndarray) -> np.ndarray:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return (r > 200) & (g > 160) & (b < 90)


def hits(img: np.ndarray, px: np.ndarray, test, reach: int = 2) -> np.ndarray:
    """Per pixel position: whether any pixel within ``reach`` passes ``test``."""
    h, w, _ = img.shape
    out = []
    for c, r in np.round(px).astype(int):
        win = img[
            max(r - reach, 0) : min(r + reach + 1, h), max(c - reach, 0) : min(c + reach + 1, w)
        ]
        out.append(bool(test(win).any()))
    return np.array(out)


def free_of_labels(pic: Picture, px: np.ndarray, pad: float = 4) -> np.ndarray:
    """Pixels inside the picture and outside every label box (and the title's and legend's band)."""
    ok = (
        (px[:, 0] > 10)
        & (px[:, 0] < pic.width - 10)
        & (px[:, 1] > 40)
        & (px[:, 1] < pic.height - 40)
    )
    for lb in pic.labels:
        x0, y0, x1, y1 = lb["box"]
        ok &= ~(
            (px[:, 0] > x0 - pad)
            & (px[:, 0] < x1 + pad)
            & (px[:, 1] > y0 - pad)
            & (px[:, 1] < y1 + pad)
        )
    return ok


def line(a, b, n: int = 60) -> np.ndarray:
    t = np.linspace(0, 1, n)[:, None]
    return np.asarray(a, float) * (1 - t) + np.asarray(b, float) * t


def assert_not_blank(img: np.ndarray) -> None:
    assert img.std() > 15
    q = img // 32  # 8 levels per channel
    colours = np.count_nonzero(
        np.bincount((q[..., 0] * 64 + q[..., 1] * 8 + q[..., 2]).ravel(), minlength=512)
    )
    assert colours >= 8, colours


# ---------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def finding_pic(small_twin, twin_settings, artifacts) -> Picture:
    """A real proposal finding: a gas main DN200 passing 0.10 m under the water main JS1-JS2
    (the rule asks 0.15 m), its picture with the proposal drawn as an extra pipe."""
    gas = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {
                    "id": "P1",
                    "utility": "RQ",
                    "z_reference": "top",
                    "pressure_mpa": 0.2,
                    "size": "DN200",
                },
                "geometry": {
                    "type": "LineString",
                    "coordinates": [[E0 + 20, N0 - 6, GAS_Z + 0.1], [E0 + 20, N0 + 6, GAS_Z + 0.1]],
                },
            }
        ],
    }
    report = check_proposal(small_twin, gas, twin_settings)
    (finding,) = [f.as_dict() for f in report.findings if f.kind == "clearance_vertical"]
    assert set(finding["ids"]) == {"P1", "JS1-JS2"} and finding["measured_m"] == pytest.approx(
        0.10, abs=0.01
    )
    extras = proposal_extras(read_proposal(gas, twin_settings, engine=small_twin))
    assert [(e.id, e.utility, e.diameter_mm) for e in extras] == [("P1", "RQ", 200.0)]
    assert extras[0].coords[:, 2] == pytest.approx([GAS_Z, GAS_Z])  # centreline heights
    pic = finding_picture(small_twin, finding, extra=extras, size=SIZE)
    (artifacts / "picture-finding.png").write_bytes(pic.png)
    return pic


@pytest.fixture(scope="module")
def valve_twin(small_twin, twin_settings, tmp_path_factory):
    """Beside the small network (300 m east): a water main with three valves around a burst.

    W1 (plant) - W2 (valve) - W3 (tee) - W4 (valve) - W5, and W3 - W6 (valve) - W7 north.
    """
    folder = tmp_path_factory.mktemp("valves")
    e = E0 + 300
    points = [
        ("W1", "", "水厂", e, N0),
        ("W2", "", "阀门", e + 20, N0),
        ("W3", "三通", "", e + 40, N0),
        ("W4", "", "阀门", e + 60, N0),
        ("W5", "终点", "", e + 80, N0),
        ("W6", "", "阀门", e + 40, N0 + 20),
        ("W7", "终点", "", e + 40, N0 + 40),
    ]
    with open(folder / "points.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(POINT_HEADERS)
        for pid, feat, app, x, y in points:
            row = dict.fromkeys(POINT_HEADERS, "")
            row.update(
                {
                    "物探点号": pid,
                    "管线类型": "JS",
                    "特征": feat,
                    "附属物": app,
                    "X": f"{y:.2f}",
                    "Y": f"{x:.2f}",
                    "地面高程": "35.000",
                    "埋深": "1.20",
                }
            )
            w.writerow(row.values())
    with open(folder / "segments.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(SEGMENT_HEADERS)
        for a, b in (
            ("W1", "W2"),
            ("W2", "W3"),
            ("W3", "W4"),
            ("W4", "W5"),
            ("W3", "W6"),
            ("W6", "W7"),
        ):
            row = dict.fromkeys(SEGMENT_HEADERS, "")
            row.update(
                {
                    "起点号": a,
                    "终点号": b,
                    "管线类型": "JS",
                    "起点埋深": "1.20",
                    "终点埋深": "1.20",
                    "管径/断面": "DN200",
                    "材质": "PE",
                    "状态": "active",
                }
            )
            w.writerow(row.values())
    report = ingest_survey(
        folder / "points.csv", folder / "segments.csv", twin_settings, scope="valves"
    )
    assert report.status == "applied", report.as_dict()["errors"]
    return small_twin


# ---------------------------------------------------------------------------------- the tests
def test_projection_is_vtks():
    """Picture.project against VTK's own world-to-display transform, off-axis and wide."""
    cam = Camera((410030.0, 4034970.0, 60.0), (410020.0, 4035000.0, 33.0), (0.0, 0.0, 1.0), 30.0)
    pts = np.array(
        [[410020.0, 4035000.0, 33.0], [410025.0, 4035004.0, 34.5], [410012.0, 4034995.0, 32.0]]
    )
    width, height = 800, 500
    origin = np.array([410020.0, 4035000.0, 33.0])
    plotter = pv.Plotter(off_screen=True, window_size=(width, height))
    try:
        plotter.add_mesh(pv.Sphere(center=(0, 0, 0)))
        plotter.camera_position = [
            tuple(np.subtract(cam.position, origin)),
            tuple(np.subtract(cam.focal_point, origin)),
            cam.up,
        ]
        plotter.camera.view_angle = cam.view_angle_deg
        plotter.ren_win.Render()
        ren = plotter.renderer
        vtk_px = []
        for p in pts - origin:
            ren.SetWorldPoint(*p, 1.0)
            ren.WorldToDisplay()
            x, y, _ = ren.GetDisplayPoint()
            vtk_px.append((x, height - y))
    finally:
        plotter.close()
    ours = Picture(b"", width, height, cam).project(pts)
    assert ours == pytest.approx(np.array(vtk_px), abs=0.6)
    behind = Picture(b"", width, height, cam).project(np.array([[410040.0, 4034940.0, 90.0]]))
    assert np.isnan(behind).all()


def test_finding_picture_shows_both_pipes_where_the_camera_puts_them(finding_pic):
    img = pixels(finding_pic)
    assert img.shape == (SIZE[1], SIZE[0], 3)
    assert_not_blank(img)
    # the water main along N0 and the gas main along E0 + 20: sample their centrelines in view,
    # away from the crossing (the other pipe there) and from the labels
    water = line((E0 + 14, N0, WATER_Z), (E0 + 26, N0, WATER_Z))
    gas = line((E0 + 20, N0 - 5, GAS_Z), (E0 + 20, N0 + 5, GAS_Z))
    for xyz, test in ((water, is_water), (gas, is_gas)):
        px = finding_pic.project(xyz)
        crossing = finding_pic.project(np.array([[E0 + 20, N0, WATER_Z]]))[0]
        keep = free_of_labels(finding_pic, px) & (np.linalg.norm(px - crossing, axis=1) > 30)
        assert keep.sum() >= 20
        assert hits(img, px[keep], test).mean() >= 0.95
        # 1.2 m beside the pipe (plan) there is ground, not pipe: the pixels are where projected
        side = xyz + ([0, 1.2, 0] if test is is_water else [1.2, 0, 0])
        spx = finding_pic.project(side)
        skeep = free_of_labels(finding_pic, spx) & (np.linalg.norm(spx - crossing, axis=1) > 30)
        assert hits(img, spx[skeep], test, reach=0).mean() <= 0.1


def test_finding_picture_labels_and_dimension(finding_pic):
    texts = {lb["kind"]: [] for lb in finding_pic.labels}
    for lb in finding_pic.labels:
        texts[lb["kind"]].append(lb["text"])
    assert any("给水 DN300 埋深1.40m" in t and "JS1-JS2" in t for t in texts["subject"])
    assert any(t.startswith("拟建 燃气 DN200") and "P1" in t for t in texts["subject"])
    (dim,) = texts["dimension"]
    assert "0.10 m" in dim and "≥ 0.15 m" in dim
    assert "垂直净距" in finding_pic.title and "JS1-JS2" in finding_pic.title
    # the dimension line is drawn (dark) between the pipes' walls at the crossing
    img = pixels(finding_pic)
    d = next(lb for lb in finding_pic.labels if lb["kind"] == "dimension")
    c, r = np.round(d["px"]).astype(int)
    win = img[r - 6 : r + 7, c - 6 : c + 7]
    assert (win.sum(axis=2) < 120).any()
    # the camera looks down at the finding from the side, at an angle
    view = np.subtract(finding_pic.camera.focal_point, finding_pic.camera.position)
    elevation = np.degrees(np.arctan2(-view[2], np.hypot(*view[:2])))
    assert 15 < elevation < 60


def test_shutoff_picture_numbers_the_valves_in_order(valve_twin, artifacts):
    answer = shutoff(valve_twin, pipe="W2-W3").as_dict()
    order = {v["id"]: v["order"] for v in answer["valves"]}
    assert set(order) == {"W2", "W4", "W6"}  # the answer the picture draws
    pic = shutoff_picture(valve_twin, answer, size=SIZE)
    (artifacts / "picture-shutoff.png").write_bytes(pic.png)
    img = pixels(pic)
    assert_not_blank(img)
    valves = [lb for lb in pic.labels if lb["kind"] == "valve"]
    assert {lb["id"]: lb["text"] for lb in valves} == {k: str(v) for k, v in order.items()}
    for lb in valves:  # each number sits on a yellow box right above its valve
        x0, y0, x1, y1 = np.round(lb["box"]).astype(int)
        assert is_valve_yellow(img[y0:y1, x0:x1]).mean() > 0.3
        assert lb["px"][1] - y1 < 40 and x0 <= lb["px"][0] <= x1
    # the burst pipe is red where projected
    burst = pic.project(line((E0 + 322, N0, 33.7), (E0 + 338, N0, 33.7), 30))
    keep = free_of_labels(pic, burst)
    assert keep.sum() >= 10 and hits(img, burst[keep], is_burst).mean() >= 0.9
    assert "W2-W3" in pic.title and "3 个阀门" in pic.title


def test_shutoff_picture_marks_a_failed_valve(small_twin, artifacts):
    answer = shutoff(small_twin, pipe="JS1-JS2").as_dict()
    pic = shutoff_picture(small_twin, answer, size=(640, 480))
    (artifacts / "picture-shutoff-failed.png").write_bytes(pic.png)
    texts = {lb["id"]: lb["text"] for lb in pic.labels if lb["kind"] == "valve"}
    assert texts == {"JS3": "1", "JS5": "× JS5"}  # JS5 will not turn (无法关闭)
    assert (pic.width, pic.height) == (640, 480) and pixels(pic).shape == (480, 640, 3)


def test_site_picture_shows_every_utility_within_reach(small_twin, artifacts):
    pic = site_picture(small_twin, E0 + 30, N0, radius_m=10.0, highlight=["JS1-JS2"], size=SIZE)
    (artifacts / "picture-site.png").write_bytes(pic.png)
    img = pixels(pic)
    assert_not_blank(img)
    labelled = {lb["id"] for lb in pic.labels}
    # within 10 m of (E0 + 30, N0): the water main, its branch, the storm sewer 10 m south and
    # the duct bank 10 m north; not the hydrant's far end JS6 (20 m north) beyond the site
    assert {"JS1-JS2", "JS2-JS5", "YS1-YS2", "DL1-DL2"} <= labelled
    assert [lb["id"] for lb in pic.labels if lb["kind"] == "subject"] == ["JS1-JS2"]
    px = pic.project(line((E0 + 22, N0, WATER_Z), (E0 + 38, N0, WATER_Z), 40))
    keep = free_of_labels(pic, px)
    assert hits(img, px[keep], is_water).mean() >= 0.9


def test_an_empty_place_and_the_camera_of_a_place(small_twin):
    pic = site_picture(small_twin, E0 + 500, N0 + 500, radius_m=5.0, size=(320, 240))
    assert [lb for lb in pic.labels if lb["kind"] in ("pipe", "subject")] == []
    assert "开挖现场" in pic.title and pixels(pic).shape == (240, 320, 3)
    cam = place_camera(E0, N0, 33.0, size=(640, 480))
    assert Picture(b"", 640, 480, cam).project(np.array([[E0, N0, 33.0]]))[0] == pytest.approx(
        [320, 240]
    )
    corners = Picture(b"", 640, 480, cam).project(
        np.array([[E0 - 3, N0 - 3, 33.0], [E0 + 3, N0 + 3, 33.0]])
    )
    assert ((corners > 0) & (corners < [640, 480])).all()


def test_pictures_render_from_worker_threads(small_twin):
    out: dict[int, Picture] = {}

    def draw(k: int) -> None:
        out[k] = site_picture(small_twin, E0 + 20 + 10 * k, N0, radius_m=8.0, size=(320, 240))

    threads = [threading.Thread(target=draw, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(out) == [0, 1]
    for pic in out.values():
        assert_not_blank(pixels(pic))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda e: finding_picture(e, {"kind": "collision", "ids": ["JS1-JS2"]}),
            "needs its place",
        ),
        (lambda e: finding_picture(e, {"x": E0, "y": N0}, size=(10, 10)), "64 to 8192"),
        (lambda e: site_picture(e, E0, N0, radius_m=-1), "radius"),
        (lambda e: shutoff_picture(e, {"valves": [], "isolated_pipes": []}), "needs the burst"),
        (
            lambda e: finding_picture(
                e,
                {"x": E0, "y": N0, "ids": ["X"]},
                extra=[ExtraPipe("X", "JS", np.array([[E0, N0, np.nan]]))],
            ),
            "two or more finite",
        ),
    ],
)
def test_bad_requests_are_input_errors(small_twin, call, message):
    with pytest.raises(InputError, match=message):
        call(small_twin)
