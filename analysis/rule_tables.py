"""Where a rule table comes from: a file, or the CSV an admin stored in the twin.

The rule tables (clearance, cover, service life) ship as CSV files in ``analysis/data``; a
deployment may name other files (``TWIN_CLEARANCE_RULES``, ...), and an admin may store a
table in the twin's ``rule_table`` (migration 0005, edited through the API). A loader picks,
in this order: the path its caller names, the table stored in the twin (when the caller gives
a connection), the configured file, the shipped file. The loaders cache parsed tables by
content, so a table edited in the database is parsed again on its next use.

A table is named in results and messages by a label, never by the server's path to it: a file
as ``cover_rules.csv (shipped)`` / ``(configured)`` / ``(file)``, a stored table as
``cover_rules (database, who when)``.

This module reads and writes the stored tables (:func:`stored_rule_table`,
:func:`store_rule_csv`, :func:`delete_rule_csv`); :mod:`analysis.rule_catalogue` knows each
table's loader and checks a table before it is stored.
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

__all__ = ["RULE_TABLES", "RuleText", "RuleFile", "RuleSource", "StoredRuleTable", "stored_rule_table", "stored_rule_row", "store_rule_csv",
           "delete_rule_csv", "rule_source", "open_source", "source_bytes", "read_error"]

#: Names of the rule tables an admin may store in the twin.
RULE_TABLES = ("clearance_rules", "cover_rules", "service_life")


@dataclass(frozen=True)
class RuleText:
    """A rule table as CSV text; ``label`` names it in messages (e.g. ``cover_rules (database)``)."""

    text: str
    label: str

    def __str__(self) -> str:
        return self.label


@dataclass(frozen=True)
class RuleFile:
    """A rule table in a file; ``label`` names it in results and messages (the path stays inside)."""

    path: Path
    label: str

    def __str__(self) -> str:
        return self.label


#: What the loaders read: a file, or the CSV stored in the twin.
RuleSource = RuleFile | RuleText


@dataclass(frozen=True)
class StoredRuleTable:
    """A rule table an admin stored in the twin, with who stored it and when."""

    name: str
    csv: str
    updated_by: str
    updated_at: dt.datetime

    def as_text(self) -> RuleText:
        """The table for the loaders, labelled with where it comes from."""
        return RuleText(self.csv, f"{self.name} (database, {self.updated_by} {self.updated_at:%Y-%m-%d %H:%M:%S})")


def stored_rule_row(db: sa.Engine | sa.Connection, name: str) -> StoredRuleTable | None:
    """The row stored in the twin for rule table ``name``, or None when it uses the file."""
    if isinstance(db, sa.Engine):
        with db.connect() as conn:
            return stored_rule_row(conn, name)
    row = db.execute(sa.text("SELECT csv, updated_by, updated_at FROM rule_table WHERE name = :n"),
                     {"n": name}).first()
    return None if row is None else StoredRuleTable(name, row.csv, row.updated_by, row.updated_at)


def stored_rule_table(db: sa.Engine | sa.Connection, name: str) -> RuleText | None:
    """The CSV stored in the twin for rule table ``name``, or None when it uses the file."""
    stored = stored_rule_row(db, name)
    return None if stored is None else stored.as_text()


def store_rule_csv(conn: sa.Connection, name: str, text: str, by: str) -> None:
    """Store (or replace) rule table ``name`` in the twin; the caller has checked it."""
    conn.execute(sa.text(
        "INSERT INTO rule_table (name, csv, updated_by, updated_at) VALUES (:n, :c, :u, now()) "
        "ON CONFLICT (name) DO UPDATE SET csv = EXCLUDED.csv, updated_by = EXCLUDED.updated_by, "
        "updated_at = now()"), {"n": name, "c": text, "u": by})


def delete_rule_csv(conn: sa.Connection, name: str) -> bool:
    """Remove the stored rule table ``name`` (the file is used again); whether there was one."""
    return bool(conn.execute(sa.text("DELETE FROM rule_table WHERE name = :n"), {"n": name}).rowcount)


def rule_source(
    name: str,
    path: Path | str | RuleSource | None,
    configured: Path | str | None,
    default: Path,
    db: sa.Engine | sa.Connection | None = None,
) -> RuleSource:
    """The table to read: ``path``, else the one stored in the twin ``db``, else ``configured``, else ``default``."""
    if isinstance(path, RuleText | RuleFile):
        return path
    if path is not None:
        return RuleFile(Path(path), f"{Path(path).name} (file)")
    if db is not None:
        stored = stored_rule_table(db, name)
        if stored is not None:
            return stored
    if configured is not None:
        return RuleFile(Path(configured), f"{Path(configured).name} (configured)")
    return RuleFile(default, f"{default.name} (shipped)")


def read_error(exc: Exception) -> str:
    """Why a table could not be read, without the server's file path (an OSError's text has it)."""
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc)


def open_source(source: RuleSource) -> Path | io.StringIO:
    """Something ``pandas.read_csv`` reads."""
    return io.StringIO(source.text) if isinstance(source, RuleText) else source.path


def source_bytes(source: RuleSource) -> bytes:
    """The table's bytes (the cache key's content); OSError when a file cannot be read."""
    return source.text.encode("utf-8") if isinstance(source, RuleText) else source.path.read_bytes()
