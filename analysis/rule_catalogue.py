"""The rule tables an admin manages: what each is, the one the analyses use now, replacing one.

:data:`RULES` names the clearance, cover and service-life tables with the loader that
parses each (the analyses' own), the setting that may name a file, and the shipped file.
The table in use is the one stored in the twin (``database``), else the configured file
(``configured``), else the shipped GB 50289 defaults (``shipped``). :func:`store_rule_table`
parses a CSV with the table's loader before storing it, so a bad table is refused (an
InputError naming the rule and column) before any analysis sees it;
:func:`delete_rule_table` goes back to the file. The stored rows themselves are read and
written by :mod:`analysis.rule_tables` (which the loaders import, so it cannot import them).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import sqlalchemy as sa

from analysis.clearance import DEFAULT_RULES, load_clearance_rules, rule_arrays
from analysis.cover import DEFAULT_COVER_RULES, CoverRules, load_cover_rules
from analysis.hazards import DEFAULT_SERVICE_LIFE, load_service_life
from analysis.rule_tables import RuleText, delete_rule_csv, store_rule_csv, stored_rule_row
from twin.errors import InputError, NotFound
from twin.settings import TwinSettings

__all__ = [
    "RULES",
    "MAX_TABLE_BYTES",
    "RuleTable",
    "RulesInUse",
    "rules_in_use",
    "rule_table_summary",
    "rule_table_rows",
    "rule_csv",
    "store_rule_table",
    "delete_rule_table",
    "CHECK_RULES",
    "rules_version",
    "CheckRules",
    "check_rules",
    "stored_fingerprints_sql",
]

#: The tables a proposal check judges by (the service-life table is the dig-site hazards').
CHECK_RULES = ("clearance_rules", "cover_rules")
#: Largest rule table accepted (bytes): the shipped ones are a few kB.
MAX_TABLE_BYTES = 1_000_000


@dataclass(frozen=True)
class RuleTable:
    """One rule table: its title, the loader that parses it, the setting naming a file, the shipped file."""

    name: str
    title: str
    loader: Callable[..., pd.DataFrame]
    setting: str
    shipped: Path

    def file(self, settings: TwinSettings) -> tuple[str, Path]:
        """The file used when none is stored: (``configured`` or ``shipped``, its path)."""
        configured = getattr(settings, self.setting, None)
        return ("configured", Path(configured)) if configured is not None else ("shipped", self.shipped)

    def parse(self, text: str, origin: str) -> pd.DataFrame:
        """The table parsed by the analyses' own loader (InputError when it is bad)."""
        return self.loader(RuleText(text, f"{self.name} ({origin})"))


RULES: dict[str, RuleTable] = {t.name: t for t in (
    RuleTable("clearance_rules", "Minimum horizontal and vertical clearance between pipes (GB 50289-2016)",
              load_clearance_rules, "clearance_rules", DEFAULT_RULES),
    RuleTable("cover_rules", "Minimum cover by utility, burial, material and location (GB 50289-2016 table 4.1.1)",
              load_cover_rules, "cover_rules", DEFAULT_COVER_RULES),
    RuleTable("service_life", "Expected service life by material (dig-site hazards)",
              load_service_life, "service_life", DEFAULT_SERVICE_LIFE),
)}


@dataclass(frozen=True)
class RulesInUse:
    """The rule table the analyses use now: where from (``database``, ``configured``, ``shipped``), its CSV."""

    table: RuleTable
    source: str
    text: str
    meta: dict

    def parse(self) -> pd.DataFrame:
        """Its rows, parsed by the analyses' loader."""
        return self.table.parse(self.text, self.source)


def _file_in_use(table: RuleTable, settings: TwinSettings) -> RulesInUse:
    """The configured or shipped file of ``table`` (NotFound when it cannot be read)."""
    source, path = table.file(settings)
    try:
        return RulesInUse(table, source, path.read_text(encoding="utf-8-sig"), {"file": path.name})
    except OSError as exc:  # named by its file name: the server's paths stay inside
        raise NotFound(f"the {source} {table.name} file {path.name} cannot be read: "
                       f"{exc.strerror or type(exc).__name__}",
                       zh=f"无法读取 {table.name} 规则文件 {path.name}（{source}）："
                          f"{exc.strerror or type(exc).__name__}") from None


def _table(name: str) -> RuleTable:
    try:
        return RULES[name]
    except KeyError:
        raise NotFound(f"no rule table {name!r}; one of {', '.join(RULES)}",
                       zh=f"没有规则表 {name!r}；取 {'、'.join(RULES)} 之一") from None


