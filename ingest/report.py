"""Data-check issues (数据检查) with stable codes, and the batch report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["CHECKS", "CHECK_TITLES_ZH", "SEVERITY_ZH", "check_title", "Issue", "Report"]

#: Stable codes of every data check: code -> (severity, title).
CHECKS: dict[str, tuple[str, str]] = {
    # files
    "F001": ("error", "missing column"),
    "F002": ("error", "empty file"),
    "F003": ("error", "unreadable file"),
    # values
    "E101": ("error", "text in a numeric field"),
    "E102": ("error", "missing required value"),
    "E103": ("error", "unknown utility code"),
    "E104": ("error", "coordinate outside the twin CRS"),
    "W105": ("warning", "unknown feature"),
    "W106": ("warning", "unknown appurtenance"),
    "W107": ("warning", "point has both a feature and an appurtenance"),
    "E108": ("error", "unknown status"),
    "E109": ("error", "unknown survey class"),
    # topology
    "E201": ("error", "duplicate point id"),
    "E202": ("error", "segment endpoint not in the point table"),
    "W203": ("warning", "point used by no segment"),
    "E204": ("error", "zero-length segment"),
    "W205": ("warning", "implausibly long segment"),
    "E206": ("error", "duplicate segment"),
    "W207": ("warning", "feature does not match the connection count"),
    "W208": ("warning", "same-utility pipes cross without a shared point"),
    "W209": ("warning", "segment utility differs from its end points"),
    "W210": ("warning", "link between coincident points (network model)"),
    "W211": ("warning", "parallel links between the same points (network model)"),
    # depth and size
    "E301": ("error", "missing depth"),
    "E302": ("error", "implausible depth"),
    "W303": ("warning", "unusually deep"),
    "E304": ("error", "pipe top above ground"),
    "E305": ("error", "unparseable size"),
    "W306": ("warning", "model placeholder value replaced by an assumption (network model)"),
    "W307": ("warning", "reverse slope on gravity drainage"),
    "W308": ("warning", "inconsistent elevations between tables"),
}

#: The Chinese title of every data check: code -> title (:func:`check_title` gives both).
CHECK_TITLES_ZH: dict[str, str] = {
    "F001": "缺少列",
    "F002": "空文件",
    "F003": "文件无法读取",
    "E101": "数值字段中有文字",
    "E102": "缺少必填值",
    "E103": "未知管线类别代码",
    "E104": "坐标超出孪生库坐标系范围",
    "W105": "未知特征",
    "W106": "未知附属物",
    "W107": "管点同时有特征和附属物",
    "E108": "未知状态",
    "E109": "未知探测精度类别",
    "E201": "物探点号重复",
    "E202": "管线段端点不在管线点表中",
    "W203": "管点未被任何管线段使用",
    "E204": "管线段长度为零",
    "W205": "管线段长度不合理",
    "E206": "管线段重复",
    "W207": "特征与连接数不符",
    "W208": "同类管线交叉但无共用管点",
    "W209": "管线段类别与端点不一致",
    "W210": "连接重合管点的管段（管网模型）",
    "W211": "同一对管点之间的平行管段（管网模型）",
    "E301": "缺少埋深",
    "E302": "埋深不合理",
    "W303": "埋深异常大",
    "E304": "管顶高于地面",
    "E305": "管径无法识别",
    "W306": "模型占位值已按假设替换（管网模型）",
    "W307": "重力排水管倒坡",
    "W308": "两表高程不一致",
}

#: Severity for people: error -> 错误, warning -> 警告.
SEVERITY_ZH = {"error": "错误", "warning": "警告"}

MAX_LISTED_PER_CODE = 200


def check_title(code: str) -> str:
    """The check's title for people, Chinese first.

    >>> check_title("F001")
    '缺少列 missing column'
    """
    return f"{CHECK_TITLES_ZH[code]} {CHECKS[code][1]}"


@dataclass
class Issue:
    """One finding of a data check."""

    code: str
    message: str
    file: str | None = None
    row: int | None = None
    ids: list[str] = field(default_factory=list)
    message_zh: str | None = None  # the message in Chinese, where the check gives one

    @property
    def severity(self) -> str:
        return CHECKS[self.code][0]

    def as_dict(self) -> dict[str, Any]:
        """The issue as JSON: ``check`` is its title Chinese first; ``check_zh``, ``check_en``."""
        d = {"code": self.code, "severity": self.severity, "check": check_title(self.code),
             "check_zh": CHECK_TITLES_ZH[self.code], "check_en": CHECKS[self.code][1],
             "message": self.message, "file": self.file, "row": self.row, "ids": self.ids}
        if self.message_zh:
            d["message_zh"] = self.message_zh
        return d


@dataclass
class Report:
    """What a batch did or would do: its issues, counts and outcome."""

    status: str = "checked"
    batch_id: int | None = None
    counts: dict[str, Any] = field(default_factory=dict)
    issues: list[Issue] = field(default_factory=list)
    issue_counts: Counter[str] = field(default_factory=Counter)
    files: list[dict[str, Any]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, code: str, message: str, *, file: str | None = None, row: int | None = None,
            ids: list[str] | None = None, message_zh: str | None = None) -> None:
        """Add one issue (``message_zh``: its message in Chinese, when known)."""
        self.issue_counts[code] += 1
        if self.issue_counts[code] <= MAX_LISTED_PER_CODE:
            self.issues.append(Issue(code, message, file, row, [str(i) for i in ids or []], message_zh))

    def add_rows(self, code: str, mask: np.ndarray | pd.Series, frame: pd.DataFrame, file: str,
                 message: str | Any, id_columns: tuple[str, ...]) -> int:
        """Add one issue per masked row of ``frame``; ``message`` may be a function of the row.

        Only the first rows of each code are listed; all are counted.
        """
        mask = np.asarray(mask, dtype=bool)
        n = int(mask.sum())
        if n == 0:
            return 0
        listed = max(0, min(n, MAX_LISTED_PER_CODE - self.issue_counts[code]))
        sub = frame.loc[mask].head(listed)
        for rec in sub.to_dict("records"):
            text = message(rec) if callable(message) else message
            self.issues.append(Issue(code, text, file, int(rec["_row"]) if "_row" in rec else None,
                                     [str(rec[c]) for c in id_columns if rec.get(c) is not None]))
        self.issue_counts[code] += n
        return n

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "warning"]

    @property
    def error_count(self) -> int:
        return sum(n for c, n in self.issue_counts.items() if CHECKS[c][0] == "error")

    @property
    def warning_count(self) -> int:
        return sum(n for c, n in self.issue_counts.items() if CHECKS[c][0] == "warning")

    def outcome(self) -> dict[str, Any]:
        """The batch's outcome for an audit entry: status, counts, errors and warnings."""
        return {"status": self.status, "counts": self.counts, "errors": self.error_count,
                "warnings": self.warning_count}

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "batch_id": self.batch_id,
            "counts": self.counts,
            "errors": [i.as_dict() for i in self.errors],
            "warnings": [i.as_dict() for i in self.warnings],
            "error_count": self.error_count,
            "warning_count": self.warning_count,
            "issue_counts": dict(sorted(self.issue_counts.items())),
            "files": self.files,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }
