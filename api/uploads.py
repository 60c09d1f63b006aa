"""Survey uploads as import jobs, and as-built batches (竣工) submitted, reviewed and committed.

Imports
-------
``POST /imports`` (permission ``edit``) takes the CJJ 61 point and segment tables (CSV or XLSX,
any encoding the ingest reads) as multipart files, with the options as form fields, and runs
the ingest as a job (``Location: /jobs/{id}``). Its progress steps are reading (5 %), checking
(15 %), loading (40-90 % by table) and done. The uploads live in a temporary folder (under
``TMPDIR``) that the job removes when it ends.

The job's result is the data-check report: ``status`` (``applied``, ``rejected`` or, for a dry
run, ``checked``), ``batch_id``, ``counts`` (added/changed/retired per table), ``errors`` and
``warnings`` (code, severity, file, row, ids) and ``issue_counts``. **A batch the checks reject
is a successful job whose result says ``rejected``**: the job did its work, which was to check
the batch and refuse it; it is recorded as a ``rejected`` batch, so ``GET /imports/{id}`` shows
its report too. A *failed* job means the import could not run to its end (a database error, a
server stopped mid-way); nothing is applied then either, because a batch lands in one
transaction or not at all. The audit entry (action ``import``, file names and counts, affected =
the batch id) is written in the batch's own transaction. After an applied batch the tileset
refresh is scheduled (:func:`api.tiles.schedule_refresh`, when that hook exists).

``GET /imports`` lists the batches, ``GET /imports/{batch_id}`` gives one with its report, and
``GET /network/summary`` counts the live network in one statement (one snapshot): a reader sees
the network before or after a batch, never half of one.

As-built batches (竣工测量)
---------------------------
Four eyes between the contractor's data and the twin:

=================================  ===========  =============================================
step                               permission   who (roles)
=================================  ===========  =============================================
``POST /asbuilt``                  ``edit``     editor, admin: uploads the tables and a name
``POST /asbuilt/{id}/review``      ``approve``  approver, admin; never the submitter (403)
``POST /asbuilt/{id}/commit``      ``edit``     editor, admin; only a reviewed batch (else 409)
``GET /asbuilt[/{id}]``            ``read``     everyone signed in (and the stored files)
=================================  ===========  =============================================

Self-review is refused with 403 (a permission the role has, denied for this batch), not 409:
the batch's state is fine, the reviewer is not. Only admins hold both ``edit`` and
``approve``, so an admin's own batch needs another approver or admin.

Submitting stores the files in the database (``asbuilt_file``) and runs the data checks at once
(a dry run): a batch with no error is ``submitted``; one with errors is ``rejected`` by the
checks straight away (submit corrected files as a new batch). Review accepts (``reviewed``) or
rejects (``rejected``, with a note saying why). Commit re-runs the import from the stored files
as a job; the batch, the as-built's ``committed`` status (who, when, batch id) and the audit
entry commit in one transaction, so a failed commit leaves the as-built ``reviewed`` and the
twin unchanged. One commit job per as-built at a time (409 while one runs). Every transition is
audited (``asbuilt-submit``, ``asbuilt-review``, ``asbuilt-commit``).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

import psycopg
import sqlalchemy as sa
from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from api import jobs
from api.audit import audit
from api.auth import User, allow
from api.jobs import JobResult, Progress, base_url
from ingest.pipeline import ingest_survey
from ingest.report import Report
from ingest.tables import load_column_mapping
from twin.errors import Conflict, DatabaseError, Forbidden, InputError, NotFound
from twin.jsonable import plain

__all__ = ["router", "network_summary"]

log = logging.getLogger("pipetwin.uploads")

router = APIRouter(tags=["ingest"])

AxisOrder = Literal["ne", "en"]
Encoding = Literal["auto", "utf-8", "utf-8-sig", "gbk", "gb18030"]
BIGINT = 2**63 - 1
SCOPE = r"^[\w.:/ -]{1,100}$"

_POINTS = File(..., description="Point table (管线点成果表), CSV or XLSX")
_SEGMENTS = File(..., description="Segment table (管线段成果表), CSV or XLSX")

#: Progress of a job at the start of each table's load (the ingest loads them in this order).
_LOAD_PERCENT = {"node": 40, "segment": 55, "valve": 70, "source": 80, "customer": 88}


# ----------------------------------------------------------------------------- helpers
@dataclass
class ImportOptions:
    """What the ingest needs besides the two files."""

    axis_order: str = "ne"
    scope: str = "survey"
    encoding: str = "auto"
    columns: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False

    def params(self) -> dict:
        return {
            "axis_order": self.axis_order,
            "scope": self.scope,
            "encoding": self.encoding,
            "columns": self.columns,
            "dry_run": self.dry_run,
        }


@dataclass
class Upload:
    """One uploaded table saved in a temporary folder: its role (points or segments) and name."""

    role: str
    name: str
    path: Path
    bytes: int
    sha256: str

    @property
    def info(self) -> dict:
        return {"role": self.role, "name": self.name, "bytes": self.bytes, "sha256": self.sha256}


def _no_nul(value: str | None, what: str) -> None:
    if value is not None and "\x00" in value:
        raise InputError(f"{what} holds a NUL character")


def _file_name(given: str | None, role: str) -> str:
    """A safe base name for an uploaded file; the suffix tells the ingest CSV from XLSX."""
    name = Path(str(given or "").replace("\\", "/")).name
    name = re.sub(r"[\x00-\x1f\x7f/]", "", name).strip()
    if len(name) > 120:
        suffix = Path(name).suffix[:10]
        name = name[: 120 - len(suffix)] + suffix
    if name in ("", ".", ".."):
        name = f"{role}.csv"
    return name


def _sweep_stale_uploads() -> None:
    """Remove the upload folders of server processes that died mid-import (kill -9, power cut)."""
    for folder in Path(tempfile.gettempdir()).glob("pipetwin-upload-*-*"):
        pid = folder.name.split("-")[2]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            pass  # alive (another user's process, say)


def _save(sources: list[tuple[str, str, BinaryIO]]) -> tuple[Path, list[Upload]]:
    """Stream (role, file name, data) into a fresh temporary folder, one sub-folder per role."""
    _sweep_stale_uploads()
    # The process id in the name lets a later server remove what a killed one left behind.
    folder = Path(tempfile.mkdtemp(prefix=f"pipetwin-upload-{os.getpid()}-"))
    saved = []
    try:
        for role, name, data in sources:
            (folder / role).mkdir()
            path = folder / role / name
            digest, size = hashlib.sha256(), 0
            with path.open("wb") as out:
                while chunk := data.read(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
            saved.append(Upload(role, name, path, size, digest.hexdigest()))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder, saved


def _save_uploads(points: UploadFile, segments: UploadFile) -> tuple[Path, list[Upload]]:
    names = [_file_name(points.filename, "points"), _file_name(segments.filename, "segments")]
    if names[0] == names[1]:  # stored side by side in an as-built batch: keep them apart
        names = [f"points-{names[0]}", f"segments-{names[1]}"]
    return _save([("points", names[0], points.file), ("segments", names[1], segments.file)])


def _column_mapping(text: str | None) -> dict[str, str]:
    """The header mapping form field (JSON object header -> column), checked by the ingest."""
    if not text:
        return {}
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"columns is not valid JSON: {exc}") from exc
    if not isinstance(obj, dict) or not all(isinstance(v, str) for v in obj.values()):
        raise InputError("columns must be a JSON object: header name -> canonical column")
    for k, v in obj.items():
        _no_nul(k + v, "columns")
    with tempfile.TemporaryDirectory(prefix="pipetwin-columns-") as tmp:
        path = Path(tmp) / "columns.json"
        path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
        return load_column_mapping(path)  # normalised headers; InputError naming unknown columns


class _Stages:
    """Maps the ingest's stage messages onto job percentages."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.percent = 0

    def __call__(self, message: str) -> None:
        words = message.split()
        if message == "reading":
            self.percent, message = 5, "reading the tables"
        elif message == "checking":
            self.percent, message = 15, "checking the data"
        else:
            table = words[1].removesuffix("s") if len(words) > 1 else ""
            self.percent = max(self.percent, _LOAD_PERCENT.get(table, self.percent))
            message = message if words[:1] == ["loading"] else f"loading: {message}"
        self.progress(self.percent, message)


