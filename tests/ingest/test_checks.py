"""Every data check (ingest.report.CHECKS) against a crafted file, and the derived features.

Each case starts from the small valid sample (tests/data/small: no errors, no warnings),
makes ONE deliberate defect, runs the batch through ``ingest_survey(..., dry_run=True)``
(checks only, no database) and asserts the code is reported with the file, row and ids
a data manager needs to find the defect, that nothing else is reported, and that errors
reject the batch while warnings alone do not.

Row numbers are the file's: the header is row 1, so the n-th data row is row n + 1.

    points.csv    JS1 2  JS2 3  JS3 4  JS4 5  JS5 6  JS6 7  YS1 8  YS2 9  YS3 10  DL1 11  DL2 12
    segments.csv  JS1-JS2 2  JS2-JS3 3  JS3-JS4 4  JS2-JS5 5  JS5-JS6 6  YS1-YS2 7  YS2-YS3 8  DL1-DL2 9
    (an appended row is row 13 of points.csv, row 10 of segments.csv)
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ingest.pipeline import ingest_survey, ingest_tables
from ingest.prepare import Prepared, prepare
from ingest.report import CHECKS, Report
from ingest.tables import read_survey
from twin.crs import twin_crs
from twin.settings import TwinSettings, get_settings

DATA = Path(__file__).resolve().parents[1] / "data"
SAMPLE = DATA / "small"
CHECK_FILES = DATA / "checks"
P, S = "points.csv", "segments.csv"


def settings() -> TwinSettings:
    """The defaults the cases are crafted against, whatever the environment says."""
    return get_settings(crs="EPSG:4548", long_segment_m=75.0, short_segment_m=0.05, max_depth_m=30.0,
                        deep_warning_m=12.0, elevation_tolerance_m=0.05)


class Survey:
    """The two sample tables as editable rows of text; every edit returns the survey."""

    def __init__(self) -> None:
        self.tables = {}
        for name in (P, S):
            with open(SAMPLE / name, encoding="utf-8", newline="") as fh:
                self.tables[name] = [list(r) for r in csv.reader(fh)]

    @staticmethod
    def _key(name: str, row: list[str]) -> str:
        return row[0] if name == P else f"{row[0]}-{row[1]}"

    def _index(self, name: str, key: str) -> int:
        rows = self.tables[name]
        hits = [i for i, r in enumerate(rows[1:], start=1) if self._key(name, r) == key]
        assert hits, f"{key} not in {name}"
        return hits[0]

    def _col(self, name: str, column: str) -> int:
        return self.tables[name][0].index(column)

    def set(self, name: str, key: str, column: str, value: str) -> Survey:
        self.tables[name][self._index(name, key)][self._col(name, column)] = value
        return self

    def get(self, name: str, key: str, column: str) -> str:
        return self.tables[name][self._index(name, key)][self._col(name, column)]

    def append(self, name: str, values: dict[str, str]) -> Survey:
        header = self.tables[name][0]
        assert set(values) <= set(header), set(values) - set(header)
        self.tables[name].append([values.get(h, "") for h in header])
        return self

    def copy_row(self, name: str, key: str) -> Survey:
        self.tables[name].append(list(self.tables[name][self._index(name, key)]))
        return self

    def add_column(self, name: str, column: str, values: dict[str, str] | None = None,
                   fill: str = "") -> Survey:
        rows = self.tables[name]
        rows[0].append(column)
        for r in rows[1:]:
            r.append((values or {}).get(self._key(name, r), fill))
        return self

    def drop_column(self, name: str, column: str) -> Survey:
        i = self._col(name, column)
        for r in self.tables[name]:
            del r[i]
        return self

    def rename_columns(self, name: str, renames: dict[str, str]) -> Survey:
        self.tables[name][0] = [renames.get(h, h) for h in self.tables[name][0]]
        return self

    def swap_columns(self, name: str, a: str, b: str) -> Survey:
        """Swap the values (not the headers) of two columns."""
        ia, ib = self._col(name, a), self._col(name, b)
        for r in self.tables[name][1:]:
            r[ia], r[ib] = r[ib], r[ia]
        return self

    def text(self, name: str, delimiter: str = ",", lineterminator: str = "\n") -> str:
        buf = io.StringIO()
        csv.writer(buf, delimiter=delimiter, lineterminator=lineterminator).writerows(self.tables[name])
        return buf.getvalue()

    def write(self, folder: Path, *, encoding: str = "utf-8", delimiter: str = ",") -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for name in (P, S):
            path = folder / name
            path.write_bytes(self.text(name, delimiter).encode(encoding))
            paths.append(path)
        return paths[0], paths[1]


def check(points: Path, segments: Path, **kw) -> Report:
    return ingest_survey(points, segments, settings(), dry_run=True, **kw)


def prepared(survey: Survey, folder: Path, *, axis_order: str = "ne") -> Prepared:
    points, segments = survey.write(folder)
    return prepare(read_survey(points, segments), settings(), twin_crs("EPSG:4548"), axis_order=axis_order)


def status_for(codes: set[str]) -> str:
    return "rejected" if any(CHECKS[c][0] == "error" for c in codes) else "checked"


@pytest.fixture(scope="module")
def clean() -> Report:
    return check(SAMPLE / P, SAMPLE / S)


# -- the sample is clean ----------------------------------------------------------------------
def test_clean_sample_reports_nothing(clean: Report) -> None:
    assert clean.status == "checked"
    assert dict(clean.issue_counts) == {}
    assert clean.issues == []
    assert clean.counts == {"nodes": 11, "segments": 8, "valves": 2, "sources": 1, "customers": 1}
    assert [f["name"] for f in clean.files] == [P, S]


@pytest.mark.parametrize("code", sorted(CHECKS))
def test_clean_sample_does_not_report(clean: Report, code: str) -> None:
    assert clean.issue_counts[code] == 0


# -- one defect per case: row-level checks ------------------------------------------------------
Mutation = Callable[[Survey], Survey]


def tx_crossing(s: Survey) -> Survey:
    """Two telecom ducts crossing in plan with no point at the crossing."""
    for pid, x, y in (("TX1", "4035030.00", "410000.00"), ("TX2", "4035030.00", "410020.00"),
                      ("TX3", "4035025.00", "410010.00"), ("TX4", "4035035.00", "410010.00")):
        s.append(P, {"物探点号": pid, "管线类型": "TX", "X": x, "Y": y, "地面高程": "35.20", "埋深": "0.70"})
    for a, b in (("TX1", "TX2"), ("TX3", "TX4")):
        s.append(S, {"起点号": a, "终点号": b, "管线类型": "TX", "起点埋深": "0.70", "终点埋深": "0.70",
                     "管径/断面": "100", "状态": "active"})
    return s


def explicit_ids(s: Survey) -> Survey:
    """A 管段编号 column whose last id repeats the first."""
    ids = {k: f"S{i}" for i, k in enumerate(
        ["JS1-JS2", "JS2-JS3", "JS3-JS4", "JS2-JS5", "JS5-JS6", "YS1-YS2", "YS2-YS3"], start=1)}
    ids["DL1-DL2"] = "S1"
    return s.add_column(S, "管段编号", ids)


# case                  mutation of the clean sample                              code   file row ids            also reported
ROW_CASES: list[tuple[str, Mutation, str, str, int, list[str], tuple[str, ...]]] = [
    # values
    ("ground_z_text",     lambda s: s.set(P, "JS4", "地面高程", "约35.15"),          "E101", P, 5, ["JS4"], ("E301",)),
    ("y_text",            lambda s: s.set(P, "DL2", "Y", "410O60.00"),              "E101", P, 12, ["DL2"], ()),
    ("from_depth_text",   lambda s: s.set(S, "JS3-JS4", "起点埋深", "一米四"),       "E101", S, 4, ["JS3", "JS4"], ()),
    ("cables_text",       lambda s: s.set(S, "DL1-DL2", "电缆条数", "六"),           "E101", S, 9, ["DL1", "DL2"], ()),
    ("point_utility_gone", lambda s: s.set(P, "JS4", "管线类型", ""),               "E102", P, 5, ["JS4"], ()),
    ("ground_z_gone",     lambda s: s.set(P, "YS3", "地面高程", "  "),               "E102", P, 10, ["YS3"], ("E301",)),
    ("size_gone",         lambda s: s.set(S, "DL1-DL2", "管径/断面", ""),            "E102", S, 9, ["DL1", "DL2"], ()),
    ("point_utility_QQ",  lambda s: s.set(P, "DL2", "管线类型", "QQ"),              "E103", P, 12, ["DL2"], ()),
    ("segment_utility_ZZ", lambda s: s.set(S, "DL1-DL2", "管线类型", "ZZ"),          "E103", S, 9, ["DL1", "DL2"], ()),
    ("zone_40_prefix",    lambda s: s.set(P, "JS4", "Y", "40410090.00"),            "E104", P, 5, ["JS4"], ()),
    ("easting_off_zone",  lambda s: s.set(P, "JS4", "Y", "910090.00"),              "E104", P, 5, ["JS4"], ("W205",)),
    ("feature_unknown",   lambda s: s.set(P, "JS4", "特征", "奇异点"),               "W105", P, 5, ["JS4"], ()),
    ("appurtenance_unknown", lambda s: s.set(P, "YS1", "附属物", "外星井"),          "W106", P, 8, ["YS1"], ()),
    ("feature_and_appurtenance", lambda s: s.set(P, "JS3", "特征", "直线点"),       "W107", P, 4, ["JS3"], ()),
    ("status_unknown",    lambda s: s.set(S, "JS1-JS2", "状态", "坏了"),             "E108", S, 2, ["JS1", "JS2"], ()),
    ("survey_class_unknown", lambda s: s.add_column(P, "点类别", {"JS4": "半明显", "JS3": "明显点"}),
                                                                                    "E109", P, 5, ["JS4"], ()),
    # topology
    ("point_twice",       lambda s: s.copy_row(P, "JS4"),                           "E201", P, 13, ["JS4"], ()),
    ("endpoint_missing",  lambda s: s.set(S, "JS3-JS4", "终点号", "JS99"),           "E202", S, 4, ["JS3", "JS99"], ("W203",)),
    ("point_unused",      lambda s: s.append(P, {"物探点号": "JS7", "管线类型": "JS", "X": "4035050.00",
                                                "Y": "410050.00", "地面高程": "35.10", "埋深": "1.20"}),
                                                                                    "W203", P, 13, ["JS7"], ()),
    ("zero_length",       lambda s: s.set(P, "JS4", "Y", "410045.00"),              "E204", S, 4, ["JS3", "JS4"], ()),
    ("segment_155_m",     lambda s: s.set(P, "JS4", "Y", "410200.00"),              "W205", S, 4, ["JS3", "JS4"], ()),
    ("segment_twice",     lambda s: s.copy_row(S, "YS1-YS2"),                       "E206", S, 10, ["YS1", "YS2"], ()),
    ("segment_id_twice",  explicit_ids,                                             "E206", S, 9, ["DL1", "DL2"], ()),
    ("end_is_a_tee",      lambda s: s.set(P, "JS4", "特征", "三通"),                 "W207", P, 5, ["JS4"], ()),
    ("ducts_cross",       tx_crossing,                                              "W208", S, 10, ["TX1-TX2", "TX3-TX4"], ()),
    ("segment_utility_RQ", lambda s: s.set(S, "JS1-JS2", "管线类型", "RQ"),          "W209", S, 2, ["JS1", "JS2"], ()),
    # depth and size
    ("no_depth_at_all",   lambda s: s.set(S, "DL1-DL2", "起点埋深", "").set(P, "DL1", "埋深", ""),
                                                                                    "E301", S, 9, ["DL1", "DL2"], ()),
    ("depth_35_m",        lambda s: s.set(S, "JS3-JS4", "终点埋深", "35.0"),         "E302", S, 4, ["JS3", "JS4"], ()),
    ("depth_negative",    lambda s: s.set(S, "DL1-DL2", "起点埋深", "-0.50"),        "E302", S, 9, ["DL1", "DL2"], ("E304",)),
    ("depth_13_m",        lambda s: s.set(S, "JS3-JS4", "终点埋深", "13.0"),         "W303", S, 4, ["JS3", "JS4"], ()),
    ("invert_too_high",   lambda s: s.set(S, "YS1-YS2", "起点埋深", "0.30"),         "E304", S, 7, ["YS1", "YS2"], ()),
    ("size_unreadable",   lambda s: s.set(S, "JS1-JS2", "管径/断面", "大管"),         "E305", S, 2, ["JS1", "JS2"], ()),
    ("size_zero",         lambda s: s.set(S, "DL1-DL2", "管径/断面", "0X500"),        "E305", S, 9, ["DL1", "DL2"], ()),
    ("invert_rises",      lambda s: s.set(S, "YS1-YS2", "终点埋深", "1.00"),         "W307", S, 7, ["YS1", "YS2"], ()),
    ("elevation_off",     lambda s: s.add_column(S, "起点高程", {"JS1-JS2": "30.00"}), "W308", S, 2, ["JS1", "JS2"], ()),
]


@pytest.mark.parametrize(("mutation", "code", "file", "row", "ids", "also"),
                         [c[1:] for c in ROW_CASES], ids=[c[0] for c in ROW_CASES])
def test_row_check(tmp_path: Path, clean: Report, mutation: Mutation, code: str, file: str, row: int,
                   ids: list[str], also: tuple[str, ...]) -> None:
    report = check(*mutation(Survey()).write(tmp_path))
    assert set(report.issue_counts) == {code, *also}, [i.as_dict() for i in report.issues]
    found = [(i.file, i.row, i.ids) for i in report.issues if i.code == code]
    assert (file, row, ids) in found
    assert all(i.message and i.severity == CHECKS[i.code][0] for i in report.issues)
    assert report.status == status_for({code, *also})
    assert report.error_count == sum(n for c, n in report.issue_counts.items() if c[0] in "EF")
    assert clean.issue_counts[code] == 0


# -- one defect per case: file-level checks -------------------------------------------------------
FileMaker = Callable[[Survey, Path], tuple[Path, Path]]


def truncated_xlsx(s: Survey, folder: Path) -> tuple[Path, Path]:
    return CHECK_FILES / "points_truncated.xlsx", s.write(folder)[1]


def header_only_points(s: Survey, folder: Path) -> tuple[Path, Path]:
    s.tables[P] = s.tables[P][:1]
    return s.write(folder)


def empty_segments(s: Survey, folder: Path) -> tuple[Path, Path]:
    points, segments = s.write(folder)
    segments.write_bytes(b"")
    return points, segments


def binary_points(s: Survey, folder: Path) -> tuple[Path, Path]:
    points, segments = s.write(folder)
    points.write_bytes(bytes(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8)))
    return points, segments


def ragged_segments(s: Survey, folder: Path) -> tuple[Path, Path]:
    s.tables[S][3] += ["extra", "fields"]
    return s.write(folder)


# case                 how the files are made                                              code    the message names
FILE_CASES: list[tuple[str, FileMaker, str, list[str]]] = [
    ("no_ground_z_column", lambda s, d: s.drop_column(P, "地面高程").write(d),             "F001", [P, "ground_z", "--columns"]),
    ("no_size_column",   lambda s, d: s.drop_column(S, "管径/断面").write(d),              "F001", [S, "size"]),
    ("header_only",      header_only_points,                                              "F002", [P, "no rows"]),
    ("empty_segments",   empty_segments,                                                  "F002", [S, "empty"]),
    ("truncated_xlsx",   truncated_xlsx,                                                  "F003", ["points_truncated.xlsx", "XLSX"]),
    ("binary_csv",       binary_points,                                                   "F003", [P, "binary"]),
    ("ragged_csv",       ragged_segments,                                                 "F003", [S, "CSV"]),
]


@pytest.mark.parametrize(("make", "code", "words"), [c[1:] for c in FILE_CASES], ids=[c[0] for c in FILE_CASES])
def test_file_check(tmp_path: Path, clean: Report, make: FileMaker, code: str, words: list[str]) -> None:
    report = check(*make(Survey(), tmp_path))
    assert report.status == "rejected"
    assert dict(report.issue_counts) == {code: 1}
    (issue,) = report.issues
    for word in words:
        assert word in issue.message
    assert clean.issue_counts[code] == 0


# -- network models (EPANET): what is an error in a survey is a warning in a hydraulic model ----------
def with_ids(s: Survey) -> Survey:
    return s.add_column(S, "管段编号", {k: f"P{i}" for i, k in enumerate(
        Survey._key(S, r) for r in s.tables[S][1:])})


def parallel_link(s: Survey) -> Survey:
    """A second pipe (its own id) between YS1 and YS2."""
    with_ids(s).copy_row(S, "YS1-YS2")
    s.tables[S][-1][s._col(S, "管段编号")] = "P-twin"
    return s


# case               mutation of the clean sample                        survey code  network code  row ids
NETWORK_CASES: list[tuple[str, Mutation, str, str, int, list[str]]] = [
    ("coincident_ends", lambda s: s.set(P, "JS4", "Y", "410045.00"),    "E204", "W210", 4, ["JS3", "JS4"]),
    ("parallel_link",   parallel_link,                                  "E206", "W211", 10, ["P-twin", "YS1", "YS2"]),
]


@pytest.mark.parametrize(("mutation", "survey_code", "network_code", "row", "ids"),
                         [c[1:] for c in NETWORK_CASES], ids=[c[0] for c in NETWORK_CASES])
def test_network_model_check(tmp_path: Path, clean: Report, mutation: Mutation, survey_code: str,
                             network_code: str, row: int, ids: list[str]) -> None:
    tables = read_survey(*mutation(Survey()).write(tmp_path))
    assert set(check(tmp_path / P, tmp_path / S).issue_counts) == {survey_code}
    tables.kind = "epanet"
    report = ingest_tables(tables, settings(), dry_run=True)
    assert set(report.issue_counts) == {network_code}
    (issue,) = report.issues
    assert (issue.file, issue.row, issue.ids) == (S, row, ids)
    assert report.status == "checked"
    assert clean.issue_counts[network_code] == 0


def test_every_check_code_has_a_case() -> None:
    covered = ({c[2] for c in ROW_CASES} | {c[2] for c in FILE_CASES}
               | {c[3] for c in NETWORK_CASES}
               | {"W306"})  # the EPANET reader's own: tests/ingest/test_epanet.py (placeholders)
    assert covered == set(CHECKS)


# -- issue details ------------------------------------------------------------------------------
def test_messages_name_the_value_and_column(tmp_path: Path) -> None:
    s = (Survey().set(P, "JS4", "地面高程", "约35.15").set(S, "JS3-JS4", "起点埋深", "一米四")
         .set(P, "DL2", "管线类型", "QQ").set(S, "JS1-JS2", "状态", "坏了"))
    report = check(*s.write(tmp_path))
    text = {(i.code, i.row): i.message for i in report.issues}
    assert "ground_z" in text["E101", 5] and "约35.15" in text["E101", 5]
    assert "from_depth" in text["E101", 4] and "一米四" in text["E101", 4]
    assert "QQ" in text["E103", 12]
    assert "坏了" in text["E108", 2]


def test_zone_prefix_message_names_the_twin_zone(tmp_path: Path) -> None:
    report = check(*Survey().set(P, "JS4", "Y", "40410090.00").write(tmp_path))
    (issue,) = report.issues
    assert "39" in issue.message


def test_duplicate_point_lists_both_rows(tmp_path: Path) -> None:
    report = check(*Survey().copy_row(P, "JS4").write(tmp_path))
    assert sorted(i.row for i in report.issues if i.code == "E201") == [5, 13]


def test_deep_and_implausible_ends_are_named(tmp_path: Path) -> None:
    s = Survey().set(S, "JS3-JS4", "起点埋深", "13.0").set(S, "JS3-JS4", "终点埋深", "35.0")
    report = check(*s.write(tmp_path))
    assert dict(report.issue_counts) == {"W303": 1, "E302": 1}
    messages = {i.code: i.message for i in report.issues}
    assert messages["E302"].startswith("to depth 35.00 m")
    assert messages["W303"].startswith("from depth 13.00 m")
    assert {i.row for i in report.issues} == {4}


def test_each_bad_row_is_counted(tmp_path: Path) -> None:
    s = Survey()
    for key in ("JS1", "JS2", "JS3"):
        s.set(P, key, "埋深", "?")
    report = check(*s.write(tmp_path))
    assert report.issue_counts == {"E101": 3}
    assert [i.row for i in report.issues] == [2, 3, 4]


def test_warnings_alone_do_not_reject(tmp_path: Path) -> None:
    s = (Survey().set(P, "JS4", "特征", "奇异点").set(P, "YS1", "附属物", "外星井")
         .set(S, "JS3-JS4", "终点埋深", "13.0").set(S, "YS1-YS2", "终点埋深", "1.00"))
    report = check(*s.write(tmp_path))
    assert set(report.issue_counts) == {"W105", "W106", "W303", "W307"}
    assert report.error_count == 0 and report.warning_count == 4
    assert report.status == "checked"


def test_one_error_among_warnings_rejects(tmp_path: Path) -> None:
    s = Survey().set(P, "JS4", "特征", "奇异点").set(S, "JS1-JS2", "管径/断面", "大管")
    report = check(*s.write(tmp_path))
    assert set(report.issue_counts) == {"W105", "E305"}
    assert report.status == "rejected"
    assert [i.code for i in report.errors] == ["E305"]
    assert [i.code for i in report.warnings] == ["W105"]


# -- derived features (ingest.prepare) -------------------------------------------------------------
@pytest.fixture(scope="module")
def sample() -> Prepared:
    return prepare(read_survey(SAMPLE / P, SAMPLE / S), settings(), twin_crs("EPSG:4548"))


def seg(prep: Prepared, sid: str):
    rows = prep.segments[prep.segments["id"] == sid]
    assert len(rows) == 1, sid
    return rows.iloc[0]


# segment   reference  shape       from_z: ground - depth -/+ half the height          to_z
HEIGHTS = [
    ("JS1-JS2", "top",    "circular", 35.200 - 1.40 - 0.150,                             35.180 - 1.40 - 0.150),
    ("JS5-JS6", "top",    "circular", 35.180 - 1.40 - 0.050,                             35.200 - 1.20 - 0.050),
    ("YS1-YS2", "invert", "circular", 35.200 - 2.00 + 0.300,                             35.180 - 2.10 + 0.300),
    ("YS2-YS3", "invert", "circular", 35.180 - 2.10 + 0.300,                             35.150 - 2.20 + 0.300),
    ("DL1-DL2", "top",    "rect",     35.200 - 0.80 - 0.250,                             35.180 - 0.80 - 0.250),
]


@pytest.mark.parametrize(("sid", "reference", "shape", "from_z", "to_z"), HEIGHTS, ids=[h[0] for h in HEIGHTS])
def test_centreline_heights(sample: Prepared, sid: str, reference: str, shape: str, from_z: float,
                            to_z: float) -> None:
    row = seg(sample, sid)
    assert row["depth_reference"] == reference
    assert row["shape"] == shape
    assert row["from_z"] == pytest.approx(from_z, abs=1e-9)
    assert row["to_z"] == pytest.approx(to_z, abs=1e-9)


def test_rectangular_section_sizes(sample: Prepared) -> None:
    row = seg(sample, "DL1-DL2")
    assert (row["width_mm"], row["height_mm"]) == (800.0, 500.0)
    assert np.isnan(row["diameter_mm"])
    assert row["voltage_kv"] == 10.0 and np.isnan(row["pressure_mpa"])
    assert (row["cables"], row["holes_total"], row["holes_used"]) == (6, 12, 6)
    assert seg(sample, "JS1-JS2")["diameter_mm"] == 300.0
    assert seg(sample, "JS1-JS2")["length_m"] == pytest.approx(40.0)


def depth_to_elevation(s: Survey) -> Survey:
    """Replace the depths by pipe elevations (起点高程/终点高程): ground minus depth."""
    ground = {r[0]: float(r[s._col(P, "地面高程")]) for r in s.tables[P][1:]}
    for end, col, new in ((0, "起点埋深", "起点高程"), (1, "终点埋深", "终点高程")):
        i = s._col(S, col)
        s.tables[S][0][i] = new
        for r in s.tables[S][1:]:
            r[i] = f"{ground[r[end]] - float(r[i]):.3f}"
    return s.drop_column(P, "埋深")


def test_depth_from_elevation_columns(tmp_path: Path, sample: Prepared) -> None:
    prep = prepared(depth_to_elevation(Survey()), tmp_path)
    assert dict(prep.report.issue_counts) == {}
    for col in ("from_z", "to_z", "from_depth_m", "to_depth_m"):
        np.testing.assert_allclose(prep.segments[col].to_numpy(float), sample.segments[col].to_numpy(float),
                                   atol=1e-9, err_msg=col)


def test_elevation_alone_sets_height_and_depth(tmp_path: Path) -> None:
    s = depth_to_elevation(Survey()).set(S, "JS1-JS2", "起点高程", "33.00")
    row = seg(prepared(s, tmp_path), "JS1-JS2")
    assert row["from_z"] == pytest.approx(33.00 - 0.15)
    assert row["from_depth_m"] == pytest.approx(35.20 - 33.00)


def test_named_top_and_invert_elevations_are_converted_by_reference(tmp_path: Path) -> None:
    """管顶高程 on drainage and 管底高程 on water go through the pipe's height."""
    s = depth_to_elevation(Survey())
    i = s._col(S, "起点高程")
    s.tables[S][0][i] = "起点管顶高程"
    j = s._col(S, "终点高程")
    s.tables[S][0][j] = "终点管底高程"
    # The file's numbers were written at each utility's reference; the header now says
    # top at the start and invert at the end, so the heights shift by the pipe's height.
    prep = prepared(s, tmp_path)
    ys, js = seg(prep, "YS1-YS2"), seg(prep, "JS1-JS2")
    assert ys["from_z"] == pytest.approx(35.200 - 2.00 - 0.300)  # top given: centre below it
    assert ys["to_z"] == pytest.approx(35.180 - 2.10 + 0.300)  # invert given: as before
    assert js["from_z"] == pytest.approx(35.200 - 1.40 - 0.150)  # top given: as before
    assert js["to_z"] == pytest.approx(35.180 - 1.40 + 0.150)  # invert given: centre above it


