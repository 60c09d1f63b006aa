"""Survey uploads as import jobs, and as-built batches (竣工) submitted, reviewed and committed.

Imports
-------
``POST /imports`` (permission ``edit``) takes the CJJ 61 point and segment tables (CSV or XLSX,
any encoding the ingest reads) as multipart files, with the options as form fields, and runs
the ingest as a job (``Location: /jobs/{id}``). Instead of the two tables, one GIS or CAD
dataset may come in a ``source`` field (GeoPackage, a .zip of shapefiles or of a FileGDB,
GeoJSON, DXF, CSV with WKT; :mod:`ingest.gis`), with ``points_layer``, ``segments_layer``,
``crs`` and ``snap`` form fields and the same ``columns``, ``scope`` and ``dry_run``: it is
opened before the job is queued (400 when GDAL cannot read it or a layer is missing; 400
``TABLE_TOO_LARGE`` beyond twice ``TWIN_MAX_TABLE_ROWS`` features). Its progress steps are reading (5 %), checking
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
refresh is scheduled (:func:`api.tiles.schedule_refresh`).

Before a job is queued, each uploaded table is measured without being parsed
(:func:`ingest.tables.check_table_size`: an XLSX's unpacked size and its sheet's rows, a CSV's
bytes and lines) against ``TWIN_MAX_TABLE_ROWS`` and ``TWIN_MAX_TABLE_MB``: beyond them the
answer is 400 ``TABLE_TOO_LARGE`` at once. Measuring (and an as-built's data checks, which
parse in the request) holds a slot of :mod:`api.limits` (429 when none comes free).

``GET /imports`` lists the batches, ``GET /imports/{batch_id}`` gives one with its report, and
``GET /network/summary`` counts the live network in one statement (one snapshot,
:func:`twin.summary.summarise`): a reader sees the network before or after a batch, never half
of one.

As-built batches (竣工测量)
---------------------------
Four eyes between the contractor's data and the twin. The workflow is :mod:`ingest.asbuilt`
(its state machine, the four-eyes rule, the stored tables; ``twin asbuilt`` runs it too); these
routes add the sign-in, the request's parsing, the commit job and the audit entries:

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
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from api import jobs
from api.audit import audit
from api.auth import User, allow
from api.jobs import JobResult, Progress, base_url
from api.limits import work_limits
from api.tiles import schedule_refresh
from ingest import asbuilt
from ingest.gis import ingest_gis, inspect_gis
from ingest.pipeline import ImportOptions, ingest_survey
from ingest.report import Report
from ingest.tables import TOO_LARGE, TableLimits, check_table_size, load_column_mapping
from twin.errors import Conflict, InputError, NotFound
from twin.jsonable import plain
from twin.summary import summarise

__all__ = ["router", "network_summary"]

router = APIRouter(tags=["ingest"])

AxisOrder = Literal["ne", "en"]
Encoding = Literal["auto", "utf-8", "utf-8-sig", "gbk", "gb18030"]
BIGINT = 2**63 - 1
SCOPE = r"^[\w.:/ -]{1,100}$"

_POINTS = File(None, description="Point table (管线点成果表), CSV or XLSX")
_SEGMENTS = File(None, description="Segment table (管线段成果表), CSV or XLSX")
#: An as-built batch is always the two survey tables.
_POINTS_NEEDED = File(..., description="Point table (管线点成果表), CSV or XLSX")
_SEGMENTS_NEEDED = File(..., description="Segment table (管线段成果表), CSV or XLSX")
_SOURCE = File(None, description="Instead of the two tables: one GIS or CAD dataset (.gpkg, .zip of "
               "shapefiles or a FileGDB, .geojson, .dxf, .csv with WKT)")

#: Progress of a job at the start of each table's load (the ingest loads them in this order).
_LOAD_PERCENT = {"node": 40, "segment": 55, "valve": 70, "source": 80, "customer": 88}


# ----------------------------------------------------------------------------- helpers
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
        raise InputError(f"{what} holds a NUL character", zh=f"{what} 含有 NUL 字符")


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
    """Remove the upload and as-built folders of server processes that died mid-import (kill -9)."""
    tmp = Path(tempfile.gettempdir())
    for folder in [*tmp.glob("pipetwin-upload-*-*"), *tmp.glob("pipetwin-asbuilt-*-*")]:
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
    # Stored side by side in an as-built batch: the same name twice is kept apart.
    names = asbuilt.distinct_names(
        _file_name(points.filename, "points"), _file_name(segments.filename, "segments")
    )
    return _save([("points", names[0], points.file), ("segments", names[1], segments.file)])


def _check_sizes(request: Request, files: list[Upload]) -> None:
    """Refuse (400 TABLE_TOO_LARGE) uploaded survey tables beyond the limits, before any parsing."""
    limits = TableLimits.survey(request.app.state.settings)
    for f in files:
        check_table_size(f.path, limits)


def _column_mapping(text: str | None) -> dict[str, str]:
    """The header mapping form field (JSON object header -> column), checked by the ingest."""
    if not text:
        return {}
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"columns is not valid JSON: {exc}",
                         zh=f"columns 不是有效的 JSON：{exc}") from exc
    if not isinstance(obj, dict) or not all(isinstance(v, str) for v in obj.values()):
        raise InputError("columns must be a JSON object: header name -> canonical column",
                         zh="columns 须为 JSON 对象：表头名称 -> 标准列名")
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


def _audit_params(files: list[dict], options: ImportOptions, report: Report, **extra: object) -> dict:
    return {
        **{f["role"]: f["name"] for f in files},  # points and segments, or a GIS source
        "scope": options.scope,
        "axis_order": options.axis_order,
        "dry_run": options.dry_run,
        **report.outcome(),
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


#: Runs an import: given the stage callback and the hook to run inside the batch's transaction.
ImportRun = Callable[[Callable[[str], None], Callable[[sa.Connection, Report], None]], Report]


def _submit_import_job(
    request: Request,
    user: User,
    kind: str,
    options: ImportOptions,
    files: list[dict],
    run: ImportRun,
    *,
    affected: Callable[[int | None], list[str]] = lambda batch_id: [str(batch_id)],
    audit_extra: dict | None = None,
    job_params: dict | None = None,
    finish: Callable[[dict], dict] | None = None,
) -> str:
    """Run an import (``run``) of ``files`` as a job ``kind``; its id.

    The audit entry (action ``kind``) is written in the batch's own transaction; a rejected
    batch is recorded with its entry; after an applied batch the tileset refresh is
    scheduled. ``finish`` may add to the result.
    """
    app = request.app

    def params(report: Report) -> dict:
        return _audit_params(files, options, report, **(audit_extra or {}))

    def before_commit(conn: sa.Connection, report: Report) -> None:
        audit(conn, user, kind, request, params=params(report), affected=affected(report.batch_id))

    def work(progress: Progress) -> JobResult:
        report = run(_Stages(progress), before_commit)
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
            result["tile_refresh_job"] = schedule_refresh(app, user)
        return JobResult(value=finish(result) if finish is not None else result)

    return app.state.jobs.submit(
        kind, user.name, {**(job_params or {}), **options.params(), "files": files}, work
    )


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
    summary="Upload survey tables (points and segments, CSV or XLSX) or one GIS/CAD dataset "
    "(source): an import job",
    responses={
        201: {"description": "The import job (poll Location); its result is the data-check report"},
        413: {"description": "The upload exceeds TWIN_MAX_UPLOAD_MB"},
        429: {"description": "Too many jobs of this user at once"},
    },
)
def submit_import(
    request: Request,
    points: UploadFile | None = _POINTS,
    segments: UploadFile | None = _SEGMENTS,
    source: UploadFile | None = _SOURCE,
    points_layer: str | None = Form(None, max_length=1000, description="GIS source: point layer(s) "
                                    "(管点), comma-separated; empty: nodes by snapping the lines"),
    segments_layer: str | None = Form(None, max_length=1000,
                                      description="GIS source: line layer(s) (管线), comma-separated"),
    crs: str | None = Form(None, max_length=2000, description="GIS source: CRS of the data "
                           "(default: the dataset's, else the twin's)"),
    snap: float = Form(0.05, ge=0, le=100, description="GIS source: tolerance (m) within which line ends meet"),
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
    if source is not None or points is None or segments is None:
        _one_kind_of_upload(points, segments, source)
        gis = GisUpload(points_layer, segments_layer, crs, snap)
        return _submit_gis_import(request, user, source, options, gis)
    folder, files = _save_uploads(points, segments)
    settings = _settings_for(request, user)
    try:
        with work_limits(request).slot(user.name):
            _check_sizes(request, files)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise

    def run(
        progress: Callable[[str], None], before_commit: Callable[[sa.Connection, Report], None]
    ) -> Report:
        try:
            return ingest_survey(
                files[0].path,
                files[1].path,
                settings,
                **options.survey_kwargs(),
                progress=progress,
                before_commit=before_commit,
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)  # the job removes the uploads when it ends

    try:
        job_id = _submit_import_job(
            request, user, "import", options, [f.info for f in files], run
        )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return _submitted(request, user, job_id)


def _one_kind_of_upload(points: UploadFile | None, segments: UploadFile | None,
                        source: UploadFile | None) -> None:
    """Either the two survey tables or one GIS source: else 422 naming what is missing."""
    if source is not None and (points is not None or segments is not None):
        raise InputError("send either the survey tables (points and segments) or one GIS source, not both",
                         zh="请上传测量成果表（管点表和管线表）或一个 GIS 数据源，不能两者都传")
    if source is None:
        missing = "segments" if points is not None else "points"
        raise RequestValidationError([{"loc": ("body", missing), "msg": "Field required",
                                       "type": "missing", "input": None}])


@dataclass(frozen=True)
class GisUpload:
    """The options of a GIS source's import."""

    points: str | None
    segments: str | None
    crs: str | None
    snap_m: float


