"""The PDF basics (documents/pdf.py), read back with pypdf: Chinese and English text extracted,
the stamp and page numbers on every page, a long table repeating its header over pages, a PNG
and the real cross-section and profile drawings (SVG, Chinese labels) placed."""

from __future__ import annotations

import datetime as dt
import io
import re

import numpy as np
import pypdf
from PIL import Image

from analysis.profile import longitudinal_profile
from analysis.section import cross_section
from documents.pdf import Document, local_time, quantity, svg_with_font


def read(pdf: bytes) -> tuple[pypdf.PdfReader, list[str]]:
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    return reader, [p.extract_text() for p in reader.pages]


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), rgb).save(buf, format="PNG")
    return buf.getvalue()


def test_local_time_and_quantities():
    # (value, expected): times shown in the server's local zone, to the minute
    utc = dt.datetime(2026, 12, 3, 9, 5, tzinfo=dt.UTC)
    assert local_time(utc) == utc.astimezone().strftime("%Y-%m-%d %H:%M")
    assert local_time("2026-12-03T17:05:59") == "2026-12-03 17:05"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", local_time())
    cases = [((1.234, "m"), "1.23 m"), ((None, "m"), "-"), ((float("nan"), "m"), "-"),
             ((12, "个", 0), "12 个"), (("DN300", ""), "DN300")]
    for args, expected in cases:
        assert quantity(*args) == expected


def test_text_stamp_pages_and_a_table_over_pages(artifacts):
    doc = Document("关阀作业单", "Shutoff work order", generated_by="张工 zhang", change_mark="1234",
                   generated_at=dt.datetime(2026, 12, 3, 17, 5))
    doc.heading("阀门 Valves")
    doc.paragraph("按顺序关闭。 Close in order.")
    doc.key_values([("爆管 Burst", "JS2-JS3"), ("长度 Length", quantity(65, "m", 1))])
    rows = [[str(i), f"V-{i:03d}", "东昌路与柳园路交叉口北侧 north of the crossing"] for i in range(1, 91)]
    doc.table(["#", "阀门 Valve", "位置 Position"], rows, widths=(0.6, 1.5, 6))
    pdf = doc.to_bytes()
    (artifacts / "pdf-basics.pdf").write_bytes(pdf)
    reader, pages = read(pdf)
    assert len(pages) >= 3
    assert "关阀作业单" in pages[0] and "Shutoff work order" in pages[0]
    assert "爆管 Burst" in pages[0] and "65.0 m" in pages[0]
    for n, text in enumerate(pages, 1):
        assert "管网版本 Network change 1234" in text and "2026-12-03 17:05" in text
        assert f"{n} / {len(pages)}" in text
        if n > 1:  # the header of the table repeats on every page it runs over
            assert "阀门 Valve" in text
    order = [int(m) for m in re.findall(r"V-(\d{3})", "".join(pages))]
    assert order == list(range(1, 91))
    fonts = {f["/BaseFont"] for p in reader.pages for f in p["/Resources"]["/Font"].values()}
    assert any("DroidSansFallback" in str(f) for f in fonts)  # the CJK font is embedded (a subset)


def test_pictures_and_drawings(small_twin, artifacts):
    line = "410020,4034980,410020,4035020"
    sec = cross_section(small_twin, line)
    prof = longitudinal_profile(small_twin, "JS1", "JS4")
    doc = Document("图件 Drawings", "Drawings", generated_by="tests", change_mark=1)
    doc.picture(png(400, 200, (200, 30, 30)), caption="红色块 red block")
    doc.drawing(sec.to_svg(), caption="横断面 Cross-section")
    doc.drawing(prof.to_svg(), caption="纵断面 Profile")
    pdf = doc.to_bytes()
    (artifacts / "pdf-drawings.pdf").write_bytes(pdf)
    reader, pages = read(pdf)
    text = "".join(pages)
    assert "地面" in text and "ground" in text  # the section's Chinese and English labels
    crossed = [p["id"] for p in sec.as_dict()["pipes"]]
    assert len(crossed) == 3  # water, storm and power run across the line
    for pipe in crossed:  # each pipe is labelled in the drawing
        assert pipe in text
    images = [im for p in reader.pages for im in p.images]
    assert len(images) == 1
    pixels = np.asarray(images[0].image.convert("RGB"))
    assert pixels.shape[:2] == (200, 400) and tuple(pixels[100, 200]) == (200, 30, 30)


def test_svg_fonts_are_the_embedded_ones():
    svg = ('<svg xmlns="http://www.w3.org/2000/svg"><title>t</title><style>text{font-family:Arial;'
           'font-size:9px}</style><text x="1" y="2" font-family="Arial">地面 ground 横断面</text></svg>')
    out = svg_with_font(svg)
    assert "<title>" not in out and "Arial" not in out
    assert out.count('<tspan font-family="cjk" font-weight="normal">') == 2 and ">地面</tspan> ground <" in out


def test_lines_after_a_chinese_start_keep_their_font():
    # fpdf2 2.8 drew the line after one starting with a Chinese (fallback) glyph in the CJK font,
    # which has no Latin letters: wrapped header cells and captions came out as garbage
    doc = Document("换行 Wrapping", "Wrapping")
    doc.table(["多停管段 More pipes", "多停用户 More customers", "备注 Note"], [["阀门 V1", "2", "3"]],
              widths=(1.6, 2, 6))  # the first two headers wrap after their Chinese
    doc.paragraph("红圈数字为关阀顺序，高亮为隔离管段。 Numbers: closing order; highlighted: isolated "
                  "pipes; grey squares: failed valves.", size=9, muted=True)
    text = read(doc.to_bytes())[1][0]
    for words in ("pipes", "customers", "阀门 V1", "failed", "valves."):
        assert words in text
