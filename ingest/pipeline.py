"""Ingest as a library: read, check, derive, load; one report per batch.

A batch lands in one transaction or not at all: a database failure while it loads is a
:class:`twin.errors.DatabaseError` saying it was rolled back.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import sqlalchemy as sa

from ingest.load import apply_batch
from ingest.prepare import prepare
from ingest.report import CHECKS, Report
from ingest.tables import SurveyTables, read_survey
from twin.crs import twin_crs
from twin.db import open_twin
from twin.errors import DatabaseError, InputError
from twin.settings import TwinSettings

__all__ = ["ImportOptions", "ingest_survey", "ingest_tables", "rejected_report", "Progress"]

log = logging.getLogger("pipetwin.ingest")

Progress = Callable[[str], None]


@dataclass
class ImportOptions:
    """How to read and where to put a survey: what :func:`ingest_survey` needs besides the files."""

    axis_order: str = "ne"
    scope: str = "survey"
    encoding: str = "auto"
    columns: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False

    def params(self) -> dict:
        """The options as recorded on jobs, audit entries and as-built batches."""
        return dataclasses.asdict(self)

    def survey_kwargs(self) -> dict:
        """The options as keyword arguments of :func:`ingest_survey`."""
        return {"axis_order": self.axis_order, "encoding": self.encoding, "mapping": self.columns,
                "scope": self.scope, "dry_run": self.dry_run}


def rejected_report(exc: InputError) -> Report:
    """The report of a batch whose files could not be read at all."""
    report = Report(status="rejected")
    code = exc.code if exc.code in CHECKS else "F003"
    report.add(code, exc.message)
    return report


def ingest_tables(
    tables: SurveyTables,
    settings: TwinSettings,
    *,
    axis_order: str = "ne",
    scope: str = "survey",
    dry_run: bool = False,
    check_long: bool = True,
    progress: Progress | None = None,
    before_commit: Callable[[sa.Connection, Report], None] | None = None,
) -> Report:
    """Check one batch and, when it has no error, apply it to the twin in one transaction.

    ``before_commit(conn, report)`` runs inside that transaction just before it commits.
    """
    step = progress or (lambda _m: None)
    t0 = time.perf_counter()
    crs = twin_crs(settings.crs)
    step("checking")
    prepared = prepare(tables, settings, crs, axis_order=axis_order, check_long=check_long,
                       network_model=tables.kind == "epanet")
    report = prepared.report
    for issue in tables.issues:  # what the reader found or assumed
        report.add(issue.code, issue.message, file=issue.file, row=issue.row, ids=issue.ids)
    report.counts.update(tables.counts)
    report.files = [dataclasses.asdict(f) for f in tables.files]
    report.seconds["check"] = time.perf_counter() - t0
    if report.error_count:
        report.status = "rejected"
        return report
    if dry_run:
        report.status = "checked"
        return report
    t1 = time.perf_counter()
    user = settings.user_name
    engine = open_twin(settings)
    try:
        apply_batch(engine, prepared, srid=crs.srid, kind=tables.kind, scope=scope, user=user,
                    files=report.files, report=report, progress=step, before_commit=before_commit)
    except (sa.exc.SQLAlchemyError, psycopg.Error) as exc:  # the loader also uses psycopg directly
        log.exception("import by %s failed in the database", user)
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
        raise DatabaseError(f"the import failed in the database and was rolled back: {first}") from exc
    finally:
        engine.dispose()
    report.seconds["load"] = time.perf_counter() - t1
    return report


def _file_info(path: Path) -> dict:
    """Name, size and digest of a file the ingest could not read as a table."""
    data = path.read_bytes()
    return {"name": path.name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def ingest_survey(
    points: Path,
    segments: Path,
    settings: TwinSettings,
    *,
    axis_order: str = "ne",
    encoding: str = "auto",
    mapping: Mapping[str, str] | None = None,
    scope: str = "survey",
    dry_run: bool = False,
    progress: Progress | None = None,
    before_commit: Callable[[sa.Connection, Report], None] | None = None,
) -> Report:
    """Ingest the CJJ 61 two-table format; malformed files give a rejected report naming them."""
    if axis_order not in ("ne", "en"):
        raise InputError(f"axis order must be 'ne' or 'en', not {axis_order!r}")
    t0 = time.perf_counter()
    (progress or (lambda _m: None))("reading")
    try:
        tables = read_survey(points, segments, encoding=encoding, mapping=mapping)
    except InputError as exc:
        report = rejected_report(exc)
        report.files = [_file_info(p) for p in (points, segments) if p.is_file()]
        return report
    read_s = time.perf_counter() - t0
    report = ingest_tables(tables, settings, axis_order=axis_order, scope=scope, dry_run=dry_run,
                           progress=progress, before_commit=before_commit)
    report.seconds = {"read": read_s, **report.seconds}
    return report