def _submit_gis_import(request: Request, user: User, source: UploadFile, options: ImportOptions,
                       gis: GisUpload) -> JSONResponse:
    """Save and open a GIS source (400 when it is no readable dataset, or too large) and run its
    import as a job, like the survey tables'."""
    _no_nul(f"{gis.points or ''}{gis.segments or ''}{gis.crs or ''}", "layer or crs")
    folder, files = _save([("source", _file_name(source.filename, "source"), source.file)])
    settings = _settings_for(request, user)
    try:
        with work_limits(request).slot(user.name):
            layers = inspect_gis(files[0].path, points=gis.points, segments=gis.segments, crs=gis.crs)
            limit = request.app.state.settings.max_table_rows
            if layers.features > 2 * limit:  # a point and a line table's worth
                raise InputError(f"{files[0].name}: {layers.features:,} features; an import holds at "
                                 f"most {limit:,} points and {limit:,} segments", code=TOO_LARGE,
                                 zh=f"{files[0].name}：{layers.features:,} 个要素；一次导入最多 {limit:,} 个管点和 {limit:,} 段管线")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise

    def run(progress: Callable[[str], None], before_commit: Callable[[sa.Connection, Report], None]
            ) -> Report:
        try:
            return ingest_gis(settings, files[0].path, points=gis.points, segments=gis.segments,
                              columns=options.columns, crs=gis.crs, scope=options.scope,
                              snap_m=gis.snap_m, dry_run=options.dry_run, progress=progress,
                              before_commit=before_commit)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    extra = {"points_layer": gis.points, "segments_layer": gis.segments, "crs": gis.crs, "snap_m": gis.snap_m}
    try:
        job_id = _submit_import_job(request, user, "import", options, [f.info for f in files], run,
                                    audit_extra=extra, job_params=extra)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
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
        raise NotFound(f"no import batch {batch_id}", zh=f"没有导入批次 {batch_id}")
    return _batch_doc(row, base_url(request))