def test_valves_from_valve_points(sample: Prepared) -> None:
    v = sample.valves.set_index("id")
    assert sorted(v.index) == ["JS3", "JS5"]  # degree 2: one valve each
    assert (v.at["JS3", "node_id"], v.at["JS3", "segment_id"]) == ("JS3", "JS2-JS3")
    assert bool(v.at["JS3", "operable"]) and not bool(v.at["JS3", "normally_closed"])
    assert not bool(v.at["JS5", "operable"])  # 无法关闭
    assert (v.at["JS3", "x"], v.at["JS3", "y"]) == (410045.0, 4035000.0)
    assert v.at["JS3", "z"] == pytest.approx(seg(sample, "JS2-JS3")["to_z"])
    assert v.at["JS3", "attrs_kind"] == "valve"


def test_valve_chamber_at_a_tee_holds_one_valve_per_pipe(tmp_path: Path) -> None:
    prep = prepared(Survey().set(P, "JS2", "特征", "").set(P, "JS2", "附属物", "阀门井"), tmp_path)
    assert dict(prep.report.issue_counts) == {}
    at_js2 = prep.valves[prep.valves["node_id"] == "JS2"]
    assert sorted(at_js2["segment_id"]) == ["JS1-JS2", "JS2-JS3", "JS2-JS5"]
    assert sorted(at_js2["id"]) == ["JS2/JS1-JS2", "JS2/JS2-JS3", "JS2/JS2-JS5"]
    assert set(at_js2["attrs_kind"]) == {"valve_chamber"}
    assert len(prep.valves) == 5


