"""Chinese for the people who import data (issue 22): the data-check titles, the report's
output, and the errors a bad file gives, read through the real readers (no database)."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from ingest.cli import app, print_report
from ingest.epanet import read_epanet
from ingest.pipeline import rejected_report
from ingest.report import CHECK_TITLES_ZH, CHECKS, Report, check_title
from ingest.tables import TableLimits, check_table_size, read_input
from twin.errors import InputError

CJK = re.compile(r"[\u3400-\u9fff]")


def test_every_check_has_a_chinese_title_and_the_report_shows_both():
    assert set(CHECK_TITLES_ZH) == set(CHECKS)
    assert all(CJK.search(t) and not CJK.search(CHECKS[c][1]) for c, t in CHECK_TITLES_ZH.items())
    assert len(set(CHECK_TITLES_ZH.values())) == len(CHECKS)  # no two checks read the same
    report = Report(status="rejected")
    report.add("F001", "missing column(s) X", file="points.csv", message_zh="缺少列 X")
    report.add("W203", "point P9 is used by no segment", file="points.csv", row=9, ids=["P9"])
    errors, warnings = report.as_dict()["errors"], report.as_dict()["warnings"]
    assert errors[0]["check"] == check_title("F001") == f"{CHECK_TITLES_ZH['F001']} {CHECKS['F001'][1]}"
    assert (errors[0]["check_zh"], errors[0]["check_en"]) == (CHECK_TITLES_ZH["F001"], CHECKS["F001"][1])
    assert errors[0]["message_zh"] == "缺少列 X" and "message_zh" not in warnings[0]


def test_the_printed_report_reads_chinese_first(capsys):
    report = Report(status="rejected")
    report.add("E201", "point P1 appears twice", file="points.csv", row=3, ids=["P1"])
    print_report(report)
    out = capsys.readouterr().out
    assert "已拒绝 rejected" in out and "数据检查 data checks" in out
    assert CHECK_TITLES_ZH["E201"] in out and "错误 error" in out


def test_an_unreadable_file_is_rejected_in_both_languages(tmp_path):
    empty = tmp_path / "points.csv"
    empty.write_bytes(b"  \n")
    with pytest.raises(InputError) as caught:
        read_input(empty)
    assert caught.value.message.startswith("points.csv") and "为空" in caught.value.message_zh
    issue = rejected_report(caught.value).as_dict()["errors"][0]
    assert issue["message"] == caught.value.message and issue["message_zh"] == caught.value.message_zh


def test_table_limits_and_epanet_errors_speak_chinese(tmp_path):
    table = tmp_path / "segments.csv"
    table.write_text("from_id,to_id\n" + "A,B\n" * 5, encoding="utf-8")
    with pytest.raises(InputError) as caught:
        check_table_size(table, TableLimits(rows=2, unpacked_bytes=10**6))
    assert caught.value.code == "TABLE_TOO_LARGE" and "过大" in caught.value.message_zh
    inp = tmp_path / "net.inp"
    inp.write_text("[JUNCTIONS]\nJ1 10 0\n[RESERVOIRS]\nR1 20\n[PIPES]\nP1 J1 J9 100 200 100\n[END]\n")
    with pytest.raises(InputError) as caught:
        read_epanet(inp)
    err = caught.value
    assert "J9" in err.message and "J9" in err.message_zh and "net.inp 第 6 行" in err.message_zh


def test_the_cli_prints_the_chinese_of_a_refused_offset(tmp_path):
    inp = tmp_path / "net.inp"
    inp.write_text("[JUNCTIONS]\nJ1 10 0\n[END]\n")
    result = CliRunner().invoke(app, ["epanet", str(inp), "--offset", "1", "--json"])
    assert result.exit_code == 1, result.output
    assert "须为两个数" in result.stdout