def _settings_for(request: Request, user: User):
    """The server's settings with the signed-in user recorded on batches."""
    return request.app.state.settings.model_copy(update={"user": user.name})


def _run_ingest(
    request: Request,
    user: User,
    files: list[Upload],
    options: ImportOptions,
    *,
    progress: Callable[[str], None] | None = None,
    before_commit: Callable[[sa.Connection, Report], None] | None = None,
) -> Report:
    """Run the ingest on saved uploads; a database failure is a DatabaseError (nothing applied)."""
    try:
        report = ingest_survey(
            files[0].path,
            files[1].path,
            _settings_for(request, user),
            axis_order=options.axis_order,
            encoding=options.encoding,
            mapping=options.columns,
            scope=options.scope,
            dry_run=options.dry_run,
            progress=progress,
            before_commit=before_commit,
        )
    except (sa.exc.SQLAlchemyError, psycopg.Error) as exc:  # the loader also uses psycopg directly
        log.exception("import by %s failed in the database", user.name)
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
        raise DatabaseError(
            f"the import failed in the database and was rolled back: {first}"
        ) from exc
    if not report.files:  # unreadable files: name them anyway
        report.files = [{k: v for k, v in f.info.items() if k != "role"} for f in files]
    return report


def _audit_params(
    files: list[Upload], options: ImportOptions, report: Report, **extra: object
) -> dict:
    return {
        "points": files[0].name,
        "segments": files[1].name,
        "scope": options.scope,
        "axis_order": options.axis_order,
        "dry_run": options.dry_run,
        "status": report.status,
        "counts": report.counts,
        "errors": report.error_count,
        "warnings": report.warning_count,
        **extra,
    }