def rules_in_use(db: sa.Engine | sa.Connection, name: str, settings: TwinSettings) -> RulesInUse:
    """The table ``name`` the analyses use now (NotFound when its file cannot be read)."""
    table = _table(name)
    stored = stored_rule_row(db, name)
    if stored is not None:
        return RulesInUse(table, "database", stored.csv,
                          {"updated_by": stored.updated_by, "updated_at": stored.updated_at.isoformat()})
    return _file_in_use(table, settings)


def rule_table_summary(db: sa.Engine | sa.Connection, name: str, settings: TwinSettings) -> dict:
    """Name, title, where it comes from and its row count (or, for a broken file, the error)."""
    current = rules_in_use(db, name, settings)
    entry = {"name": name, "title": current.table.title, "source": current.source, **current.meta}
    try:
        entry["rows"] = len(current.parse())
    except InputError as exc:  # a broken configured file: say so, list the others
        entry["error"] = exc.message
    return entry


def rule_table_rows(db: sa.Engine | sa.Connection, name: str, settings: TwinSettings) -> dict:
    """The table in use as parsed rows: name, title, where it comes from, columns and rows."""
    current = rules_in_use(db, name, settings)
    table = current.parse()
    table = table[[c for c in table.columns if not str(c).startswith("_")]]  # the loaders' own helpers
    return {"name": name, "title": current.table.title, "source": current.source, **current.meta,
            "columns": [str(c) for c in table.columns], "rows": table.to_dict("records")}


def rule_csv(raw: bytes) -> str:
    """An uploaded rule table as text: at most :data:`MAX_TABLE_BYTES` of UTF-8, no NUL, not empty."""
    if len(raw) > MAX_TABLE_BYTES:
        raise InputError(f"a rule table is at most {MAX_TABLE_BYTES:,} bytes",
                         zh=f"规则表最大 {MAX_TABLE_BYTES:,} 字节")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"the table is not UTF-8 text: {exc}", zh=f"表不是 UTF-8 文本：{exc}") from None
    if "\x00" in text:
        raise InputError("the table contains NUL characters", zh="表中含有 NUL 字符")
    if not text.strip():
        raise InputError("the table is empty: send the CSV with its header row",
                         zh="表为空：请发送带表头行的 CSV")
    return text


def store_rule_table(conn: sa.Connection, name: str, text: str, by: str) -> pd.DataFrame:
    """Check a CSV with the table's loader and store it in the twin; its parsed rows."""
    rows = _table(name).parse(text, "uploaded")
    if rows.empty:
        raise InputError(f"the {name} table has no rows: DELETE /rules/{name} goes back to the defaults",
                         zh=f"{name} 表没有数据行：DELETE /rules/{name} 可恢复默认规则")
    store_rule_csv(conn, name, text, by)
    return rows


def delete_rule_table(conn: sa.Connection, name: str, settings: TwinSettings) -> dict:
    """Go back to the configured or shipped file: name, source, file and whether one was stored."""
    table = _table(name)
    removed = delete_rule_csv(conn, name)
    source, path = table.file(settings)
    return {"name": name, "source": source, "file": path.name, "removed": removed}


def rules_version(db: sa.Engine | sa.Connection, settings: TwinSettings,
                  names: Sequence[str] = CHECK_RULES) -> dict:
    """The version of the rule tables in effect (stored, configured or shipped): ``version``, a
    stable hash of their contents (line endings and a BOM aside: the same table stored by an
    admin and shipped is the same version), and each table's ``source`` and ``sha256``.

    A check records it (its stamp); a re-check that gets another version says the rules changed.
    """
    return _version({name: _versioned(rules_in_use(db, name, settings)) for name in names})


