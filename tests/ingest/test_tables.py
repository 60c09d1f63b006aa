"""Reading survey tables: encodings, delimiters, XLSX, header names, mapping files, malformed input.

Readable variants of the small sample must give exactly the frames the plain UTF-8 CSV gives.
Malformed input must end in :class:`twin.errors.InputError` from ``read_survey`` (and a
rejected report from ``ingest_survey``) whose message names the problem: never another
exception.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest

from ingest.tables import (
    POINT_COLUMNS,
    POINT_REQUIRED,
    SEGMENT_COLUMNS,
    TOO_LARGE,
    SurveyTables,
    TableLimits,
    check_table_size,
    load_column_mapping,
    read_survey,
    read_table,
)
from tests.ingest.test_checks import CHECK_FILES, SAMPLE, P, S, Survey, check, prepared, seg
from twin.errors import InputError


@pytest.fixture(scope="module")
def reference() -> SurveyTables:
    return read_survey(SAMPLE / P, SAMPLE / S)


def assert_same(tables: SurveyTables, reference: SurveyTables) -> None:
    pd.testing.assert_frame_equal(tables.points, reference.points)
    pd.testing.assert_frame_equal(tables.segments, reference.segments)


def test_sample_columns_and_rows(reference: SurveyTables) -> None:
    assert list(reference.points.columns) == [*POINT_COLUMNS, "_row"]
    assert list(reference.segments.columns) == [*SEGMENT_COLUMNS, "_row"]
    assert reference.points["_row"].tolist() == list(range(2, 13))
    assert reference.points.loc[0, "x"] == "4035000.00"  # X is the northing column, read as text
    assert reference.segments["id"].isna().all()  # no 管段编号 in the sample
    assert [f.name for f in reference.files] == [P, S]
    assert reference.files[0].encoding == "utf-8"
    assert reference.files[0].rows == 11 and reference.files[1].rows == 8
    assert len(reference.files[0].sha256) == 64


# -- encodings and delimiters ---------------------------------------------------------------------
def write_bytes(folder: Path, survey: Survey, encode: Callable[[str], bytes], delimiter: str = ",",
                lineterminator: str = "\n") -> tuple[Path, Path]:
    paths = []
    for name in (P, S):
        path = folder / name
        path.write_bytes(encode(survey.text(name, delimiter, lineterminator)))
        paths.append(path)
    return paths[0], paths[1]


# case          bytes of the file                                   delimiter  line end  encoding recorded
TEXT_VARIANTS = [
    ("utf8",        lambda t: t.encode("utf-8"),                        ",",  "\n",   "utf-8"),
    ("utf8_bom",    lambda t: b"\xef\xbb\xbf" + t.encode("utf-8"),      ",",  "\n",   "utf-8-sig"),
    ("gbk",         lambda t: t.encode("gbk"),                          ",",  "\n",   "gb18030"),
    ("gb18030",     lambda t: t.encode("gb18030"),                      ",",  "\n",   "gb18030"),
    ("utf16",       lambda t: t.encode("utf-16"),                       ",",  "\n",   "utf_16"),
    ("tab",         lambda t: t.encode("utf-8"),                        "\t", "\n",   "utf-8"),
    ("tab_gbk",     lambda t: t.encode("gbk"),                          "\t", "\r\n", "gb18030"),
    ("semicolon",   lambda t: t.encode("utf-8"),                        ";",  "\n",   "utf-8"),
    ("crlf",        lambda t: t.encode("utf-8"),                        ",",  "\r\n", "utf-8"),
]


@pytest.mark.parametrize(("encode", "delimiter", "lineterminator", "encoding"), [v[1:] for v in TEXT_VARIANTS],
                         ids=[v[0] for v in TEXT_VARIANTS])
def test_text_variants_read_like_the_sample(tmp_path: Path, reference: SurveyTables, encode, delimiter: str,
                                            lineterminator: str, encoding: str) -> None:
    tables = read_survey(*write_bytes(tmp_path, Survey(), encode, delimiter, lineterminator))
    assert_same(tables, reference)
    assert [f.encoding for f in tables.files] == [encoding, encoding]


def test_gb18030_only_characters_survive(tmp_path: Path) -> None:
    # 𠮷 (U+20BB7) is a four-byte GB18030 sequence GBK cannot hold.
    survey = Survey().set(P, "JS4", "备注", "𠮷野家门口")
    tables = read_survey(*write_bytes(tmp_path, survey, lambda t: t.encode("gb18030")))
    assert tables.points.loc[3, "remarks"] == "𠮷野家门口"
    assert tables.files[0].encoding == "gb18030"


@pytest.mark.parametrize("encoding", ["gbk", "GB18030", "gb2312"])
def test_encoding_given(tmp_path: Path, reference: SurveyTables, encoding: str) -> None:
    tables = read_survey(*write_bytes(tmp_path, Survey(), lambda t: t.encode("gbk")), encoding=encoding)
    assert_same(tables, reference)
    assert tables.files[0].encoding == encoding


# -- XLSX -----------------------------------------------------------------------------------------
def test_xlsx_with_text_cells(tmp_path: Path, reference: SurveyTables) -> None:
    survey = Survey()
    paths = []
    for name in (P, S):
        rows = survey.tables[name]
        path = tmp_path / name.replace(".csv", ".xlsx")
        pd.DataFrame(rows[1:], columns=rows[0]).to_excel(path, index=False)
        paths.append(path)
    tables = read_survey(*paths)
    assert_same(tables, reference)
    assert [f.name for f in tables.files] == ["points.xlsx", "segments.xlsx"]
    assert tables.files[0].encoding is None


def number(text: str) -> object:
    try:
        return float(text) if text else None
    except ValueError:
        return text


def write_xlsx_numbers(survey: Survey, folder: Path, sheet: str) -> tuple[Path, Path]:
    """As a contractor's workbook: numbers as numeric cells, a named sheet, a blank row."""
    paths = []
    for name in (P, S):
        wb = openpyxl.Workbook()
        ws = wb.active
        ws.title = sheet
        rows = survey.tables[name]
        ws.append(rows[0])
        for i, r in enumerate(rows[1:]):
            if i == 3:
                ws.append([None] * len(r))  # an empty row: skipped, but counted in row numbers
            ws.append([number(v) for v in r])
        path = folder / name.replace(".csv", ".xlsx")
        wb.save(path)
        paths.append(path)
    return paths[0], paths[1]


