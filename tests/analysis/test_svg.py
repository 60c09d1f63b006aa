"""SVG helpers and drawings: well-formed XML, escaped text, shapes at their scaled positions."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from analysis import svg
from analysis.section import section_of_network
from tests.analysis.test_section import E0, N0, PIPES, make_network

NS = {"s": "http://www.w3.org/2000/svg"}


def test_helpers_escape_and_format():
    doc = svg.document(100, 50, [svg.text(1, 2, "DN300 <a> & \"b\""), svg.el("circle", cx=1.23456, cy=0.0, r=2.0,
                                                                            data_id="x&y")], title="t<1>")
    root = ET.fromstring(doc)
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    assert root.find("s:text", NS).text == 'DN300 <a> & "b"'
    c = root.find("s:circle", NS)
    assert c.get("cx") == "1.235" and c.get("cy") == "0" and c.get("data-id") == "x&y"
    assert root.find("s:title", NS).text == "t<1>"


@pytest.mark.parametrize("code, colour", [("JS", "#00ffff"), ("YS", "#4c3926"), ("PS", "#4c3926"),
                                          ("RQ", "#ff00ff"), ("RS", "#ff8000"), ("DL", "#ff0000"),
                                          ("TX", "#00ff00"), ("??", "#6600cc"), (None, "#6600cc")])
def test_utility_colours(code, colour):
    assert svg.utility_colour(code) == colour


@pytest.mark.parametrize("span, step", [(10, 2), (1, 0.2), (7, 2), (100, 20), (0.3, 0.1), (0.2, 0.05)])
def test_nice_step(span, step):
    assert svg.nice_step(span) == pytest.approx(step)


def test_section_drawing_places_pipes_at_true_scale():
    sec = section_of_network(make_network(PIPES), [(E0, N0), (E0 + 20, N0)], crs="EPSG:4548")
    root = ET.fromstring(sec.to_svg())
    k = float(root.get("data-px-per-m"))
    ox, oy, oz = (float(root.get(a)) for a in ("data-origin-x", "data-origin-y", "data-origin-z"))
    # the largest map scale fitting 1000 px; k is px per metre at 96 dpi
    assert root.get("data-scale") == "1:100"  # 20 m = 200 mm = 756 px; 1:50 would be 1512 px
    assert k == pytest.approx(1000 / 100 * 96 / 25.4, abs=1e-3)
    shapes = {e.get("data-id"): e for e in root.iter() if e.get("class") == "pipe"}
    assert set(shapes) == {"A", "B", "C", "D"}
    a = shapes["A"]
    assert a.tag.endswith("circle")
    assert float(a.get("cx")) == pytest.approx(ox + 5 * k, abs=1e-3)
    assert float(a.get("cy")) == pytest.approx(oy - (33.0 - oz) * k, abs=1e-3)
    assert float(a.get("r")) == pytest.approx(0.15 * k, abs=1e-3)
    assert a.get("fill") == "#00ffff"
    b = shapes["B"]
    assert b.tag.endswith("rect") and float(b.get("width")) == pytest.approx(0.6 * k, abs=1e-3)
    assert float(b.get("y")) == pytest.approx(oy - (33.7 - oz) * k, abs=1e-3)
    c = shapes["C"]  # skewed 45 degrees: an ellipse wider than high
    assert c.tag.endswith("ellipse")
    assert float(c.get("rx")) / float(c.get("ry")) == pytest.approx(2 ** 0.5, rel=1e-3)
    labels = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "JS DN300" in labels and "DL 600X400" in labels and "PS/YS DN400" in labels
    assert "6.55" in labels  # clear distance A-B
    assert any(t and t.startswith("RQ DN400 ∠45°") for t in labels)
    assert any(t and "410000.00, 4035000.00 → 410020.00, 4035000.00" in t for t in labels)
    assert "EPSG:4548" in labels
    ground = [e for e in root.iter() if e.get("data-kind") == "ground"]
    assert len(ground) == 1
    first = ground[0].get("points").split()[0].split(",")
    assert float(first[1]) == pytest.approx(oy - (35.0 - oz) * k, abs=1e-3)
    bar = next(e for e in root.iter() if e.get("class") == "scale-bar")
    assert float(bar.get("data-px")) == pytest.approx(float(bar.get("data-length-m")) * k, abs=1e-3)
