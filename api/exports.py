"""Exports as jobs: ``POST /exports`` writes the network in a GIS, CAD, CJJ 61 or EPANET format.

=================================  =========  ==================================================
route                              permission what
=================================  =========  ==================================================
``POST /exports``                  ``read``   start an export job (JSON body: format, utility,
                                              bbox, at, xlsx); 201 with the job and Location
``GET /exports/{jobId}/file``      ``read``   the file of a finished export, for the user who
                                              asked only (others: 404)
=================================  =========  ==================================================

The job is :func:`exchange.export.export_network`, the call behind ``twin export``. Its file
is kept under the data folder (``<data_dir>/exports/<token>/``, folder 0700, file 0600);
formats that write several files (shp, geojson, cjj61) come as one zip. The export and every
download are audited (actions ``export`` and ``export-download``): the network is
confidential, and every copy of it out of the twin is attributable.
"""

from __future__ import annotations

import os
import secrets
import shutil
import zipfile
from pathlib import Path
from typing import Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from api.audit import audit_now
from api.auth import User, allow
from api.jobs import JobResult, Progress, base_url, job_status
from exchange.export import FOLDER_FORMATS, FORMATS, check_format, export_network, selection
from twin.errors import NotFound

__all__ = ["router", "ExportRequest", "export_folder"]

router = APIRouter(tags=["exports"])

Format = Literal[FORMATS]  # type: ignore[valid-type]
_SUFFIX = {"gpkg": ".gpkg", "dxf": ".dxf", "inp": ".inp"}
_MEDIA = {"gpkg": "application/geopackage+sqlite3", "dxf": "image/vnd.dxf", "zip": "application/zip",
          "inp": "application/zip"}


class ExportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: Format = Field(..., description="gpkg, shp, geojson, dxf, cjj61 or inp")  # type: ignore[valid-type]
    utility: str | None = Field(None, max_length=10, description="one utility (JS) or subtype (YS)")
    bbox: str | None = Field(None, max_length=200, description="E1,N1,E2,N2 in the twin's CRS")
    at: str | None = Field(None, max_length=40, description="the network as it was then (ISO 8601)")
    xlsx: bool = Field(False, description="cjj61: XLSX workbooks instead of CSV")


def export_folder(request: Request, token: str) -> Path:
    """The private folder of one export under the data folder."""
    root = Path(request.app.state.settings.data_dir) / "exports"
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    return root / token


def _package(folder: Path, files: list[str], fmt: str) -> Path:
    """The one file to download: the file itself, or the files zipped (folder formats, inp)."""
    if fmt not in FOLDER_FORMATS and fmt != "inp":
        return Path(files[0])
    target = folder / f"pipetwin-{fmt}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
        for f in files:
            z.write(f, Path(f).name)
    return target


@router.post(
    "/exports",
    status_code=201,
    summary="Export the network (GeoPackage, Shapefile, GeoJSON, DXF, CJJ 61, EPANET): a job",
    responses={201: {"description": "The export job (poll Location); its result links the file"},
               429: {"description": "Too many jobs of this user at once"}},
)
def submit_export(body: ExportRequest, request: Request, user: User = Depends(allow("read"))
                  ) -> JSONResponse:
    check_format(body.format, selection(body.utility, body.bbox, body.at))  # a 400 now, not a failed job
    token = secrets.token_hex(12)
    folder = export_folder(request, token)
    engine = request.app.state.engine
    base = base_url(request)
    params = body.model_dump()

    def work(progress: Progress) -> JobResult:
        folder.mkdir(mode=0o700)
        out = folder / ("out" + _SUFFIX.get(body.format, ""))
        try:
            report = export_network(engine, out, body.format, utility=body.utility, bbox=body.bbox,
                                    at=body.at, xlsx=body.xlsx, progress=progress)
            path = _package(folder, report.files, body.format)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        os.chmod(path, 0o600)
        audit_now(engine, user, "export", request,
                  params={**params, "counts": report.counts, "file": path.name})
        with engine.connect() as conn:  # the job's row is written before its work starts
            job = conn.execute(sa.text("SELECT id FROM job WHERE params ->> 'token' = :t"),
                               {"t": token}).scalar_one()
        doc = report.as_dict()
        doc.update(out=None, files=[Path(f).name for f in report.files], file=path.name,
                   href=f"{base}/exports/{job}/file")
        return JobResult(value=doc)

    job_id = request.app.state.jobs.submit("export", user.name, {**params, "token": token}, work)
    doc = job_status(job_id, request, user)
    doc["links"].append({"href": f"{base}/exports/{job_id}/file", "rel": "enclosure",
                         "title": "the exported file, when the job is done"})
    return JSONResponse(jsonable_encoder(doc), status_code=201,
                        headers={"Location": f"{base}/jobs/{job_id}"})


@router.get("/exports/{job_id}/file", summary="The file of a finished export (its owner only)",
            response_class=FileResponse,
            responses={200: {"content": {t: {"schema": {"type": "string", "format": "binary"}}
                                         for t in sorted({*_MEDIA.values(), "application/octet-stream"})},
                             "description": "The file"}})
def export_file(job_id: str, request: Request, user: User = Depends(allow("read"))) -> FileResponse:
    with request.app.state.engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT owner, status, params ->> 'token' AS token, result ->> 'file' AS file, "
                    "params ->> 'format' AS format FROM job WHERE id = :i AND kind = 'export'"),
            {"i": job_id[:40]}).mappings().first()
    # another user's export is as good as absent, whatever their role: the file is the asker's
    if row is None or row["owner"] != user.name:
        raise NotFound(f"no export {job_id[:40]!r}", zh=f"没有导出任务 {job_id[:40]!r}")
    if row["status"] != "successful" or not row["file"]:
        raise NotFound(f"export {job_id[:40]!r} has no file: the job is {row['status']}",
                       zh=f"导出 {job_id[:40]!r} 没有文件：作业状态为 {row['status']}")
    path = export_folder(request, row["token"]) / row["file"]
    if not path.is_file():
        raise NotFound(f"export {job_id[:40]!r}: its file has been removed",
                       zh=f"导出 {job_id[:40]!r} 的文件已被删除")
    audit_now(request.app.state.engine, user, "export-download", request,
              params={"job": job_id, "file": row["file"]}, affected=[f"job:{job_id}"])
    kind = "zip" if path.suffix == ".zip" else row["format"]
    return FileResponse(path, media_type=_MEDIA.get(kind, "application/octet-stream"),
                        filename=path.name)
