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

from ingest.load import Loader, apply_batch, begin_batch, end_batch
from ingest.prepare import SurveyBatch, prepare
from ingest.report import CHECKS, Report
from ingest.tables import (
    POINT_COLUMNS,
    POINT_REQUIRED,
    SEGMENT_COLUMNS,
    SEGMENT_REQUIRED,
    SurveyTables,
    TableStream,
    WholeReadNeeded,
    open_table,
)
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
    report.add(code, exc.message, message_zh=exc.message_zh)
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
        raise _database_failure(exc, user) from exc
    finally:
        engine.dispose()
    report.seconds["load"] = time.perf_counter() - t1
    return report


def _file_info(path: Path) -> dict:
    """Name, size and digest of a file the ingest could not read as a table."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as f:
        while block := f.read(1 << 22):
            digest.update(block)
            size += len(block)
    return {"name": path.name, "bytes": size, "sha256": digest.hexdigest()}


def _rows_estimate(path: Path) -> int:
    """About how many rows a file has (which load path suits it): its size over the length of
    the lines of its first MiB."""
    with path.open("rb") as f:
        head = f.read(1 << 20)
    lines = head.count(b"\n")
    return path.stat().st_size * lines // len(head) if lines else 1


class _Rejected(Exception):
    """A streamed batch found an error: its transaction is rolled back."""


@dataclass
class _Timer:
    """Seconds spent reading, checking and loading a streamed batch (they interleave)."""

    seconds: dict[str, float] = field(default_factory=lambda: {"read": 0.0, "check": 0.0, "load": 0.0})

    def chunks(self, stream: TableStream):
        it = iter(stream)
        while True:
            t0 = time.perf_counter()
            chunk = next(it, None)
            self.seconds["read"] += time.perf_counter() - t0
            if chunk is None:
                return
            yield chunk

    def timed(self, stage: str, fn: Callable, *args):
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.seconds[stage] += time.perf_counter() - t0


def _stream(batch: SurveyBatch, points: TableStream, segments: TableStream, loader: Loader | None,
            timer: _Timer, step: Progress) -> None:
    """Points, then segments, chunk by chunk: checked, and COPYed while no error is found; then
    the whole-network checks and the derived valves, sources and customers."""
    def write(kind: str, frame) -> None:
        if loader is not None and not batch.report.error_count:
            timer.timed("load", loader.write, kind, frame)

    for chunk in timer.chunks(points):
        write("node", timer.timed("check", batch.add_points, chunk))
        step(f"points {batch.n_nodes:,}")
    timer.timed("check", batch.end_points)
    if loader is not None and not batch.report.error_count:
        loader.prebuild(("node",), then=("segment",))  # nodes indexed while segments are checked
    for chunk in timer.chunks(segments):
        write("segment", timer.timed("check", batch.add_segments, chunk))
        step(f"segments {batch.n_segments:,}")
    if loader is not None and not batch.report.error_count:
        loader.prebuild()  # PostgreSQL indexes nodes and segments while Python checks the network
    step("checking the network")
    valves, sources, customers = timer.timed("check", batch.finish)
    derived = {"valve": valves, "source": sources, "customer": customers}
    if loader is not None:
        loader.expected.update({kind: len(frame) for kind, frame in derived.items()})
    for kind, frame in derived.items():
        write(kind, frame)


def _streamed(points: Path, segments: Path, settings: TwinSettings, *, axis_order: str, encoding: str,
              mapping: Mapping[str, str] | None, scope: str, dry_run: bool, whole: bool, step: Progress,
              before_commit: Callable[[sa.Connection, Report], None] | None) -> Report:
    """:func:`ingest_survey` on tables read in chunks (``whole``: read whole, then chunked)."""
    try:
        ptable = open_table(points, POINT_COLUMNS, POINT_REQUIRED, encoding=encoding, mapping=mapping,
                            whole=whole)
        stable = open_table(segments, SEGMENT_COLUMNS, SEGMENT_REQUIRED, encoding=encoding, mapping=mapping,
                            whole=whole)
    except InputError as exc:
        return _unreadable(exc, points, segments)
    crs = twin_crs(settings.crs)
    batch = SurveyBatch(settings, crs, axis_order=axis_order, points_file=ptable.name,
                        segments_file=stable.name)
    timer, report = _Timer(), batch.report
    if dry_run:
        try:
            _stream(batch, ptable, stable, None, timer, step)
        except InputError as exc:
            return _unreadable(exc, points, segments)
        return _finished(report, ptable, stable, timer, "rejected" if report.error_count else "checked")
    user = settings.user_name
    engine = open_twin(settings)
    expected = {"node": _rows_estimate(points), "segment": _rows_estimate(segments)}
    try:
        with engine.begin() as conn:
            batch_id = begin_batch(conn, kind="survey", scope=scope, user=user, files=[])
            with conn.connection.driver_connection.cursor() as cur, Loader(
                    cur, srid=crs.srid, scope=scope, batch_id=batch_id, step=step, expected=expected) as loader:
                _stream(batch, ptable, stable, loader, timer, step)
                if report.error_count:
                    raise _Rejected
                changes = timer.timed("load", loader.finish)
                timer.seconds["index"] = round(sum(loader.index_seconds.values()), 3)  # (interleaved)
            _finished(report, ptable, stable, timer, "applied")
            end_batch(conn, batch_id, report, changes, before_commit, files=report.files)
    except _Rejected:
        return _finished(report, ptable, stable, timer, "rejected")
    except InputError as exc:  # a table found empty once read (F002)
        return _unreadable(exc, points, segments)
    except (sa.exc.SQLAlchemyError, psycopg.Error) as exc:  # the loader also uses psycopg directly
        raise _database_failure(exc, user) from exc
    finally:
        engine.dispose()
    return report


def _unreadable(exc: InputError, points: Path, segments: Path) -> Report:
    report = rejected_report(exc)
    report.files = [_file_info(p) for p in (points, segments) if p.is_file()]
    return report


def _finished(report: Report, points: TableStream, segments: TableStream, timer: _Timer, status: str) -> Report:
    report.status = status
    report.files = [dataclasses.asdict(t.scanned_info()) for t in (points, segments)]
    report.seconds = dict(timer.seconds)
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
    """Ingest the CJJ 61 two-table format; malformed files give a rejected report naming them.

    The tables are read, checked and COPYed in chunks (:class:`ingest.prepare.SurveyBatch`):
    memory stays flat whatever the survey's size. The batch is one transaction: an error found
    anywhere rolls it back, and nothing is written.
    """
    if axis_order not in ("ne", "en"):
        raise InputError(f"axis order must be 'ne' or 'en', not {axis_order!r}",
                         zh=f"坐标轴顺序须为 'ne'（X 为北坐标）或 'en'（X 为东坐标），不是 {axis_order!r}")
    step = progress or (lambda _m: None)
    step("reading")
    kw = {"axis_order": axis_order, "encoding": encoding, "mapping": mapping, "scope": scope,
          "dry_run": dry_run, "step": step, "before_commit": before_commit}
    try:
        return _streamed(Path(points), Path(segments), settings, whole=False, **kw)
    except WholeReadNeeded:
        # Rows the chunked reader cannot number (a line break in a quoted cell, a ragged row):
        # nothing was committed; the careful reader takes the tables whole.
        return _streamed(Path(points), Path(segments), settings, whole=True, **kw)


def _database_failure(exc: Exception, user: str) -> DatabaseError:
    """The error of an import the database refused (logged with its traceback): rolled back."""
    log.exception("import by %s failed in the database", user)
    first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
    return DatabaseError(f"the import failed in the database and was rolled back: {first}",
                         zh=f"导入在数据库中失败，已回滚：{first}")