def _record_rejected(
    conn: sa.Connection, user: User, options: ImportOptions, report: Report
) -> int:
    """A rejected batch is kept (status 'rejected') with its report; the features are untouched."""
    batch_id = conn.execute(
        sa.text(
            "INSERT INTO batch (kind, scope, created_by, files, status, counts) "
            "VALUES ('survey', :s, :u, CAST(:f AS jsonb), 'rejected', CAST(:c AS jsonb)) "
            "RETURNING id"
        ),
        {
            "s": options.scope,
            "u": user.name,
            "f": json.dumps(plain(report.files), ensure_ascii=False),
            "c": json.dumps(plain(report.counts)),
        },
    ).scalar_one()
    report.batch_id = batch_id
    conn.execute(
        sa.text("UPDATE batch SET report = CAST(:r AS jsonb) WHERE id = :i"),
        {"i": batch_id, "r": json.dumps(plain(report.as_dict()), ensure_ascii=False, default=str)},
    )
    return batch_id


def _refresh_tiles(app, user: User) -> str | None:
    """Schedule the tileset refresh after a change (when the tiles module offers it): its job id."""
    import api.tiles

    refresh = getattr(api.tiles, "schedule_refresh", None)
    if refresh is None:
        return None
    try:
        return refresh(app, user)
    except Exception:  # the import stands; a stale tileset is rebuilt by the next refresh
        log.exception("could not schedule the tileset refresh")
        return None


