"""Jobs: long work (imports, network scans, tile builds) run in the background.

A job is a row in ``job``; the client polls ``/jobs/{id}`` for status and progress and
reads ``/jobs/{id}/results`` when it is done. Work runs on a small thread pool of the
server process. A server that stops mid-job leaves the row 'running'; the next start
marks such rows failed (their transactions were rolled back by PostgreSQL).

Each user may have at most ``TWIN_HEAVY_PER_USER`` jobs accepted or running: one more
is answered 429, so one user cannot starve the others.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from analysis.vocabulary import NAMES
from api.auth import User, allow
from api.errors import prefers_chinese, problem
from twin.db import unlimited_statements
from twin.errors import Conflict, NotFound, TooBusy, TwinError
from twin.jsonable import plain
from twin.progress import bilingual

__all__ = ["JobRunner", "JobResult", "Progress", "TooBusy", "router", "base_url"]

log = logging.getLogger("pipetwin.jobs")

#: progress(percent, message) reports how far a job is.
Progress = Callable[[int, str], None]


@dataclass
class JobResult:
    """What a job returns: JSON, and optionally a text document (SVG, HTML, CSV)."""

    value: Any = None
    media_type: str | None = None
    text: str | None = None


class JobRunner:
    def __init__(self, engine: sa.Engine, *, per_user: int = 2, threads: int = 2) -> None:
        self.engine = engine
        self.per_user = per_user
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="job")
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}

    def recover(self) -> int:
        """Mark jobs a previous server left unfinished as failed; returns how many."""
        with self.engine.begin() as conn:
            return conn.execute(
                sa.text(
                    "UPDATE job SET status = 'failed', finished_at = now(), "
                    "message = 'the server stopped before the job finished; nothing was applied' "
                    "WHERE status IN ('accepted', 'running')"
                )
            ).rowcount

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def submit(self, kind: str, owner: str, params: dict, work: Callable[[Progress], JobResult],
               *, limited: bool = True) -> str:
        """Queue ``work``; returns the job id at once.

        ``limited=False`` is for follow-up work the server starts itself (tile refreshes):
        it is owned by the user who caused it but does not count against their limit.
        """
        owner_slot = owner if limited else None
        with self._lock:
            if limited and self._running.get(owner, 0) >= self.per_user:
                raise TooBusy(
                    f"{owner} already has {self.per_user} jobs running; wait for one to finish",
                    zh=f"{owner} 已有 {self.per_user} 个作业在运行；请等其中一个完成"
                )
            if limited:
                self._running[owner] = self._running.get(owner, 0) + 1
        job_id = secrets.token_hex(8)
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.text("INSERT INTO job (id, kind, owner, params) VALUES (:i, :k, :o, CAST(:p AS jsonb))"),
                    {"i": job_id, "k": kind, "o": owner, "p": json.dumps(plain(params), default=str)},
                )
            self._pool.submit(self._run, job_id, owner_slot, work)
        except BaseException:
            self._release(owner_slot)
            raise
        return job_id

    def _release(self, owner: str | None) -> None:
        if owner is None:
            return
        with self._lock:
            self._running[owner] -= 1

    def _set(self, job_id: str, **values: object) -> None:
        sets = ", ".join(f"{k} = :{k}" for k in values)
        with self.engine.begin() as conn:
            conn.execute(sa.text(f"UPDATE job SET {sets} WHERE id = :id"), {"id": job_id, **values})

    def _run(self, job_id: str, owner: str | None, work: Callable[[Progress], JobResult]) -> None:
        last: list[tuple[int, str] | None] = [None]

        def progress(percent: int, message: str) -> None:
            state = (max(0, min(99, int(percent))), message[:500])
            if state != last[0]:  # one row update per change the client can see
                last[0] = state
                self._set(job_id, progress=state[0], message=state[1])

        try:
            with self.engine.begin() as conn:
                conn.execute(
                    sa.text("UPDATE job SET status = 'running', started_at = now() WHERE id = :i"),
                    {"i": job_id},
                )
            with unlimited_statements():  # a job may run longer than a request's statements
                result = work(progress)
            with self.engine.begin() as conn:
                conn.execute(
                    sa.text(
                        "UPDATE job SET status = 'successful', progress = 100, finished_at = now(), "
                        "message = 'done', result = CAST(:r AS jsonb), result_type = :t, result_text = :x "
                        "WHERE id = :i"
                    ),
                    {
                        "i": job_id,
                        "r": json.dumps(plain(result.value), default=str),
                        "t": result.media_type,
                        "x": result.text,
                    },
                )
        except TwinError as exc:  # Chinese first, then English, as the CLI says it
            said = f"{exc.message_zh} — {exc.message}" if exc.message_zh else exc.message
            self._fail(job_id, f"[{exc.code}] {said}")
        except Exception as exc:  # a job must end in a state the client can read
            log.exception("job %s failed: %s", job_id, type(exc).__name__)
            self._fail(job_id, f"内部错误；请将作业编号 {job_id} 告知管理员 — internal error; quote job "
                       f"{job_id} to the operator (the server log has it)")
        finally:
            self._release(owner)

    def _fail(self, job_id: str, message: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                sa.text("UPDATE job SET status = 'failed', finished_at = now(), message = :m WHERE id = :i"),
                {"i": job_id, "m": message[:2000]},
            )


# ----------------------------------------------------------------------------- routes
router = APIRouter(tags=["jobs"])

_JOB_COLUMNS = "id, kind, owner, status, progress, message, params, created_at, started_at, finished_at"


def _job_doc(row: sa.RowMapping, base: str, request: Request) -> dict:
    """A job as OGC API - Processes shows it; its ``message`` in the request's language (Chinese
    for ``Accept-Language: zh``), with ``message_en`` and ``message_zh`` (None when unknown)."""
    doc = plain(dict(row))
    en, zh = bilingual(doc.get("message"))
    chinese = zh is not None and prefers_chinese(request.headers.get("accept-language"))
    doc.update(message=zh if chinese else en, message_en=en, message_zh=zh)
    doc["jobID"] = doc.pop("id")
    doc["type"] = "process"
    doc["processID"] = doc.pop("kind")
    doc["links"] = [{"href": f"{base}/jobs/{doc['jobID']}", "rel": "self", "type": "application/json"}]
    if doc["status"] == "successful":
        doc["links"].append({"href": f"{base}/jobs/{doc['jobID']}/results", "rel": "results"})
    return doc


def _get_job(conn: sa.Connection, job_id: str, user: User, columns: str = _JOB_COLUMNS) -> sa.RowMapping:
    row = conn.execute(sa.text(f"SELECT {columns} FROM job WHERE id = :i"), {"i": job_id}).mappings().first()
    # Another user's job is as good as absent, unless the reader is an admin.
    if row is None or (row["owner"] != user.name and not user.can("admin")):
        raise NotFound(f"no job {job_id!r}", zh=f"没有作业 {job_id!r}")
    return row


def base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


@router.get("/jobs", summary="Your jobs, newest first (admins see everyone's)")
def list_jobs(request: Request, limit: int = 50, user: User = Depends(allow("read"))) -> dict:
    limit = max(1, min(limit, 500))
    with request.app.state.engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                f"SELECT {_JOB_COLUMNS} FROM job WHERE owner = :o OR :admin "
                "ORDER BY created_at DESC LIMIT :lim"
            ),
            {"o": user.name, "admin": user.can("admin"), "lim": limit},
        ).mappings()
        base = base_url(request)
        return {"jobs": [_job_doc(r, base, request) for r in rows], "links": []}


@router.get("/jobs/{job_id}", summary="Status and progress of a job")
def job_status(job_id: str, request: Request, user: User = Depends(allow("read"))) -> dict:
    with request.app.state.engine.connect() as conn:
        return _job_doc(_get_job(conn, job_id, user), base_url(request), request)


@router.get("/jobs/{job_id}/results", summary="The result of a finished job")
def job_results(job_id: str, request: Request, user: User = Depends(allow("read"))) -> Response:
    with request.app.state.engine.connect() as conn:
        row = _get_job(conn, job_id, user, "owner, status, message, result, result_type, result_text")
    if row["status"] != "successful":
        en, zh = bilingual(row["message"] or "")
        return problem(request, 404, "RESULT_NOT_READY", f"the job is {row['status']}: {en}",
                       f"作业状态为 {NAMES['job_status'].get(row['status'], (row['status'],))[0]}：{zh or en}")
    if row["result_type"] and row["result_text"] is not None:
        return Response(row["result_text"], media_type=row["result_type"])
    return JSONResponse(row["result"])


@router.delete("/jobs/{job_id}", summary="Dismiss a finished job's record")
def dismiss_job(job_id: str, request: Request, user: User = Depends(allow("read"))) -> dict:
    with request.app.state.engine.begin() as conn:
        row = _get_job(conn, job_id, user)
        if row["status"] in ("accepted", "running"):
            raise Conflict("a running job cannot be dismissed; wait for it to finish",
                           zh="运行中的作业不能撤销；请等它完成")
        conn.execute(sa.text("UPDATE job SET status = 'dismissed' WHERE id = :i"), {"i": job_id})
        return _job_doc({**row, "status": "dismissed"}, base_url(request), request)
