"""Where a rule table comes from: a file, or the CSV an admin stored in the twin.

The rule tables (clearance, cover, service life) ship as CSV files in ``analysis/data``; a
deployment may name other files (``TWIN_CLEARANCE_RULES``, ...), and an admin may store a
table in the twin's ``rule_table`` (migration 0005, edited through the API). A loader picks,
in this order: the path its caller names, the table stored in the twin (when the caller gives
a connection), the configured file, the shipped file. The loaders cache parsed tables by
content, so a table edited in the database is parsed again on its next use.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

__all__ = ["RULE_TABLES", "RuleText", "stored_rule_table", "rule_source", "open_source", "source_bytes"]

#: Names of the rule tables an admin may store in the twin.
RULE_TABLES = ("clearance_rules", "cover_rules", "service_life")


@dataclass(frozen=True)
class RuleText:
    """A rule table as CSV text; ``label`` names it in messages (e.g. ``cover_rules (database)``)."""

    text: str
    label: str

    def __str__(self) -> str:
        return self.label


def stored_rule_table(db: sa.Engine | sa.Connection, name: str) -> RuleText | None:
    """The CSV stored in the twin for rule table ``name``, or None when it uses the file."""
    if isinstance(db, sa.Engine):
        with db.connect() as conn:
            return stored_rule_table(conn, name)
    row = db.execute(sa.text("SELECT csv, updated_by, updated_at FROM rule_table WHERE name = :n"),
                     {"n": name}).first()
    if row is None:
        return None
    return RuleText(row.csv, f"{name} (database, {row.updated_by} {row.updated_at:%Y-%m-%d %H:%M:%S})")


def rule_source(
    name: str,
    path: Path | str | RuleText | None,
    configured: Path | str | None,
    default: Path,
    db: sa.Engine | sa.Connection | None = None,
) -> Path | RuleText:
    """The table to read: ``path``, else the one stored in the twin ``db``, else ``configured``, else ``default``."""
    if isinstance(path, RuleText):
        return path
    if path is not None:
        return Path(path)
    if db is not None:
        stored = stored_rule_table(db, name)
        if stored is not None:
            return stored
    return Path(configured) if configured is not None else default


def open_source(source: Path | RuleText) -> Path | io.StringIO:
    """Something ``pandas.read_csv`` reads."""
    return io.StringIO(source.text) if isinstance(source, RuleText) else source


def source_bytes(source: Path | RuleText) -> bytes:
    """The table's bytes (the cache key's content); OSError when a file cannot be read."""
    return source.text.encode("utf-8") if isinstance(source, RuleText) else source.read_bytes()
