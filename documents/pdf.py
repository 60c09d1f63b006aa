"""PDF basics of the documents (fpdf2): an A4 :class:`Document` with the CJK font embedded
(a subset), Chinese-first headings, a header and a footer with page numbers and a stamp line
(generated at, by, network change mark), and helpers for headings, paragraphs, key-value
blocks, tables that wrap and repeat their header, PNG pictures and SVG drawings.

Sized to be read on a phone as well as printed: one column, 11 pt body text, tables that fit
the page width. Times are the server's local time ("2026-12-03 17:05"), numbers carry units.

>>> doc = Document("关阀作业单", "Shutoff work order", generated_by="ops", change_mark="42")
>>> doc.heading("阀门 Valves")
>>> doc.table(["#", "阀门 Valve"], [["1", "V-1"], ["2", "V-2"]])
>>> doc.to_bytes()[:5]
b'%PDF-'
"""

from __future__ import annotations

import datetime as dt
import io
import math
import re
from collections.abc import Sequence
from pathlib import Path

from fpdf import FPDF
from fpdf.enums import XPos, YPos
from fpdf.fonts import FontFace
from fpdf.image_parsing import preload_image

from documents.fonts import cjk_font

__all__ = ["Document", "local_time", "quantity", "FONT"]

#: fpdf2 family names: Latin text in DejaVu Sans, Chinese in the CJK font (fpdf2 falls back
#: per glyph). The CJK font alone (Droid Sans Fallback) has no Latin letters.
FONT = "latin"
CJK = "cjk"
LATIN_FONTS = {
    "": Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),  # fonts-dejavu-core
    "B": Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"),
}
BODY_PT = 11.0
SMALL_PT = 8.0
HEADING_PT = {0: 20.0, 1: 15.0, 2: 12.5}
INK = (20, 20, 20)
MUTED = (110, 110, 110)
ACCENT = (0, 84, 147)
RULE = (190, 190, 190)
HEAD_FILL = (225, 233, 242)
#: SVG font families (attribute and CSS forms), replaced by the embedded CJK font.
_SVG_FONT_ATTR = re.compile(r"""font-family\s*=\s*("[^"]*"|'[^']*')""")
_SVG_FONT_CSS = re.compile(r"""font-family\s*:\s*[^;"}<]+""")
_SVG_TEXT = re.compile(r"<text(?=[\s>/])")
_SVG_TEXT_BODY = re.compile(r"(<text\b[^>]*>)([^<]*)(</text>)")
#: Runs of Chinese (CJK ideographs, punctuation, full-width forms) in a drawing's labels.
_CJK_RUN = re.compile(r"[\u2e80-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef]+")
_SVG_TITLE = re.compile(r"<title>.*?</title>", re.S)


def local_time(value: dt.datetime | str | None = None) -> str:
    """A time as the server's local time, ISO-like to the minute: ``2026-12-03 17:05``."""
    if value is None:
        value = dt.datetime.now().astimezone()
    elif isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is not None:
        value = value.astimezone()
    return value.strftime("%Y-%m-%d %H:%M")


def quantity(value: float | int | None, unit: str = "", digits: int = 2) -> str:
    """A number with its unit (``1.25 m``), ``-`` when missing or not finite."""
    if value is None:
        return "-"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if not math.isfinite(number):
        return "-"
    text = f"{number:.{digits}f}" if digits > 0 else f"{round(number):d}"
    return f"{text} {unit}".rstrip()


def svg_with_font(svg: str) -> str:
    """The SVG with its labels set in the embedded fonts (Chinese runs in the CJK font)."""
    svg = _SVG_TITLE.sub("", _SVG_FONT_ATTR.sub("", svg))  # and fpdf2 knows no <title>
    svg = _SVG_FONT_CSS.sub(f"font-family:{FONT}", svg)
    # fpdf2 applies only class selectors of a <style>, and has no glyph fallback in drawings:
    # name the Latin font on every text element and put each Chinese run in a CJK tspan (its
    # one face: regular)
    svg = _SVG_TEXT_BODY.sub(lambda m: m[1] + _CJK_RUN.sub(
        lambda r: f'<tspan font-family="{CJK}" font-weight="normal">{r[0]}</tspan>', m[2]) + m[3], svg)
    return _SVG_TEXT.sub(f'<text font-family="{FONT}"', svg)


