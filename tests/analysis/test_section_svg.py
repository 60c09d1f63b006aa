"""The cross-section drawing reads: numbered callouts that never overprint (pipes 0.63 m and
0.2 m apart, a collision, a crowd), the ends A and B, the roads in the title, the symbols
explained. Label boxes are estimated as the drawing places them (``analysis.svg.text_box``) and
the estimate is checked against the real fonts' advances (Pillow reading DejaVu Sans and Noto
Sans CJK)."""

from __future__ import annotations

import io
import math
import unicodedata
import xml.etree.ElementTree as ET
from pathlib import Path

import ezdxf
import numpy as np
import pytest

from analysis import svg
from analysis.proposal_report import section_from_dict
from analysis.section import section_of_network
from documents.drawing_dxf import section_dxf
from tests.analysis.test_section import E0, N0, make_network

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "analysis"
S = "{http://www.w3.org/2000/svg}"
DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
DEJAVU_BOLD = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")
NOTO_CJK = Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")


def across(pid: str, utility: str, offset: float, z: float, **size: object) -> dict:
    """A level pipe crossing the line y = N0 square at chainage ``offset``."""
    return {"id": pid, "utility": utility, **size,
            "xyz": [(E0 + offset, N0 - 10, z), (E0 + offset, N0 + 10, z)]}


#   id     utility  offset  centre z   what
CROWD = [
    across("W1", "JS", 5.00, 33.0, diameter_mm=300),
    across("G1", "RQ", 5.63, 33.2, diameter_mm=200),               # 0.63 m from W1 (centres)
    across("E1", "DL", 6.23, 33.5, width_mm=600, height_mm=400),   # 0.2 m from G1, wall to wall
    across("S1", "PS", 10.00, 32.5, diameter_mm=400, subtype="YS"),
    across("T1", "TX", 10.05, 32.55, diameter_mm=100),             # collides with S1
    # skewed 45 degrees, crossing at 10.1: a third cut at the collision
    {"id": "G2", "utility": "RQ", "diameter_mm": 150, "xyz": [(E0 + 0.1, N0 - 10, 32.0), (E0 + 20.1, N0 + 10, 32.0)]},
]
ROADS = {"W1": "人民路", "G1": "人民路", "E1": "建设路", "S1": "人民路", "T1": "建设路", "G2": None}


def crowd_section(line: list[tuple[float, float]], pipes: list[dict] = CROWD, roads: dict | None = None):
    net = make_network(pipes)
    net.segments["road"] = net.segments["id"].map(roads if roads is not None else ROADS)
    return section_of_network(net, line, crs="EPSG:4548")


def font_px(e: ET.Element) -> tuple[float, bool]:
    cls = (e.get("class") or "").split()
    return (14.0, True) if "title" in cls else (9.0, False) if "small" in cls else (11.0, False)


def label_boxes(root: ET.Element) -> tuple[np.ndarray, list[str]]:
    """Every label's box: texts by their estimated extent, a callout (circle and number) as its circle."""
    boxes, names, inside = [], [], set()
    for g in root.iter(f"{S}g"):
        if g.get("class") in ("callout", "callout-key"):
            c = g.find(f"{S}circle")
            x, y, r = (float(c.get(a)) for a in ("cx", "cy", "r"))
            t = g.find(f"{S}text")
            size, bold = font_px(t)
            tb = svg.text_box(float(t.get("x")), float(t.get("y")), t.text, size,
                              anchor=t.get("text-anchor") or "start", bold=bold)
            assert x - r <= tb[0] and tb[2] <= x + r and y - r <= tb[1] and tb[3] <= y + r + 1  # the number fits
            boxes.append((x - r, y - r, x + r, y + r))
            names.append(f"callout {t.text}")
            inside.add(id(t))
    for t in root.iter(f"{S}text"):
        assert t.get("transform") is None  # every label reads horizontally
        if id(t) in inside or not t.text:
            continue
        size, bold = font_px(t)
        boxes.append(svg.text_box(float(t.get("x")), float(t.get("y")), t.text, size,
                                  anchor=t.get("text-anchor") or "start", bold=bold))
        names.append(t.text)
    return np.asarray(boxes), names