def _submit_import_job(
    request: Request,
    user: User,
    kind: str,
    folder: Path,
    files: list[Upload],
    options: ImportOptions,
    *,
    affected: Callable[[int | None], list[str]] = lambda batch_id: [str(batch_id)],
    audit_extra: dict | None = None,
    job_params: dict | None = None,
    claim: Callable[[sa.Connection, Report], None] | None = None,
    finish: Callable[[dict], dict] | None = None,
) -> str:
    """Run the ingest of saved uploads as a job ``kind``; its id.

    The audit entry (action ``kind``) is written in the batch's own transaction, after
    ``claim`` (which may refuse the batch by raising); a rejected batch is recorded with its
    entry; after an applied batch the tileset refresh is scheduled. ``finish`` may add to the
    result. The job removes ``folder`` when it ends (or at once when it cannot be submitted).
    """
    app = request.app

    def params(report: Report) -> dict:
        return _audit_params(files, options, report, **(audit_extra or {}))

    def before_commit(conn: sa.Connection, report: Report) -> None:
        if claim is not None:
            claim(conn, report)
        audit(conn, user, kind, request, params=params(report), affected=affected(report.batch_id))

    def work(progress: Progress) -> JobResult:
        try:
            report = _run_ingest(
                request,
                user,
                files,
                options,
                progress=_Stages(progress),
                before_commit=before_commit,
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        progress(95, "recording the report")
        if report.status == "rejected":
            with app.state.engine.begin() as conn:
                batch_id = _record_rejected(conn, user, options, report)
                audit(conn, user, kind, request, params=params(report), affected=affected(batch_id))
        elif report.status == "checked":  # a dry run: no batch
            with app.state.engine.begin() as conn:
                audit(conn, user, kind, request, params=params(report))
        result = report.as_dict()
        if report.status == "applied":
            result["tile_refresh_job"] = _refresh_tiles(app, user)
        return JobResult(value=finish(result) if finish is not None else result)

    try:
        return app.state.jobs.submit(
            kind,
            user.name,
            {**(job_params or {}), **options.params(), "files": [f.info for f in files]},
            work,
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def _submitted(request: Request, user: User, job_id: str) -> JSONResponse:
    doc = jobs.job_status(job_id, request, user)
    return JSONResponse(
        jsonable_encoder(doc),
        status_code=201,
        headers={"Location": f"{base_url(request)}/jobs/{job_id}"},
    )


# ----------------------------------------------------------------------------- imports
@router.post(
    "/imports",
    status_code=201,
    summary="Upload survey tables (points and segments, CSV or XLSX): an import job",
    responses={
        201: {"description": "The import job (poll Location); its result is the data-check report"},
        413: {"description": "The upload exceeds TWIN_MAX_UPLOAD_MB"},
        429: {"description": "Too many jobs of this user at once"},
    },
)
def submit_import(
    request: Request,
    points: UploadFile = _POINTS,
    segments: UploadFile = _SEGMENTS,
    axis_order: AxisOrder = Form(
        "ne", description="ne: X is northing (Chinese survey); en: X is easting"
    ),
    scope: str = Form(
        "survey",
        pattern=SCOPE,
        description="Survey area: a re-import retires what it no longer has in this scope",
    ),
    encoding: Encoding = Form("auto", description="Text encoding of CSV files"),
    columns: str | None = Form(
        None, max_length=20_000, description="JSON object: other header names -> canonical column"
    ),
    dry_run: bool = Form(False, description="Check only; write nothing"),
    user: User = Depends(allow("edit")),
) -> JSONResponse:
    options = ImportOptions(axis_order, scope, encoding, _column_mapping(columns), dry_run)
    folder, files = _save_uploads(points, segments)
    job_id = _submit_import_job(request, user, "import", folder, files, options)
    return _submitted(request, user, job_id)


_BATCH_COLUMNS = "id, kind, scope, created_by, created_at, status, counts, files"


def _batch_doc(row: sa.RowMapping, base: str) -> dict:
    doc = plain(dict(row))
    doc["links"] = [
        {"href": f"{base}/imports/{doc['id']}", "rel": "self", "type": "application/json"}
    ]
    return doc


@router.get("/imports", summary="Import batches, newest first")
def list_imports(
    request: Request,
    status: Literal["applied", "rejected"] | None = Query(None),
    scope: str | None = Query(None, pattern=SCOPE),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=1_000_000),
    user: User = Depends(allow("read")),
) -> dict:
    where = (
        "(CAST(:st AS text) IS NULL OR status = :st) AND (CAST(:sc AS text) IS NULL OR scope = :sc)"
    )
    with request.app.state.engine.connect() as conn:
        total = conn.execute(
            sa.text(f"SELECT count(*) FROM batch WHERE {where}"), {"st": status, "sc": scope}
        ).scalar_one()
        rows = (
            conn.execute(
                sa.text(
                    f"SELECT {_BATCH_COLUMNS} FROM batch WHERE {where} "
                    "ORDER BY id DESC LIMIT :l OFFSET :o"
                ),
                {"st": status, "sc": scope, "l": limit, "o": offset},
            )
            .mappings()
            .all()
        )
    base = base_url(request)
    return {
        "imports": [_batch_doc(r, base) for r in rows],
        "numberMatched": total,
        "numberReturned": len(rows),
        "links": [],
    }


@router.get("/imports/{batch_id}", summary="One import batch with its data-check report")
def get_import(
    request: Request,
    batch_id: int = PathParam(..., ge=1, le=BIGINT),
    user: User = Depends(allow("read")),
) -> dict:
    with request.app.state.engine.connect() as conn:
        row = (
            conn.execute(
                sa.text(f"SELECT {_BATCH_COLUMNS}, report FROM batch WHERE id = :i"),
                {"i": batch_id},
            )
            .mappings()
            .first()
        )
    if row is None:
        raise NotFound(f"no import batch {batch_id}")
    return _batch_doc(row, base_url(request))


def network_summary(conn: sa.Connection) -> dict:
    """Counts and length of the live network, read in one statement (one snapshot)."""
    row = (
        conn.execute(
            sa.text(
                "SELECT (SELECT count(*) FROM current_segment) AS segments, "
                "       (SELECT coalesce(sum(coalesce(length_m, ST_3DLength(geom))), 0) "
                "          FROM current_segment) AS length_m, "
                "       (SELECT count(*) FROM current_node) AS nodes, "
                "       (SELECT count(*) FROM current_valve) AS valves, "
                "       (SELECT count(*) FROM current_source) AS sources, "
                "       (SELECT count(*) FROM current_customer) AS customers, "
                "       (SELECT max(id) FROM batch WHERE status = 'applied') AS latest_batch, "
                "       statement_timestamp() AS as_of"
            )
        )
        .mappings()
        .one()
    )
    doc = plain(dict(row))
    doc["length_m"] = round(float(doc["length_m"]), 3)
    return doc


@router.get(
    "/network/summary", summary="Counts and total length of the live network (one snapshot)"
)
def get_network_summary(request: Request, user: User = Depends(allow("read"))) -> dict:
    with request.app.state.engine.connect() as conn:
        return network_summary(conn)


# ----------------------------------------------------------------------------- as-built
_ASBUILT_COLUMNS = (
    "id, name, status, options, submitted_by, submitted_at, reviewed_by, reviewed_at, "
    "review_note, committed_by, committed_at, batch_id"
)


def _asbuilt_doc(row: sa.RowMapping, base: str, *, full: bool) -> dict:
    doc = plain(dict(row))
    report = doc.pop("report", None) or {}
    if full:
        doc["report"] = report
    else:
        doc["check"] = {
            k: report.get(k) for k in ("status", "error_count", "warning_count", "issue_counts")
        }
    this = f"{base}/asbuilt/{doc['id']}"
    doc["links"] = [{"href": this, "rel": "self", "type": "application/json"}]
    if doc.get("batch_id"):
        doc["links"].append({"href": f"{base}/imports/{doc['batch_id']}", "rel": "batch"})
    return doc


def _asbuilt_row(conn: sa.Connection, asbuilt_id: int, *, lock: bool = False) -> sa.RowMapping:
    row = (
        conn.execute(
            sa.text(
                f"SELECT {_ASBUILT_COLUMNS}, report FROM asbuilt WHERE id = :i"
                + (" FOR UPDATE" if lock else "")
            ),
            {"i": asbuilt_id},
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"no as-built batch {asbuilt_id}")
    return row


def _asbuilt_full(conn: sa.Connection, asbuilt_id: int, base: str) -> dict:
    doc = _asbuilt_doc(_asbuilt_row(conn, asbuilt_id), base, full=True)
    files = conn.execute(
        sa.text(
            "SELECT role, name, octet_length(content) AS bytes, "
            "       encode(sha256(content), 'hex') AS sha256 "
            "FROM asbuilt_file WHERE asbuilt_id = :i ORDER BY role"
        ),
        {"i": asbuilt_id},
    ).mappings()
    doc["files"] = [
        {**dict(f), "href": f"{base}/asbuilt/{asbuilt_id}/files/{f['role']}"} for f in files
    ]
    return doc


@router.post(
    "/asbuilt",
    status_code=201,
    summary="Submit an as-built batch (竣工): the two tables and a name; checked at once",
    responses={
        201: {"description": "The as-built batch: 'submitted', or 'rejected' by the data checks"},
        413: {"description": "The upload exceeds TWIN_MAX_UPLOAD_MB"},
    },
)
def submit_asbuilt(
    request: Request,
    points: UploadFile = _POINTS,
    segments: UploadFile = _SEGMENTS,
    name: str = Form(..., min_length=1, max_length=200, description="Project or contract name"),
    axis_order: AxisOrder = Form("ne"),
    scope: str | None = Form(
        None, pattern=SCOPE, description="Scope of the batch; 'asbuilt:<id>' when unset"
    ),
    encoding: Encoding = Form("auto"),
    columns: str | None = Form(None, max_length=20_000),
    user: User = Depends(allow("edit")),
) -> JSONResponse:
    _no_nul(name, "name")
    name = name.strip()
    if not name:
        raise InputError("an as-built batch needs a name")
    options = ImportOptions(
        axis_order, scope or "", encoding, _column_mapping(columns), dry_run=True
    )
    folder, files = _save_uploads(points, segments)
    try:
        report = _run_ingest(request, user, files, options)
        contents = [f.path.read_bytes() for f in files]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    checked = report.status == "checked"
    engine = request.app.state.engine
    with engine.begin() as conn:
        asbuilt_id = conn.execute(
            sa.text(
                "INSERT INTO asbuilt "
                "(name, status, options, report, submitted_by, reviewed_at, review_note) "
                "VALUES (:n, :s, CAST(:o AS jsonb), CAST(:r AS jsonb), :u, "
                "        CASE WHEN :ok THEN NULL ELSE now() END, :note) RETURNING id"
            ),
            {
                "n": name,
                "s": "submitted" if checked else "rejected",
                "o": json.dumps({**options.params(), "dry_run": False}, ensure_ascii=False),
                "r": json.dumps(plain(report.as_dict()), ensure_ascii=False, default=str),
                "u": user.name,
                "ok": checked,
                "note": None
                if checked
                else f"rejected by the data checks: {report.error_count} error(s)",
            },
        ).scalar_one()
        if not scope:
            options.scope = f"asbuilt:{asbuilt_id}"
            conn.execute(
                sa.text(
                    "UPDATE asbuilt "
                    "SET options = jsonb_set(options, '{scope}', to_jsonb(CAST(:s AS text))) "
                    "WHERE id = :i"
                ),
                {"s": options.scope, "i": asbuilt_id},
            )
        for f, content in zip(files, contents, strict=True):
            conn.execute(
                sa.text(
                    "INSERT INTO asbuilt_file (asbuilt_id, name, role, content) "
                    "VALUES (:i, :n, :r, :c)"
                ),
                {"i": asbuilt_id, "n": f.name, "r": f.role, "c": content},
            )
        audit(
            conn,
            user,
            "asbuilt-submit",
            request,
            params=_audit_params(
                files,
                options,
                report,
                name=name,
                outcome="submitted" if checked else "rejected",
            ),
            affected=[f"asbuilt:{asbuilt_id}"],
        )
        doc = _asbuilt_full(conn, asbuilt_id, base_url(request))
    return JSONResponse(
        jsonable_encoder(doc),
        status_code=201,
        headers={"Location": f"{base_url(request)}/asbuilt/{asbuilt_id}"},
    )


@router.get("/asbuilt", summary="As-built batches, newest first")
def list_asbuilt(
    request: Request,
    status: Literal["submitted", "reviewed", "committed", "rejected"] | None = Query(None),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=1_000_000),
    user: User = Depends(allow("read")),
) -> dict:
    with request.app.state.engine.connect() as conn:
        rows = (
            conn.execute(
                sa.text(
                    f"SELECT {_ASBUILT_COLUMNS}, report FROM asbuilt "
                    "WHERE CAST(:s AS text) IS NULL OR status = :s "
                    "ORDER BY id DESC LIMIT :l OFFSET :o"
                ),
                {"s": status, "l": limit, "o": offset},
            )
            .mappings()
            .all()
        )
    base = base_url(request)
    return {"asbuilt": [_asbuilt_doc(r, base, full=False) for r in rows], "links": []}


@router.get(
    "/asbuilt/{asbuilt_id}", summary="One as-built batch with its data-check report and files"
)
def get_asbuilt(
    request: Request,
    asbuilt_id: int = PathParam(..., ge=1, le=BIGINT),
    user: User = Depends(allow("read")),
) -> dict:
    with request.app.state.engine.connect() as conn:
        return _asbuilt_full(conn, asbuilt_id, base_url(request))


@router.get(
    "/asbuilt/{asbuilt_id}/files/{role}",
    summary="Download a stored table of an as-built batch",
    response_class=Response,
    responses={
        200: {
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            }
        }
    },
)
def get_asbuilt_file(
    request: Request,
    role: Literal["points", "segments"],
    asbuilt_id: int = PathParam(..., ge=1, le=BIGINT),
    user: User = Depends(allow("read")),
) -> Response:
    with request.app.state.engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT name, content FROM asbuilt_file WHERE asbuilt_id = :i AND role = :r"),
            {"i": asbuilt_id, "r": role},
        ).first()
    if row is None:
        raise NotFound(f"no {role} table in as-built batch {asbuilt_id}")
    ascii_name = row.name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return Response(
        bytes(row.content),
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{ascii_name}"'},
    )


