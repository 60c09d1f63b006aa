"""Ingest as a library: read, check, derive, load; one report per batch."""

from __future__ import annotations

import dataclasses
import getpass
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import sqlalchemy as sa

from ingest.load import apply_batch
from ingest.prepare import prepare
from ingest.report import CHECKS, Report
from ingest.tables import SurveyTables, read_survey
from twin.crs import twin_crs
from twin.db import open_twin
from twin.errors import InputError
from twin.settings import TwinSettings

__all__ = ["ingest_survey", "ingest_tables", "rejected_report", "Progress"]

Progress = Callable[[str], None]


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
    report.files = [dataclasses.asdict(f) for f in tables.files]
    report.seconds["check"] = time.perf_counter() - t0
    if report.error_count:
        report.status = "rejected"
        return report
    if dry_run:
        report.status = "checked"
        return report
    t1 = time.perf_counter()
    engine = open_twin(settings)
    try:
        apply_batch(engine, prepared, srid=crs.srid, kind=tables.kind, scope=scope,
                    user=settings.user or getpass.getuser(), files=report.files, report=report,
                    progress=step, before_commit=before_commit)
    finally:
        engine.dispose()
    report.seconds["load"] = time.perf_counter() - t1
    return report


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
    """Ingest the CJJ 61 two-table format; malformed files give a rejected report."""
    if axis_order not in ("ne", "en"):
        raise InputError(f"axis order must be 'ne' or 'en', not {axis_order!r}")
    t0 = time.perf_counter()
    (progress or (lambda _m: None))("reading")
    try:
        tables = read_survey(points, segments, encoding=encoding, mapping=mapping)
    except InputError as exc:
        return rejected_report(exc)
    read_s = time.perf_counter() - t0
    report = ingest_tables(tables, settings, axis_order=axis_order, scope=scope, dry_run=dry_run,
                           progress=progress, before_commit=before_commit)
    report.seconds = {"read": read_s, **report.seconds}
    return report