def test_normally_closed_valve(tmp_path: Path) -> None:
    prep = prepared(Survey().set(P, "JS3", "备注", "分区边界 常闭"), tmp_path)
    v = prep.valves.set_index("id")
    assert bool(v.at["JS3", "normally_closed"]) and bool(v.at["JS3", "operable"])
    assert not bool(v.at["JS5", "normally_closed"])


def test_customers_from_service_entries(tmp_path: Path) -> None:
    prep = prepared(Survey().set(P, "JS4", "特征", "进楼").set(P, "JS4", "备注", "东昌小区3号楼"), tmp_path)
    assert dict(prep.report.issue_counts) == {}
    c = prep.customers.set_index("id")
    assert sorted(c.index) == ["JS4", "JS6"]
    assert bool(c.at["JS6", "critical"]) and c.at["JS6", "kind"] == "critical"  # 医院
    assert c.at["JS6", "name"] == "聊城市人民医院"
    assert not bool(c.at["JS4", "critical"]) and c.at["JS4", "kind"] == "service"
    assert (c.at["JS6", "x"], c.at["JS6", "y"], c.at["JS6", "z"]) == (410040.0, 4035020.0, 35.2)


def test_sources_from_plants(sample: Prepared) -> None:
    src = sample.sources.set_index("id")
    assert list(src.index) == ["SRC-JS1"]
    row = src.loc["SRC-JS1"]
    assert (row["node_id"], row["utility"], row["kind"], row["name"]) == ("JS1", "JS", "water_plant", "聊城第一水厂")
    assert (row["x"], row["y"]) == (410000.0, 4035000.0)