class Document(FPDF):
    """An A4 portrait PDF with the CJK font, a header (title) and a footer (stamp, page n/N).

    ``title`` is the Chinese title, ``title_en`` its English; ``generated_by`` the signed-in
    user; ``change_mark`` the network change mark the document was made at.
    """

    def __init__(self, title: str, title_en: str = "", *, generated_by: str = "",
                 change_mark: str | int | None = None, generated_at: dt.datetime | None = None,
                 subject: str = "") -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.doc_title = title
        self.doc_title_en = title_en
        self.generated_by = generated_by or "-"
        self.change_mark = "-" if change_mark is None else str(change_mark)
        self.generated_at = local_time(generated_at)
        self._add_fonts()
        self.set_margins(15, 18, 15)
        self.set_auto_page_break(True, margin=18)
        self.set_title(f"{title} {title_en}".strip())
        self.set_subject(subject or title_en)
        self.set_creator("PipeTwin")
        self.set_author(self.generated_by)
        self.set_lang("zh-CN")
        self.alias_nb_pages()
        self.set_text_color(*INK)
        self.add_page()
        self._title_block()

    def _add_fonts(self) -> None:
        cjk = str(cjk_font())
        self.add_font(CJK, "", cjk)  # one face (0.4 s to parse): bold Chinese falls back to it
        for style, latin in LATIN_FONTS.items():
            self.add_font(FONT, style, str(latin if latin.is_file() else cjk))
        self.set_fallback_fonts([CJK], exact_match=False)

    def _render_styled_text_line(self, *args, **kwargs):  # noqa: ANN002, ANN003
        # fpdf2 2.8 marks the font as set on the page when a line starting with a fallback
        # glyph (Chinese) sets it inside its own q ... Q, which the Q then undoes: the next
        # line is drawn in the fallback font (garbage). Set it afresh for every line.
        try:
            return super()._render_styled_text_line(*args, **kwargs)
        finally:
            self.current_font_is_set_on_page = False

    # --- page furniture -------------------------------------------------------------------

    @property
    def stamp(self) -> str:
        """The stamp line: when, by whom, at which network change mark."""
        return (f"生成 Generated {self.generated_at} · 操作人 By {self.generated_by}"
                f" · 管网版本 Network change {self.change_mark}")

    def header(self) -> None:
        """Title on every page after the first, with a rule under it."""
        if self.page_no() == 1:
            return
        self.set_font(FONT, "", SMALL_PT)
        self.set_text_color(*MUTED)
        self.cell(0, 5, f"{self.doc_title} {self.doc_title_en}".strip(),
                  new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self._rule()
        self.set_text_color(*INK)
        self.ln(2)

    def footer(self) -> None:
        """The stamp line and ``page n / N``."""
        self.set_y(-13)
        self.set_font(FONT, "", SMALL_PT)
        self.set_text_color(*MUTED)
        width = self.epw - 22
        self.cell(width, 5, self.stamp)
        self.cell(22, 5, f"{self.page_no()} / {{nb}}", align="R")
        self.set_text_color(*INK)

    def _title_block(self) -> None:
        self.set_font(FONT, "B", HEADING_PT[0])
        self.set_text_color(*ACCENT)
        self.multi_cell(0, 9, self.doc_title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        if self.doc_title_en:
            self.set_font(FONT, "", 13)
            self.multi_cell(0, 7, self.doc_title_en, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(*MUTED)
        self.set_font(FONT, "", 9)
        self.multi_cell(0, 5, self.stamp, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(*INK)
        self._rule()
        self.ln(3)

    def _rule(self) -> None:
        self.set_draw_color(*RULE)
        self.line(self.l_margin, self.get_y(), self.w - self.r_margin, self.get_y())

    # --- content --------------------------------------------------------------------------

    def heading(self, text: str, level: int = 1, *, keep_mm: float = 30.0) -> None:
        """A heading (``level`` 1 or 2), Chinese first: ``"阀门 Valves"``; kept on one page with
        the next ``keep_mm`` of content (a picture's height)."""
        size = HEADING_PT.get(level, HEADING_PT[2])
        if self.will_page_break(size * 0.5 + 8 + min(keep_mm, self.eph - 30)):  # not alone at a foot
            self.add_page()
        self.ln(2 if level > 1 else 4)
        self.set_font(FONT, "B", size)
        self.set_text_color(*ACCENT)
        self.multi_cell(0, size * 0.5, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(*INK)
        self.ln(1.5)

    def paragraph(self, text: str, *, size: float = BODY_PT, muted: bool = False) -> None:
        """A wrapped paragraph."""
        self.set_font(FONT, "", size)
        if muted:
            self.set_text_color(*MUTED)
        self.multi_cell(0, size * 0.5, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.set_text_color(*INK)
        self.ln(1.5)

    def key_values(self, pairs: Sequence[tuple[str, object]], *, key_width_mm: float = 55) -> None:
        """A block of ``label: value`` lines (labels muted, values wrapped)."""
        self.set_font(FONT, "", BODY_PT)
        line = BODY_PT * 0.5
        for key, value in pairs:
            if self.will_page_break(line):
                self.add_page()
            self.set_text_color(*MUTED)
            y = self.get_y()
            self.multi_cell(key_width_mm, line, str(key), new_x=XPos.RIGHT, new_y=YPos.TOP)
            bottom = self.get_y() if self.get_y() > y else y + line
            self.set_text_color(*INK)
            self.set_xy(self.l_margin + key_width_mm, y)
            self.multi_cell(0, line, "-" if value is None else str(value),
                            new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            self.set_y(max(self.get_y(), bottom))
        self.ln(1.5)

    def table(self, header: Sequence[str], rows: Sequence[Sequence[object]], *,
              widths: Sequence[float] | None = None, align: str | Sequence[str] = "LEFT",
              size: float = 10.0, emphasis: Sequence[bool] | None = None) -> None:
        """A table over the page width: ``widths`` are relative column widths; cells wrap; the
        header repeats after a page break; rows flagged in ``emphasis`` are bold red."""
        self.set_font(FONT, "", size)
        head_style = FontFace(emphasis="BOLD", fill_color=HEAD_FILL, color=INK)
        with super().table(col_widths=tuple(widths) if widths else None, text_align=align,
                           line_height=size * 0.5, headings_style=head_style,
                           repeat_headings=1, borders_layout="HORIZONTAL_LINES",
                           padding=1.2, first_row_as_headings=True, width=self.epw) as tab:
            tab.row([str(h) for h in header])
            for i, values in enumerate(rows):
                style = FontFace(color=(170, 20, 20)) if emphasis and emphasis[i] else None
                tab.row(["-" if v is None else str(v) for v in values], style=style)
        self.ln(2)

    def picture(self, png: bytes, *, width_mm: float | None = None, caption: str = "") -> None:
        """A raster picture (PNG bytes) centred, at most the page width, with a caption."""
        self._place(io.BytesIO(png), width_mm, caption)

    def drawing(self, svg: str, *, width_mm: float | None = None, caption: str = "") -> None:
        """An SVG drawing placed as vectors; its text is set in the embedded CJK font."""
        self._place(io.BytesIO(svg_with_font(svg).encode()), width_mm, caption)

    def picture_height(self, png: bytes, width_mm: float | None = None) -> float:
        """How much height (mm) :meth:`picture` takes for a PNG with a one-line caption (for
        :meth:`heading`'s ``keep_mm``)."""
        return self._size(io.BytesIO(png), width_mm)[1] + 10

    def _size(self, data: io.BytesIO, width_mm: float | None) -> tuple[float, float]:
        width = min(width_mm or self.epw, self.epw)
        info = preload_image(self.image_cache, data)[2]
        height = width * info.height / info.width if info.width else width * 0.6
        room = self.h - self.b_margin - self.t_margin - 30
        if height > room:  # tall pictures shrink to fit one page, with their heading
            width, height = width * room / height, room
        return width, height

    def _place(self, data: io.BytesIO, width_mm: float | None, caption: str) -> None:
        width, height = self._size(data, width_mm)
        if self.will_page_break(height + (8 if caption else 2)):
            self.add_page()
        x = self.l_margin + (self.epw - width) / 2
        data.seek(0)
        self.image(data, x=x, y=self.get_y(), w=width, h=height)
        self.set_y(self.get_y() + height + 1)
        if caption:
            self.set_font(FONT, "", 9)
            self.set_text_color(*MUTED)
            self.multi_cell(0, 4.5, caption, align="C", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
            self.set_text_color(*INK)
        self.ln(2)

    def to_bytes(self) -> bytes:
        """The finished PDF."""
        return bytes(self.output())