class Review(BaseModel):
    """An approver's decision on a submitted as-built batch."""

    decision: Literal["accept", "reject"]
    note: str | None = Field(None, max_length=2000, description="Why; required when rejecting")


@router.post(
    "/asbuilt/{asbuilt_id}/review",
    summary="Accept or reject a submitted as-built batch",
    responses={409: {"description": "The batch is not waiting for review"}},
)
def review_asbuilt(
    body: Review,
    request: Request,
    asbuilt_id: int = PathParam(..., ge=1, le=BIGINT),
    user: User = Depends(allow("approve")),
) -> dict:
    _no_nul(body.note, "note")
    note = (body.note or "").strip() or None
    if body.decision == "reject" and note is None:
        raise InputError("a rejection needs a note saying why")
    with request.app.state.engine.begin() as conn:
        row = _asbuilt_row(conn, asbuilt_id, lock=True)
        if row["submitted_by"] == user.name:
            raise Forbidden("the submitter of an as-built batch cannot review it (four eyes)")
        if row["status"] != "submitted":
            raise Conflict(
                f"as-built batch {asbuilt_id} is {row['status']}, not waiting for review"
            )
        status = "reviewed" if body.decision == "accept" else "rejected"
        conn.execute(
            sa.text(
                "UPDATE asbuilt SET status = :s, reviewed_by = :u, reviewed_at = now(), "
                "review_note = :n WHERE id = :i"
            ),
            {"s": status, "u": user.name, "n": note, "i": asbuilt_id},
        )
        audit(
            conn,
            user,
            "asbuilt-review",
            request,
            params={"decision": body.decision, "note": note},
            affected=[f"asbuilt:{asbuilt_id}"],
        )
        return _asbuilt_full(conn, asbuilt_id, base_url(request))