def test_xlsx_with_numeric_cells_checks_clean(tmp_path: Path) -> None:
    points, segments = write_xlsx_numbers(Survey(), tmp_path, "管线点成果表")
    report = check(points, segments)
    assert report.status == "checked"
    assert dict(report.issue_counts) == {}
    assert report.counts == {"nodes": 11, "segments": 8, "valves": 2, "sources": 1, "customers": 1}
    tables = read_survey(points, segments)
    assert tables.points["_row"].tolist() == [2, 3, 4, 6, 7, 8, 9, 10, 11, 12, 13]
    assert float(tables.points.loc[0, "x"]) == 4035000.0


def test_xlsx_row_numbers_after_an_empty_row(tmp_path: Path) -> None:
    points, segments = write_xlsx_numbers(Survey().set(P, "JS5", "地面高程", "abc"), tmp_path, "Sheet1")
    report = check(points, segments)
    issue = next(i for i in report.issues if i.code == "E101")
    assert (issue.file, issue.row, issue.ids) == ("points.xlsx", 7, ["JS5"])


# -- header names ---------------------------------------------------------------------------------
ENGLISH_POINTS = {"物探点号": "point_id", "图上点号": "map_id", "管线类型": "utility", "特征": "feature",
                  "附属物": "appurtenance", "X": "x", "Y": "y", "地面高程": "ground_z", "埋深": "depth",
                  "井底深": "well_depth", "偏心井点号": "eccentric_well_id", "图幅号": "sheet",
                  "探测日期": "survey_date", "备注": "remarks"}
ENGLISH_SEGMENTS = {"起点号": "from_id", "终点号": "to_id", "管线类型": "utility", "起点埋深": "from_depth",
                    "终点埋深": "to_depth", "管径/断面": "size", "材质": "material", "埋设方式": "burial",
                    "压力/电压": "pressure", "电缆条数": "cables", "总孔数": "holes_total",
                    "已用孔数": "holes_used", "流向": "flow", "建设年代": "built", "权属单位": "owner",
                    "道路名称": "road", "状态": "status", "备注": "remarks"}
