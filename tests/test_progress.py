"""Every progress message of the packages has its Chinese (twin/progress.py, issue 22).

Long work reports its steps in English where it is done (``step("loading nodes")``,
``progress(45, f"{n:,} candidate pairs")``); a job serves them in the client's language from the
one catalogue. Read from the source (AST) like tests/test_messages.py: each call of a progress
callback (``step``, ``progress``, ``report``, ``say``) with a text literal is turned into a sample
message (each ``{...}`` of an f-string becomes a value) and must have its Chinese, so a new step
cannot slip in in English only.
"""

from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path

import pytest

from twin.progress import TEMPLATES, bilingual, chinese

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("twin", "ingest", "analysis", "tiles", "exchange", "live", "documents", "api")
CALLBACKS = {"step", "progress", "report", "say"}
CJK = re.compile(r"[\u3400-\u9fff]")
#: What an f-string's value stands for in a sample message (a count, a table's name).
SAMPLE = "7"


def _texts(node: ast.expr) -> list[str] | None:
    """The messages a text expression can give (f-string values as SAMPLE); None if not text."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        parts = [v.value if isinstance(v, ast.Constant) else SAMPLE for v in node.values]
        return ["".join(str(p) for p in parts)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _texts(node.left), _texts(node.right)
        if left is None or right is None:
            return None
        return [a + b for a, b in itertools.product(left, right)]
    if isinstance(node, ast.IfExp):
        body, orelse = _texts(node.body), _texts(node.orelse)
        return None if body is None or orelse is None else body + orelse
    return None


def _messages() -> list[tuple[str, str]]:
    """(where, sample message) of every progress call with a text in the packages."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call):
                    continue
                name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
                if name not in CALLBACKS:
                    continue
                for arg in node.args[:2]:
                    for text in _texts(arg) or []:
                        if re.search(r"[A-Za-z]{2}", text) and not CJK.search(text):
                            found.append((f"{path.relative_to(ROOT)}:{node.lineno}", text))
    return found


def test_the_scan_finds_the_steps_it_should() -> None:
    """The reader is not blind: the known steps of import, scan, criticality and tiles are found."""
    texts = {t for _, t in _messages()}
    assert {"reading the network", "loading 7s", "7 candidate pairs; collision and clearance",
            "storing 7 rows of 7", "meshing tiles"} <= texts, sorted(texts)


def test_every_progress_message_has_its_chinese() -> None:
    missing = [f"{where}: {text!r}" for where, text in _messages() if chinese(text) is None]
    assert missing == [], "progress messages without Chinese in twin/progress.py:\n" + "\n".join(missing)


@pytest.mark.parametrize(("english", "zh"), [
    ("loading: loading segments", "入库：正在载入管段"),
    ("loading: indexing nodes (node_pkey)", "入库：正在重建管点索引（node_pkey）"),
    ("build 2: meshing tiles 3/10", "第 2 次构建：正在生成瓦片网格 3/10"),
    ("1,024 hard clashes; clearance", "1,024 处硬碰撞；净距检查"),
    ("storing 12 rows of criticality_valve", "正在保存 阀门重要性 的 12 行"),
    ("done", "完成"),
    ("merging the partitions", "正在合并分区结果"),  # not "merging {table}s"
    ("loading: a step nobody wrote down", None),
])
def test_composed_messages(english: str, zh: str | None) -> None:
    assert chinese(english) == zh


def test_templates_and_failures() -> None:
    # every template's Chinese names the same placeholders as its English
    for en, zh in TEMPLATES.items():
        assert sorted(re.findall(r"\{(\w+)\}", en)) == sorted(re.findall(r"\{(\w+)\}", zh)), en
        assert CJK.search(zh), en
    assert bilingual("[NOT_FOUND] 没有管线 'P9' — no pipe 'P9'") == ("[NOT_FOUND] no pipe 'P9'", "[NOT_FOUND] 没有管线 'P9'")
    assert bilingual("内部错误；请告知管理员 — internal error") == ("internal error", "内部错误；请告知管理员")
    assert bilingual("merging nodes") == ("merging nodes", "正在合并管点")