@router.post(
    "/asbuilt/{asbuilt_id}/commit",
    status_code=201,
    summary="Commit a reviewed as-built batch to the twin: an import job",
    responses={
        201: {"description": "The commit job (poll Location)"},
        409: {"description": "The batch is not reviewed, or a commit of it is running"},
        429: {"description": "Too many jobs of this user at once"},
    },
)
def commit_asbuilt(
    request: Request,
    asbuilt_id: int = PathParam(..., ge=1, le=BIGINT),
    user: User = Depends(allow("edit")),
) -> JSONResponse:
    app = request.app
    with app.state.engine.begin() as conn:
        row = _asbuilt_row(conn, asbuilt_id, lock=True)
        if row["status"] != "reviewed":
            hint = " (review it first)" if row["status"] == "submitted" else ""
            raise Conflict(
                f"as-built batch {asbuilt_id} is {row['status']}; only a reviewed batch "
                f"can be committed{hint}"
            )
        running = conn.execute(
            sa.text(
                "SELECT id FROM job WHERE kind = 'asbuilt-commit' "
                "AND status IN ('accepted', 'running') AND params->>'asbuilt' = CAST(:i AS text)"
            ),
            {"i": asbuilt_id},
        ).scalar()
        if running:
            raise Conflict(f"as-built batch {asbuilt_id} is being committed by job {running}")
        stored = conn.execute(
            sa.text("SELECT role, name, content FROM asbuilt_file WHERE asbuilt_id = :i"),
            {"i": asbuilt_id},
        ).all()
        by_role = {r.role: r for r in stored}
        if set(by_role) != {"points", "segments"}:
            raise Conflict(f"as-built batch {asbuilt_id} lacks its stored tables")
        opts = row["options"] or {}
        options = ImportOptions(
            opts.get("axis_order", "ne"),
            opts.get("scope") or f"asbuilt:{asbuilt_id}",
            opts.get("encoding", "auto"),
            opts.get("columns") or {},
            dry_run=False,
        )
        folder, files = _save(
            [
                (role, by_role[role].name, io.BytesIO(bytes(by_role[role].content)))
                for role in ("points", "segments")
            ]
        )

        def claim(tx: sa.Connection, report: Report) -> None:
            done = tx.execute(
                sa.text(
                    "UPDATE asbuilt SET status = 'committed', committed_by = :u, "
                    "committed_at = now(), batch_id = :b "
                    "WHERE id = :i AND status = 'reviewed' RETURNING id"
                ),
                {"u": user.name, "b": report.batch_id, "i": asbuilt_id},
            ).first()
            if done is None:
                raise Conflict(
                    f"as-built batch {asbuilt_id} is no longer reviewed; nothing was applied"
                )

        def finish(result: dict) -> dict:
            with app.state.engine.connect() as c:
                status = c.execute(
                    sa.text("SELECT status FROM asbuilt WHERE id = :i"), {"i": asbuilt_id}
                ).scalar()
            return {**result, "asbuilt": {"id": asbuilt_id, "status": status}}

        job_id = _submit_import_job(
            request,
            user,
            "asbuilt-commit",
            folder,
            files,
            options,
            affected=lambda batch_id: [f"asbuilt:{asbuilt_id}", str(batch_id)],
            audit_extra={"name": row["name"]},
            job_params={"asbuilt": asbuilt_id},
            claim=claim,
            finish=finish,
        )
    return _submitted(request, user, job_id)