ENGLISH_VARIANTS = {"point_id": "Point ID", "ground_z": "GROUND_Z", "x": "Northing", "y": "Easting",
                    "from_id": "From", "to_id": "TO-ID", "size": "size", "from_depth": "From Depth"}


def test_english_headers(tmp_path: Path, reference: SurveyTables) -> None:
    survey = Survey().rename_columns(P, ENGLISH_POINTS).rename_columns(S, ENGLISH_SEGMENTS)
    assert_same(read_survey(*survey.write(tmp_path / "snake")), reference)
    survey.rename_columns(P, ENGLISH_VARIANTS).rename_columns(S, ENGLISH_VARIANTS)
    assert survey.tables[P][0][:2] == ["Point ID", "map_id"]
    assert_same(read_survey(*survey.write(tmp_path / "spaced")), reference)


def test_headers_with_units_and_spaces(tmp_path: Path, reference: SurveyTables) -> None:
    survey = Survey().rename_columns(P, {
        "地面高程": "地面高程(m)", "埋深": " 埋深（m） ", "X": "X (m)", "Y": " Y坐标(m)", "物探点号": "\ufeff物探点号 ",
        "井底深": "井底深 (米)",
    }).rename_columns(S, {"起点埋深": "起点埋深(m)", "终点埋深": "终点 埋深(m)", "管径/断面": "管径/断面(mm)",
                          "压力/电压": "压力/电压(MPa/kV)"})
    assert_same(read_survey(*survey.write(tmp_path)), reference)


def test_values_with_surrounding_spaces(tmp_path: Path, reference: SurveyTables) -> None:
    survey = Survey().set(P, "JS1", "管线类型", "  JS ").set(S, "JS1-JS2", "管径/断面", " DN300  ")
    assert_same(read_survey(*survey.write(tmp_path)), reference)


CONTRACTOR_POINTS = {"物探点号": "编号", "管线类型": "管种", "X": "北坐标", "Y": "东坐标", "地面高程": "地面标高H"}
CONTRACTOR_SEGMENTS = {"起点号": "起", "终点号": "止", "管径/断面": "口径"}
MAPPING = {"编号": "point_id", "管种": "utility", "北坐标": "x", "东坐标": "y", "地面标高H": "ground_z",
           "起": "from_id", "止": "to_id", "口径": "size"}


def contractor(folder: Path) -> tuple[Path, Path]:
    survey = Survey().rename_columns(P, CONTRACTOR_POINTS).rename_columns(S, CONTRACTOR_SEGMENTS)
    return survey.write(folder)


# case            mapping file name  bytes of the mapping file
MAPPING_FILES = [
    ("json",        "columns.json", lambda: json.dumps(MAPPING, ensure_ascii=False).encode("utf-8")),
    ("csv",         "columns.csv",  lambda: "".join(f"{k},{v}\n" for k, v in MAPPING.items()).encode("utf-8")),
    ("csv_header",  "columns.csv",  lambda: ("header,column\n" + "".join(
        f"{k},{v}\n" for k, v in MAPPING.items())).encode("utf-8-sig")),
    ("csv_gbk",     "columns.csv",  lambda: "".join(f"{k}, {v}\r\n" for k, v in MAPPING.items()).encode("gbk")),
]


@pytest.mark.parametrize(("name", "content"), [m[1:] for m in MAPPING_FILES], ids=[m[0] for m in MAPPING_FILES])
def test_column_mapping_file(tmp_path: Path, reference: SurveyTables, name: str, content) -> None:
    points, segments = contractor(tmp_path)
    with pytest.raises(InputError) as err:
        read_survey(points, segments)
    assert err.value.code == "F001" and "--columns" in err.value.message
    (tmp_path / name).write_bytes(content())
    mapping = load_column_mapping(tmp_path / name)
    assert_same(read_survey(points, segments, mapping=mapping), reference)
    assert check(points, segments, mapping=mapping).status == "checked"


def test_no_mapping_file() -> None:
    assert load_column_mapping(None) == {}