#: What ``GET /network/summary`` answers, out of :class:`twin.summary.TwinSummary`.
_SUMMARY_KEYS = (
    "segments", "length_m", "nodes", "valves", "sources", "customers", "latest_batch", "as_of"
)


def network_summary(conn: sa.Connection) -> dict:
    """Counts and length of the live network, read in one statement (one snapshot)."""
    summary = summarise(conn)
    return plain({k: getattr(summary, k) for k in _SUMMARY_KEYS})


@router.get(
    "/network/summary", summary="Counts and total length of the live network (one snapshot)"
)
def get_network_summary(request: Request, user: User = Depends(allow("read"))) -> dict:
    with request.app.state.engine.connect() as conn:
        return network_summary(conn)


# ----------------------------------------------------------------------------- as-built
def _linked(doc: dict, base: str) -> dict:
    """An as-built batch of :mod:`ingest.asbuilt` with its links (and its files' downloads)."""
    this = f"{base}/asbuilt/{doc['id']}"
    files = doc.pop("files", None)
    doc["links"] = [{"href": this, "rel": "self", "type": "application/json"}]
    if doc.get("batch_id"):
        doc["links"].append({"href": f"{base}/imports/{doc['batch_id']}", "rel": "batch"})
    if files is not None:
        doc["files"] = [{**f, "href": f"{this}/files/{f['role']}"} for f in files]
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
    points: UploadFile = _POINTS_NEEDED,
    segments: UploadFile = _SEGMENTS_NEEDED,
    name: str = Form(..., min_length=1, max_length=200, description="Project or contract name"),
    axis_order: AxisOrder = Form("ne"),
    scope: str | None = Form(
        None, pattern=SCOPE, description="Scope of the batch; 'asbuilt:<id>' when unset"
    ),
    encoding: Encoding = Form("auto"),
    columns: str | None = Form(None, max_length=20_000),
    user: User = Depends(allow("edit")),
) -> JSONResponse:
    options = ImportOptions(axis_order, scope or "", encoding, _column_mapping(columns))
    folder, files = _save_uploads(points, segments)
    infos = [f.info for f in files]

    def record(conn: sa.Connection, sub: asbuilt.Submission) -> None:
        params = _audit_params(
            infos, sub.options, sub.report, name=sub.name, outcome=sub.status
        )
        audit(conn, user, "asbuilt-submit", request, params=params, affected=[f"asbuilt:{sub.id}"])

    engine = request.app.state.engine
    try:
        with work_limits(request).slot(user.name):  # the data checks parse the tables here
            _check_sizes(request, files)
            sub = asbuilt.submit(
                engine,
                request.app.state.settings,
                files[0].path,
                files[1].path,
                name=name,
                user=user.name,
                options=options,
                before_commit=record,
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    base = base_url(request)
    with engine.connect() as conn:
        doc = _linked(asbuilt.get(conn, sub.id), base)
    return JSONResponse(
        jsonable_encoder(doc), status_code=201, headers={"Location": f"{base}/asbuilt/{sub.id}"}
    )


@router.get("/asbuilt", summary="As-built batches, newest first")
def list_asbuilt(
    request: Request,
    status: asbuilt.Status | None = Query(None),
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=1_000_000),
    user: User = Depends(allow("read")),
) -> dict:
    with request.app.state.engine.connect() as conn:
        docs = asbuilt.list_batches(conn, status=status, limit=limit, offset=offset)
    base = base_url(request)
    return {"asbuilt": [_linked(d, base) for d in docs], "links": []}