def _versioned(current: RulesInUse) -> dict:
    """One table's entry of :func:`rules_version`: source, ``sha256`` of its normalised text, meta."""
    lines = current.text.lstrip("\ufeff").splitlines()
    text = "\n".join(line.rstrip() for line in lines).strip()
    return {"source": current.source, "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(), **current.meta}


def _version(tables: Mapping[str, dict]) -> dict:
    """:func:`rules_version` of the tables' entries (in their order)."""
    whole = hashlib.sha256()
    for name, entry in tables.items():
        whole.update(f"{name}:{entry['sha256']}\n".encode())
    return {"version": whole.hexdigest()[:12], "tables": dict(tables)}


# -- the tables of a proposal check, read once per process -----------------------------------
def stored_fingerprints_sql(alias: str = "rule_table") -> str:
    """The columns :func:`check_rules` needs of each stored table, of ``rule_table`` as ``alias``:
    name, ``md5(csv)``, updated_by, updated_at (a caller may read them in a query of its own)."""
    return f"{alias}.name, md5({alias}.csv), {alias}.updated_by, {alias}.updated_at"


@dataclass(frozen=True)
class CheckRules:
    """The tables a proposal check judges by (:data:`CHECK_RULES`) and their version.

    ``clearance`` and ``cover`` are the loaders' tables (shared: read them, never change them),
    ``clearance_arrays`` the clearance table's columns (:func:`analysis.clearance.rule_arrays`)
    and ``cover_rules`` the cover table's (:class:`analysis.cover.CoverRules`), each made once per
    content; ``version`` is what :func:`rules_version` gives.
    """

    clearance: pd.DataFrame
    clearance_arrays: object
    cover: pd.DataFrame
    cover_rules: CoverRules
    version: dict


@dataclass(frozen=True)
class _Parsed:
    """One table in use, parsed: its :func:`rules_version` entry, rows and prepared form."""

    entry: dict
    table: pd.DataFrame
    prepared: object


#: Parsed check tables by content: (source, name, the stored row's md5 and stamp or the file's hash).
_PARSED: dict[tuple, _Parsed] = {}
_PREPARE: dict[str, Callable[[pd.DataFrame], object]] = {"clearance_rules": rule_arrays, "cover_rules": CoverRules}


def check_rules(db: sa.Connection, settings: TwinSettings,
                stored: Mapping[str, tuple[str, str, dt.datetime]] | None = None) -> CheckRules:
    """The clearance and cover tables in effect, as :func:`rules_in_use` picks them, parsed once
    per process and content (a proposal check runs often; the tables change seldom).

    ``stored``: each stored table's ``md5(csv)``, ``updated_by`` and ``updated_at`` by name, as
    the caller read them (:func:`stored_fingerprints_sql`); None reads them here. A table
    stored, replaced or deleted by an admin, or a file edited, is another content: parsed again
    on the next check, never served stale.
    """
    if stored is None:
        rows = db.execute(sa.text(f"SELECT {stored_fingerprints_sql()} FROM rule_table WHERE name = ANY(:names)"),
                          {"names": list(CHECK_RULES)}).all()
        stored = {r[0]: (r[1], r[2], r[3]) for r in rows}
    parsed = {name: _parsed(db, RULES[name], settings, stored.get(name)) for name in CHECK_RULES}
    clearance, cover = parsed["clearance_rules"], parsed["cover_rules"]
    return CheckRules(clearance.table, clearance.prepared, cover.table, cover.prepared,  # type: ignore[arg-type]
                      _version({name: dict(p.entry) for name, p in parsed.items()}))  # the caller's own


def _parsed(db: sa.Connection, table: RuleTable, settings: TwinSettings,
            stored: tuple[str, str, dt.datetime] | None) -> _Parsed:
    """One check table in use, from the cache when its content was seen before."""
    if stored is not None:
        key: tuple = ("database", table.name, *stored)
        hit = _PARSED.get(key)
        if hit is not None:
            return hit
        row = stored_rule_row(db, table.name)
        if row is not None:
            current = RulesInUse(table, "database", row.csv,
                                 {"updated_by": row.updated_by, "updated_at": row.updated_at.isoformat()})
            key = ("database", table.name, hashlib.md5(row.csv.encode("utf-8")).hexdigest(),
                   row.updated_by, row.updated_at)
            return _remember(key, current, lambda: table.loader(row.as_text()))
    current = _file_in_use(table, settings)
    key = (current.source, table.name, str(table.file(settings)[1]),
           hashlib.sha1(current.text.encode("utf-8")).digest())
    return _PARSED.get(key) or _remember(key, current, lambda: table.loader(None, settings))


def _remember(key: tuple, current: RulesInUse, load: Callable[[], pd.DataFrame]) -> _Parsed:
    """Parse a table (the loader's errors as they are) and keep it under ``key``."""
    rows = load()
    parsed = _Parsed(_versioned(current), rows, _PREPARE[current.table.name](rows))
    if len(_PARSED) >= 32:  # tables edited over and over: forget the old ones
        _PARSED.clear()
    _PARSED[key] = parsed
    return parsed