# case             mapping file name  content                               the message names
BAD_MAPPINGS = [
    ("bad_json",     "columns.json", b'{"\xe7\xbc\x96\xe5\x8f\xb7": point_id}', "not valid JSON"),
    ("json_list",    "columns.json", b'["point_id"]',                        "JSON object"),
    ("unknown_col",  "columns.json", '{"编号": "point_no"}'.encode(),         "point_no"),
    ("csv_typo",     "columns.csv",  "编号,point_id\n高程,groundz\n".encode(), "groundz"),
    ("binary",       "columns.csv",  bytes(range(128, 256)) * 4,             "neither UTF-8 nor GBK"),
    ("missing",      "nowhere.json", None,                                   "cannot read"),
]


@pytest.mark.parametrize(("name", "content", "words"), [m[1:] for m in BAD_MAPPINGS],
                         ids=[m[0] for m in BAD_MAPPINGS])
def test_bad_mapping_file(tmp_path: Path, name: str, content: bytes | None, words: str) -> None:
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(InputError) as err:
        load_column_mapping(tmp_path / name)
    assert words in err.value.message and name in err.value.message


# -- blank lines and empty rows -------------------------------------------------------------------
def test_blank_lines_keep_file_row_numbers(tmp_path: Path) -> None:
    survey = Survey().set(P, "JS5", "埋深", "abc")
    points, segments = survey.write(tmp_path)
    text = points.read_text(encoding="utf-8")
    points.write_text("\n" + text.replace("\nJS3", "\n\n,,,,,,,,,,,,,\nJS3") + ",,\n\n", encoding="utf-8")
    tables = read_survey(points, segments)
    assert tables.points["point_id"].tolist() == [r[0] for r in Survey().tables[P][1:]]
    # line 1 blank, 2 header, 3 JS1, 4 JS2, 5 blank, 6 commas, 7 JS3, 8 JS4, 9 JS5
    assert tables.points["_row"].tolist()[:5] == [3, 4, 7, 8, 9]
    report = check(points, segments)
    assert dict(report.issue_counts) == {"E101": 1}
    assert (report.issues[0].row, report.issues[0].ids) == (9, ["JS5"])


# -- malformed input ------------------------------------------------------------------------------
Maker = Callable[[Path], tuple[Path, Path]]


def with_points(data: bytes, name: str = P) -> Maker:
    def make(folder: Path) -> tuple[Path, Path]:
        segments = Survey().write(folder)[1]
        (folder / name).write_bytes(data)
        return folder / name, segments
    return make


def with_segments(data: bytes) -> Maker:
    def make(folder: Path) -> tuple[Path, Path]:
        points, segments = Survey().write(folder)
        segments.write_bytes(data)
        return points, segments
    return make


def with_survey(mutation: Callable[[Survey], Survey]) -> Maker:
    return lambda folder: mutation(Survey()).write(folder)


def xlsx_bytes(rows: list[list[str]]) -> bytes:
    import io

    wb = openpyxl.Workbook()
    for r in rows:
        wb.active.append(r)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def zip_bytes() -> bytes:
    import io

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("points.csv", (SAMPLE / P).read_text(encoding="utf-8"))
    return buf.getvalue()


SAMPLE_POINTS = (SAMPLE / P).read_bytes()
HEADER = SAMPLE_POINTS.split(b"\n")[0]
RANDOM = bytes(np.random.default_rng(3).integers(0, 256, 8192, dtype=np.uint8))
OLE2 = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + RANDOM  # what an old .xls starts with