def overlaps(boxes: np.ndarray, names: list[str]) -> list[tuple[str, str]]:
    x0, y0, x1, y1 = boxes.T
    w = np.minimum(x1[:, None], x1[None, :]) - np.maximum(x0[:, None], x0[None, :])
    h = np.minimum(y1[:, None], y1[None, :]) - np.maximum(y0[:, None], y0[None, :])
    i, j = np.nonzero(np.triu((w > 0.01) & (h > 0.01), k=1))
    return [(names[a], names[b]) for a, b in zip(i, j, strict=True)]


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.mark.parametrize("name, line", [
    ("section-crowd-1to100", [(E0, N0), (E0 + 20, N0)]),        # 1:100: 0.63 m is 24 px
    ("section-crowd-1to500", [(E0 - 60, N0), (E0 + 60, N0)]),   # 1:500: 0.63 m is 4.8 px, 0.2 m 1.5 px
])
def test_no_label_overprints_another_and_every_pipe_is_labelled(name, line, artifacts):
    sec = crowd_section(line)
    ids = [p.id for p in sec.pipes]
    assert sorted(ids) == sorted(p["id"] for p in CROWD)
    assert any(s.horizontal_m < 0 for s in sec.spacings)  # the collision is there
    doc = sec.to_svg()
    (artifacts / f"{name}.svg").write_text(doc, encoding="utf-8")
    root = ET.fromstring(doc)
    boxes, names = label_boxes(root)
    assert overlaps(boxes, names) == []
    # the scale bar stays clear of the title block
    bar = next(e for e in root.iter(f"{S}g") if e.get("class") == "scale-bar")
    frame = next(e for e in root.iter(f"{S}g") if e.get("class") == "title-block").find(f"{S}rect")
    bar_right = float(bar.find(f"{S}rect").get("x")) + float(bar.get("data-px"))
    assert float(frame.get("x")) > bar_right + 20
    # every pipe has its numbered callout, in chainage order, and its row in the table
    callouts = [g for g in root.iter(f"{S}g") if g.get("class") == "callout"]
    assert [g.get("data-id") for g in callouts] == ids
    assert [g.get("data-n") for g in callouts] == [str(n) for n in range(1, len(ids) + 1)]
    xs = [float(g.find(f"{S}circle").get("cx")) for g in callouts]
    assert xs == sorted(xs)  # spread in order: leaders do not cross to a neighbour's number
    rows = {}
    for t in root.iter(f"{S}text"):
        if "label" in (t.get("class") or "").split():
            rows.setdefault(t.get("data-id"), []).append(t.text)
    for n, p in enumerate(sec.pipes, start=1):
        assert rows[p.id][:2] == [str(n), p.id] and f"{p.top_z:.2f} / {p.bottom_z:.2f}" in rows[p.id]
    # a leader from each cut to its number: it starts on the cut's outline and ends on the circle
    k = float(root.get("data-px-per-m"))
    ox, oy, oz = (float(root.get(a)) for a in ("data-origin-x", "data-origin-y", "data-origin-z"))
    leaders = [e for e in root.iter(f"{S}line") if e.get("stroke") == "#444"]
    for p, g, ln in zip(sec.pipes, callouts, leaders, strict=True):
        c = g.find(f"{S}circle")
        assert (float(ln.get("x2")), float(ln.get("y2"))) == pytest.approx(
            (float(c.get("cx")), float(c.get("cy")) - float(c.get("r"))))
        px, pz = (float(ln.get("x1")) - ox) / k, oz + (oy - float(ln.get("y1"))) / k
        if p.shape == "circular" and p.angle_deg > 85:
            assert math.hypot(px - p.offset_m, pz - p.centre_z) == pytest.approx(p.cut_half_width_m, abs=1e-3)


def test_a_crowd_of_pipes_takes_more_rows_and_still_reads(artifacts):
    pipes = [across(f"C{i:02d}", ("JS", "RQ", "DL", "TX")[i % 4], 2 + 0.3 * i, 32 + 0.4 * (i % 3),
                    diameter_mm=100) for i in range(48)]
    sec = crowd_section([(E0, N0), (E0 + 18, N0)], pipes, roads={p["id"]: "中山路" for p in pipes})
    doc = sec.to_svg()
    (artifacts / "section-48-pipes.svg").write_text(doc, encoding="utf-8")
    root = ET.fromstring(doc)
    boxes, names = label_boxes(root)
    assert overlaps(boxes, names) == []
    callouts = [g for g in root.iter(f"{S}g") if g.get("class") == "callout"]
    assert len(callouts) == 48 and len({g.find(f"{S}circle").get("cy") for g in callouts}) >= 2