@router.get(
    "/asbuilt/{asbuilt_id}", summary="One as-built batch with its data-check report and files"
)
def get_asbuilt(
    request: Request,
    asbuilt_id: int = PathParam(..., ge=1, le=BIGINT),
    user: User = Depends(allow("read")),
) -> dict:
    with request.app.state.engine.connect() as conn:
        return _linked(asbuilt.get(conn, asbuilt_id), base_url(request))


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
        table = asbuilt.stored_table(conn, asbuilt_id, role)
    ascii_name = table.name.encode("ascii", "replace").decode().replace('"', "_").replace("?", "_")
    return Response(
        table.content,
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
    with request.app.state.engine.begin() as conn:
        doc = asbuilt.review(
            conn, asbuilt_id, user=user.name, accept=body.decision == "accept", note=body.note
        )
        audit(
            conn,
            user,
            "asbuilt-review",
            request,
            params={"decision": body.decision, "note": doc["review_note"]},
            affected=[f"asbuilt:{asbuilt_id}"],
        )
    return _linked(doc, base_url(request))


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

    def finish(result: dict) -> dict:
        with app.state.engine.connect() as c:
            status = asbuilt.current_status(c, asbuilt_id)
        return {**result, "asbuilt": {"id": asbuilt_id, "status": status}}

    # The row lock makes "no commit running" and the new job one step for concurrent requests.
    with app.state.engine.begin() as conn:
        batch = asbuilt.reviewed(conn, asbuilt_id)
        running = conn.execute(
            sa.text(
                "SELECT id FROM job WHERE kind = 'asbuilt-commit' "
                "AND status IN ('accepted', 'running') AND params->>'asbuilt' = CAST(:i AS text)"
            ),
            {"i": asbuilt_id},
        ).scalar()
        if running:
            raise Conflict(f"as-built batch {asbuilt_id} is being committed by job {running}",
                           zh=f"竣工批次 {asbuilt_id} 正由作业 {running} 提交入库")
        job_id = _submit_import_job(
            request,
            user,
            "asbuilt-commit",
            batch.options,
            [t.info for t in batch.tables],
            lambda progress, before_commit: asbuilt.commit(
                app.state.settings,
                batch,
                user=user.name,
                progress=progress,
                before_commit=before_commit,
            ),
            affected=lambda batch_id: [f"asbuilt:{asbuilt_id}", str(batch_id)],
            audit_extra={"name": batch.name},
            job_params={"asbuilt": asbuilt_id},
            finish=finish,
        )
    return _submitted(request, user, job_id)