# case                  how the files are made                                      options              code   the message names
MALFORMED = [
    ("no_x_no_ground",     with_survey(lambda s: s.drop_column(P, "X").drop_column(P, "地面高程")), {},
                                                                                                      "F001", ["points.csv", "missing column(s) x, ground_z", "物探点号"]),
    ("no_from_id",         with_survey(lambda s: s.drop_column(S, "起点号")), {},                     "F001", ["segments.csv", "from_id"]),
    ("unknown_headers",    with_survey(lambda s: s.rename_columns(S, {"管径/断面": "口径"})), {},        "F001", ["segments.csv", "size", "口径"]),
    ("gbk_read_as_utf8",   lambda d: write_bytes(d, Survey(), lambda t: t.encode("gbk")), {"encoding": "utf-8"},
                                                                                                      "F003", ["points.csv", "not valid utf-8"]),
    ("unknown_encoding",   with_survey(lambda s: s), {"encoding": "klingon"},                         "F003", ["points.csv", "klingon"]),
    ("truncated_xlsx",     lambda d: (CHECK_FILES / "points_truncated.xlsx", Survey().write(d)[1]), {},
                                                                                                      "F003", ["points_truncated.xlsx", "XLSX"]),
    ("text_named_xlsx",    with_points(SAMPLE_POINTS, "points.xlsx"), {},                            "F003", ["points.xlsx", "XLSX"]),
    ("xls_named_xlsx",     with_points(OLE2, "points.xlsx"), {},                                     "F003", ["points.xlsx", ".xls"]),
    ("xls_named_csv",      with_points(OLE2), {},                                                    "F003", ["points.csv", ".xls"]),
    ("xlsx_named_csv",     with_points(xlsx_bytes([["物探点号"]])), {},                               "F003", ["points.csv", ".xlsx"]),
    ("zip_named_csv",      with_points(zip_bytes()), {},                                             "F003", ["points.csv"]),
    ("binary_csv",         with_points(RANDOM), {},                                                  "F003", ["points.csv", "binary"]),
    ("nul_bytes",          with_points(SAMPLE_POINTS.replace(b",", b"\x00")), {},                    "F003", ["points.csv", "NUL"]),
    ("ragged_rows",        with_segments((SAMPLE / S).read_bytes() + b"JS1,JS2,JS,1,1,DN100,PE" + b",x" * 20 + b"\n"), {},
                                                                                                      "F003", ["segments.csv", "fields"]),
    ("no_such_file",       lambda d: (d / "nowhere.csv", Survey().write(d)[1]), {},                  "F003", ["nowhere.csv", "cannot read"]),
    ("a_folder",           lambda d: (d, Survey().write(d)[1]), {},                                  "F003", ["cannot read"]),
    ("header_only",        with_points(HEADER + b"\n"), {},                                          "F002", ["points.csv", "no rows"]),
    ("header_blank_lines", with_points(HEADER + b"\n\n,,,\n\n"), {},                                 "F002", ["points.csv", "no rows"]),
    ("header_only_xlsx",   with_points(xlsx_bytes([["物探点号", "管线类型", "X", "Y", "地面高程"]]), "points.xlsx"), {},
                                                                                                      "F002", ["points.xlsx", "no rows"]),
    ("empty_sheet",        with_points(xlsx_bytes([]), "points.xlsx"), {},                           "F002", ["points.xlsx", "empty"]),
    ("empty_file",         with_points(b""), {},                                                     "F002", ["points.csv", "empty"]),
    ("empty_xlsx_file",    with_points(b"", "points.xlsx"), {},                                      "F002", ["points.xlsx", "empty"]),
    ("blank_segments",     with_segments(b" \r\n\t\n"), {},                                          "F002", ["segments.csv", "empty"]),
    ("bom_only",           with_segments(b"\xef\xbb\xbf"), {},                                       "F002", ["segments.csv", "empty"]),
    ("lone_cr_in_header",  with_points(b"\xc3\xb0\rrf\n1\n"), {},                                       "F001", ["points.csv", "missing column"]),
]


@pytest.mark.parametrize(("make", "options", "code", "words"), [m[1:] for m in MALFORMED],
                         ids=[m[0] for m in MALFORMED])
def test_malformed_input(tmp_path: Path, make: Maker, options: dict, code: str, words: list[str]) -> None:
    points, segments = make(tmp_path)
    with pytest.raises(InputError) as err:
        read_survey(points, segments, **options)
    assert err.value.code == code
    for word in words:
        assert word in err.value.message
    report = check(points, segments, **options)
    assert report.status == "rejected"
    assert dict(report.issue_counts) == {code: 1}
    assert report.issues[0].message == err.value.message


# case               mutation                                                      code   row  column named
VALUE_ERRORS = [
    ("ground_z_text",   lambda s: s.set(P, "JS2", "地面高程", "三十五"),              "E101", 3, "ground_z"),
    ("northing_text",   lambda s: s.set(P, "JS2", "X", "4035000,00"),               "E101", 3, "x"),
    ("well_depth_text", lambda s: s.set(P, "YS1", "井底深", "2.3m?"),                "E101", 8, "well_depth"),
    ("to_depth_text",   lambda s: s.set(S, "JS2-JS3", "终点埋深", "n/a"),            "E101", 3, "to_depth"),
    ("pressure_text",   lambda s: s.set(S, "JS2-JS3", "压力/电压", "低压"),           "E101", 3, "pressure"),
    ("holes_text",      lambda s: s.set(S, "DL1-DL2", "总孔数", "12孔"),              "E101", 9, "holes_total"),
]