def test_ends_roads_and_symbols_explained():
    sec = crowd_section([(E0, N0), (E0 + 20, N0)])
    assert sec.roads == ["人民路", "建设路"]  # most common first; a pipe without a road adds none
    root = ET.fromstring(sec.to_svg(title="横断面 Cross-section"))
    k, ox = float(root.get("data-px-per-m")), float(root.get("data-origin-x"))
    ends = {t.get("data-end"): float(t.get("x")) for t in root.iter(f"{S}text") if t.get("data-end")}
    assert ends == pytest.approx({"A": ox, "B": ox + sec.length_m * k})  # A at the line's first point
    texts = [t.text or "" for t in root.iter(f"{S}text")]
    assert texts[0].startswith("横断面 Cross-section — 人民路、建设路  ·  1:100")
    g2 = next(p for p in sec.pipes if p.id == "G2")
    assert f"RQ DN150 ∠{g2.angle_deg:.0f}°" in texts and g2.angle_deg == pytest.approx(45)
    assert any(t.startswith("∠45° 管线与剖面线夹角") and "angle between the pipe and the section line" in t
               for t in texts)
    assert any(t.startswith("v ") and "vertical clearance" in t for t in texts)  # the collision's v
    assert any(t.startswith("A → B 剖面线起点 → 终点") for t in texts)
    assert "道路 road" in texts and "人民路、建设路" in texts  # and in the title block
    # a stored report keeps the roads and draws the same
    again = section_from_dict(sec.as_dict())
    assert [p.road for p in again.pipes] == [p.road for p in sec.pipes] and again.roads == sec.roads
    assert [t.text for t in ET.fromstring(again.to_svg()).iter(f"{S}text")] == \
        [t.text for t in ET.fromstring(sec.to_svg()).iter(f"{S}text")]


def test_no_roads_no_pipes():
    sec = crowd_section([(E0 + 30, N0), (E0 + 40, N0)])  # crosses nothing
    root = ET.fromstring(sec.to_svg())
    texts = [t.text or "" for t in root.iter(f"{S}text")]
    assert "未切到管线 no pipe cut" in texts and texts[0].startswith("横断面 Cross-section  ·  1:")
    assert overlaps(*label_boxes(root)) == []


@pytest.mark.skipif(not (DEJAVU.exists() and DEJAVU_BOLD.exists() and NOTO_CJK.exists()), reason="fonts")
def test_the_estimate_bounds_the_real_fonts():
    from PIL import ImageFont

    fonts = {b: ImageFont.truetype(str(DEJAVU_BOLD if b else DEJAVU), 100) for b in (False, True)}
    cjk = ImageFont.truetype(str(NOTO_CJK), 100)
    root = ET.fromstring(crowd_section([(E0, N0), (E0 + 20, N0)]).to_svg())
    texts = [(t.text, font_px(t)[1]) for t in root.iter(f"{S}text") if t.text]
    assert len(texts) > 60
    for content, bold in texts:
        real = sum((cjk if unicodedata.east_asian_width(ch) in "WF" else fonts[bold]).getlength(ch)
                   for ch in content)
        assert svg.text_width(content, 100, bold=bold) >= real, content


def test_the_dxf_has_the_ends_and_roads_too():
    sec = crowd_section([(E0, N0), (E0 + 20, N0)])
    doc = ezdxf.read(io.StringIO(section_dxf(sec).decode("utf-8")))
    texts = {t.dxf.text: t for t in doc.modelspace().query("TEXT")}
    assert texts["A"].dxf.align_point.x == pytest.approx(0.0)
    assert texts["B"].dxf.align_point.x == pytest.approx(sec.length_m)
    assert any(t.startswith("横断面 Cross-section — 人民路、建设路") for t in texts)