def test_zone_prefixed_eastings_are_stripped(tmp_path: Path, sample: Prepared) -> None:
    s = Survey()
    for r in s.tables[P][1:]:
        r[s._col(P, "Y")] = "39" + r[s._col(P, "Y")]
    assert s.get(P, "JS1", "Y") == "39410000.00"
    prep = prepared(s, tmp_path)
    assert dict(prep.report.issue_counts) == {}
    np.testing.assert_array_equal(prep.nodes["easting"], sample.nodes["easting"])
    assert prep.nodes.set_index("id").at["JS1", "easting"] == 410000.0


def test_swapped_axis_order_is_caught_with_a_hint(tmp_path: Path) -> None:
    points, segments = Survey().write(tmp_path)
    report = check(points, segments, axis_order="en")
    assert report.status == "rejected"
    assert dict(report.issue_counts) == {"E104": 11}
    assert all("--axis-order ne" in i.message for i in report.issues)
    assert sorted(i.row for i in report.issues) == list(range(2, 13))


def test_easting_first_file(tmp_path: Path, sample: Prepared) -> None:
    en = Survey().swap_columns(P, "X", "Y")
    assert en.get(P, "JS1", "X") == "410000.00"
    prep = prepared(en, tmp_path / "en", axis_order="en")
    assert dict(prep.report.issue_counts) == {}
    for col in ("easting", "northing"):
        np.testing.assert_array_equal(prep.nodes[col], sample.nodes[col])
    np.testing.assert_allclose(prep.segments["length_m"], sample.segments["length_m"])
    # The same file read as northing-first is caught, with the opposite hint.
    report = check(*en.write(tmp_path / "ne"))
    assert set(report.issue_counts) == {"E104"}
    assert all("--axis-order en" in i.message for i in report.issues)


def test_dry_run_needs_no_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ingest.pipeline

    def no_db(*_a, **_k):
        raise AssertionError("dry_run opened the database")

    monkeypatch.setattr(ingest.pipeline, "open_twin", no_db)
    monkeypatch.setattr(ingest.pipeline, "apply_batch", no_db)
    assert check(SAMPLE / P, SAMPLE / S).status == "checked"

