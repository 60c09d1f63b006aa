"""Data-check issues (数据检查) with stable codes, and the batch report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["CHECKS", "Issue", "Report"]

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

MAX_LISTED_PER_CODE = 200


@dataclass
class Issue:
    """One finding of a data check."""

    code: str
    message: str
    file: str | None = None
    row: int | None = None
    ids: list[str] = field(default_factory=list)

    @property
    def severity(self) -> str:
        return CHECKS[self.code][0]

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "severity": self.severity, "check": CHECKS[self.code][1],
                "message": self.message, "file": self.file, "row": self.row, "ids": self.ids}


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
            ids: list[str] | None = None) -> None:
        """Add one issue."""
        self.issue_counts[code] += 1
        if self.issue_counts[code] <= MAX_LISTED_PER_CODE:
            self.issues.append(Issue(code, message, file, row, [str(i) for i in ids or []]))

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