@pytest.mark.parametrize(("mutation", "code", "row", "column"), [v[1:] for v in VALUE_ERRORS],
                         ids=[v[0] for v in VALUE_ERRORS])
def test_text_in_numeric_field(tmp_path: Path, mutation, code: str, row: int, column: str) -> None:
    survey = mutation(Survey())
    report = check(*survey.write(tmp_path))
    assert report.status == "rejected"
    issue = next(i for i in report.issues if i.code == code)
    assert issue.row == row
    assert issue.message.startswith(f"{column} is not a number")


# case          value       read as
NUMBERS_WITH_UNITS = [
    ("metres",   "1.40m",    1.40),
    ("chinese",  "1.40米",   1.40),
    ("spaces",   " 1.40 ",   1.40),
    ("plus",     "+1.4",     1.40),
]


@pytest.mark.parametrize(("value", "expected"), [v[1:] for v in NUMBERS_WITH_UNITS],
                         ids=[v[0] for v in NUMBERS_WITH_UNITS])
def test_numbers_with_units_are_read(tmp_path: Path, value: str, expected: float) -> None:
    prep = prepared(Survey().set(S, "JS2-JS3", "起点埋深", value), tmp_path)
    assert dict(prep.report.issue_counts) == {}
    assert seg(prep, "JS2-JS3")["from_depth_m"] == pytest.approx(expected)


def test_read_table_alone(tmp_path: Path) -> None:
    frame, info = read_table(SAMPLE / P, POINT_COLUMNS, POINT_REQUIRED)
    assert len(frame) == info.rows == 11
    assert info.bytes == len(SAMPLE_POINTS)


def test_xlsx_with_title_rows_above_the_header(tmp_path):
    """成果表 workbooks often open with a title and a project line above the header."""
    from openpyxl import Workbook

    from ingest.tables import POINT_COLUMNS, POINT_REQUIRED, read_table

    src = pd.read_csv(SAMPLE / "points.csv", dtype=str, keep_default_na=False)
    wb = Workbook()
    ws = wb.active
    ws.append(["聊城市东昌路地下管线探测 管线点成果表"])
    ws.append(["测区: 东昌路", None, None, "坐标系: CGCS2000"])
    ws.append(list(src.columns))
    for row in src.itertuples(index=False):
        ws.append(list(row))
    path = tmp_path / "points.xlsx"
    wb.save(path)
    frame, info = read_table(path, POINT_COLUMNS, POINT_REQUIRED)
    assert list(frame["point_id"][:2]) == ["JS1", "JS2"]
    assert frame["_row"].iloc[0] == 4  # sheet row of the first data row
    assert info.rows == len(src)


# ----------------------------------------------------------------------------- size before parsing
def _workbook(path: Path, sheet_xml: bytes, *, first: str = "xl/worksheets/sheet1.xml",
              extra: dict[str, bytes] | None = None) -> Path:
    """A minimal XLSX whose first sheet (by the workbook's relationships) is ``first``."""
    parts = {
        "[Content_Types].xml": b'<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>',
        "xl/workbook.xml": b'<workbook xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
                           b'<sheets><sheet name="a" sheetId="1" r:id="rId7"/></sheets></workbook>',
        "xl/_rels/workbook.xml.rels": b'<Relationships><Relationship Id="rId2" Target="worksheets/other.xml"/>'
                                      b'<Relationship Target="' + first.removeprefix("xl/").encode()
                                      + b'" Id="rId7"/></Relationships>',
        first: sheet_xml, **(extra or {}),
    }
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in parts.items():
            z.writestr(name, data)
    return path


def _rows(n: int) -> bytes:
    """Sheet XML of a header row and ``n`` rows (and page breaks, which are no rows)."""
    return (b'<worksheet><sheetData><row r="1"><c><v>1</v></c></row>' + b"<row><c><v>1</v></c></row>" * n
            + b"</sheetData><rowBreaks/></worksheet>")


LIMITS = TableLimits(rows=100, unpacked_bytes=100_000)


@pytest.mark.parametrize("rows,refused", [(100, False), (101, True)])
def test_a_sheet_is_measured_by_its_rows(tmp_path: Path, rows: int, refused: bool) -> None:
    path = _workbook(tmp_path / "t.xlsx", _rows(rows))
    if refused:
        with pytest.raises(InputError, match="more than 100 rows") as err:
            check_table_size(path, LIMITS)
        assert err.value.code == TOO_LARGE
    else:
        check_table_size(path, LIMITS)


def test_prefixed_rows_and_rows_across_chunks_are_counted(tmp_path: Path) -> None:
    # about 3 MB of XML: the rows straddle the reader's 1 MB chunks; namespace-prefixed tags
    pad = b'<x:row r="2"><x:c><x:v>' + b"7" * 200 + b"</x:v></x:c></x:row>"
    xml = b"<x:worksheet><x:sheetData>" + pad * 13_000 + b"</x:sheetData></x:worksheet>"
    path = _workbook(tmp_path / "p.xlsx", xml)
    check_table_size(path, TableLimits(rows=12_999, unpacked_bytes=10**8))
    with pytest.raises(InputError, match="more than 12,998 rows"):
        check_table_size(path, TableLimits(rows=12_998, unpacked_bytes=10**8))


def test_a_declared_dimension_refuses_at_once(tmp_path: Path) -> None:
    xml = b'<worksheet><dimension ref="A1:C5000000"/><sheetData><row r="1"/></sheetData></worksheet>'
    with pytest.raises(InputError, match="more than 100 rows"):
        check_table_size(_workbook(tmp_path / "d.xlsx", xml), LIMITS)


def test_only_the_first_sheet_is_counted_and_the_unpacked_size_is_all(tmp_path: Path) -> None:
    # the sheet read is sheet2.xml (the workbook's first); a long other sheet does not count ...
    path = _workbook(tmp_path / "s.xlsx", _rows(5), first="xl/worksheets/sheet2.xml",
                     extra={"xl/worksheets/other.xml": _rows(5000)})
    check_table_size(path, TableLimits(rows=100, unpacked_bytes=10**6))
    # ... but every part counts towards the unpacked size
    with pytest.raises(InputError, match="unpacks to"):
        check_table_size(path, TableLimits(rows=100, unpacked_bytes=50_000))


@pytest.mark.parametrize("text,refused", [
    ("h\n" + "1\n" * 100, False), ("h\n" + "1\n" * 99 + "1", False), ("h\n" + "1\n" * 101, True),
])
def test_a_csv_is_measured_by_its_lines(tmp_path: Path, text: str, refused: bool) -> None:
    path = tmp_path / "t.csv"
    path.write_text(text)
    if refused:
        with pytest.raises(InputError, match="more than 100 rows"):
            check_table_size(path, LIMITS)
    else:
        check_table_size(path, LIMITS)
    path.write_bytes(b"h\n" + b"1" * 100_001)
    with pytest.raises(InputError, match="MB"):
        check_table_size(path, LIMITS)


def test_what_is_no_table_is_left_to_the_reader(tmp_path: Path) -> None:
    check_table_size(tmp_path / "missing.csv", LIMITS)
    (tmp_path / "broken.xlsx").write_bytes(b"PK\x03\x04 not a zip")
    check_table_size(tmp_path / "broken.xlsx", LIMITS)
    with pytest.raises(InputError, match="F003|XLSX"):
        read_table(tmp_path / "broken.xlsx", POINT_COLUMNS, POINT_REQUIRED)


def test_a_real_workbook_passes_with_its_rows(tmp_path: Path) -> None:
    book = openpyxl.Workbook(write_only=True)
    sheet = book.create_sheet()
    for k in range(51):
        sheet.append([f"r{k}", k])
    book.save(tmp_path / "w.xlsx")
    check_table_size(tmp_path / "w.xlsx", TableLimits(rows=50, unpacked_bytes=10**6))
    with pytest.raises(InputError, match="more than 49 rows"):
        check_table_size(tmp_path / "w.xlsx", TableLimits(rows=49, unpacked_bytes=10**6))
