"""As-built batches (竣工测量): a contractor's survey, checked, reviewed by another person, committed.

The life cycle, defined once in :data:`TRANSITIONS`::

    (submission) -> submitted | rejected    the data checks decide at once
    submitted    -> reviewed | rejected     an approver who is not the submitter (four eyes)
    reviewed     -> committed               the stored tables imported as one batch

``committed`` and ``rejected`` are final: corrected files are a new as-built batch. A move the
table does not allow raises :class:`~twin.errors.Conflict`; the submitter reviewing their own
batch raises :class:`~twin.errors.Forbidden` (the batch's state is fine, the reviewer is not).

Submitting runs the data checks (a dry run of :func:`ingest.pipeline.ingest_survey`) and stores
the two tables in the database (``asbuilt_file``), so the batch committed is the batch reviewed.
:func:`commit` imports the stored tables; the status turns ``committed`` (who, when, batch id)
inside the import's own transaction, so a failed import leaves the batch ``reviewed`` and the
twin unchanged. Every function takes the name of the user acting; ``before_commit`` hooks run
inside the transaction that records the change (the server writes its audit entry there).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import sqlalchemy as sa

from ingest.pipeline import ImportOptions, Progress, ingest_survey
from ingest.report import Report
from twin.db import open_twin
from twin.errors import Conflict, Forbidden, InputError, NotFound
from twin.jsonable import plain
from twin.settings import TwinSettings

__all__ = [
    "Status",
    "STATES",
    "TRANSITIONS",
    "ON_SUBMISSION",
    "Submission",
    "StoredTable",
    "Reviewed",
    "allowed",
    "distinct_names",
    "submit",
    "review",
    "reviewed",
    "commit",
    "get",
    "current_status",
    "list_batches",
    "stored_table",
]

Status = Literal["submitted", "reviewed", "committed", "rejected"]
STATES: tuple[str, ...] = get_args(Status)

#: Each state and the states it may move to; the data checks give a new batch its first one.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "submitted": ("reviewed", "rejected"),
    "reviewed": ("committed",),
    "committed": (),
    "rejected": (),
}
ON_SUBMISSION: tuple[str, str] = ("submitted", "rejected")  # checks passed, checks failed

ROLES = ("points", "segments")

_COLUMNS = (
    "id, name, status, options, submitted_by, submitted_at, reviewed_by, reviewed_at, "
    "review_note, committed_by, committed_at, batch_id"
)
_CHECK_KEYS = ("status", "error_count", "warning_count", "issue_counts")


# ----------------------------------------------------------------------------- the state machine
def allowed(status: str, to: str) -> bool:
    """Whether an as-built batch in ``status`` may move to ``to``."""
    return to in TRANSITIONS.get(status, ())


def _move(asbuilt_id: int, status: str, to: str) -> None:
    """Refuse a move the life cycle does not allow (Conflict), saying what would be allowed."""
    if allowed(status, to):
        return
    if to == "committed":
        hint = " (review it first)" if status == "submitted" else ""
        raise Conflict(
            f"as-built batch {asbuilt_id} is {status}; only a reviewed batch can be committed{hint}",
            zh=f"竣工批次 {asbuilt_id} 状态为 {status}；只有已审核的批次可以提交入库"
               + ("（请先审核）" if status == "submitted" else "")
        )
    raise Conflict(f"as-built batch {asbuilt_id} is {status}, not waiting for review",
                   zh=f"竣工批次 {asbuilt_id} 状态为 {status}，不在待审核状态")


def _text(value: str | None, what: str) -> str | None:
    """Text a person typed: NUL refused, spaces trimmed, empty as None."""
    if value is not None and "\x00" in value:
        raise InputError(f"{what} holds a NUL character", zh=f"{what} 含有 NUL 字符")
    return (value or "").strip() or None


def _row(conn: sa.Connection, asbuilt_id: int, *, lock: bool = False) -> sa.RowMapping:
    row = (
        conn.execute(
            sa.text(
                f"SELECT {_COLUMNS}, report FROM asbuilt WHERE id = :i"
                + (" FOR UPDATE" if lock else "")
            ),
            {"i": asbuilt_id},
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"no as-built batch {asbuilt_id}", zh=f"没有竣工批次 {asbuilt_id}")
    return row


# ----------------------------------------------------------------------------- submit
@dataclass
class Submission:
    """A submitted as-built batch: its id, first state, data-check report and options."""

    id: int
    name: str
    status: str
    report: Report
    #: The options as checked (a dry run), with the batch's scope.
    options: ImportOptions


#: Runs inside the transaction that records a submission (the server's audit entry).
SubmitHook = Callable[[sa.Connection, Submission], None]


def distinct_names(points: str, segments: str) -> tuple[str, str]:
    """File names stored side by side: the same name twice gets each table's role as a prefix."""
    if points == segments:
        return f"points-{points}", f"segments-{segments}"
    return points, segments


def _record(conn: sa.Connection, sub: Submission, user: str, files: dict[str, Path]) -> None:
    """Insert the batch and its tables; an unset scope becomes ``asbuilt:<id>``."""
    checked = sub.status == "submitted"
    sub.id = conn.execute(
        sa.text(
            "INSERT INTO asbuilt "
            "(name, status, options, report, submitted_by, reviewed_at, review_note) "
            "VALUES (:n, :s, CAST(:o AS jsonb), CAST(:r AS jsonb), :u, "
            "        CASE WHEN :ok THEN NULL ELSE now() END, :note) RETURNING id"
        ),
        {
            "n": sub.name,
            "s": sub.status,
            "o": json.dumps({**sub.options.params(), "dry_run": False}, ensure_ascii=False),
            "r": json.dumps(plain(sub.report.as_dict()), ensure_ascii=False, default=str),
            "u": user,
            "ok": checked,
            "note": None
            if checked
            else f"rejected by the data checks: {sub.report.error_count} error(s)",
        },
    ).scalar_one()
    if not sub.options.scope:
        sub.options.scope = f"asbuilt:{sub.id}"
        conn.execute(
            sa.text(
                "UPDATE asbuilt "
                "SET options = jsonb_set(options, '{scope}', to_jsonb(CAST(:s AS text))) "
                "WHERE id = :i"
            ),
            {"s": sub.options.scope, "i": sub.id},
        )
    names = distinct_names(files["points"].name, files["segments"].name)
    for role, name in zip(ROLES, names, strict=True):
        conn.execute(
            sa.text(
                "INSERT INTO asbuilt_file (asbuilt_id, name, role, content) "
                "VALUES (:i, :n, :r, :c)"
            ),
            {"i": sub.id, "n": name, "r": role, "c": files[role].read_bytes()},
        )


def submit(
    engine: sa.Engine,
    settings: TwinSettings,
    points: Path,
    segments: Path,
    *,
    name: str,
    user: str,
    options: ImportOptions | None = None,
    progress: Progress | None = None,
    before_commit: SubmitHook | None = None,
) -> Submission:
    """Check the two tables and store them as an as-built batch: 'submitted' or 'rejected'.

    ``options.scope`` empty (the default) gives the batch the scope ``asbuilt:<id>``. The checks
    run before the transaction that records the batch; ``before_commit(conn, submission)`` runs
    last inside it.
    """
    title = _text(name, "name")
    if title is None:
        raise InputError("an as-built batch needs a name", zh="竣工批次须有名称")
    checked = dataclasses.replace(options or ImportOptions(scope=""), dry_run=True)
    report = ingest_survey(
        points,
        segments,
        settings.model_copy(update={"user": user}),
        **checked.survey_kwargs(),
        progress=progress,
    )
    status = ON_SUBMISSION[0] if report.status == "checked" else ON_SUBMISSION[1]
    sub = Submission(0, title, status, report, checked)
    with engine.begin() as conn:
        _record(conn, sub, user, {"points": points, "segments": segments})
        if before_commit is not None:
            before_commit(conn, sub)
    return sub


# ----------------------------------------------------------------------------- review
def review(
    conn: sa.Connection, asbuilt_id: int, *, user: str, accept: bool, note: str | None = None
) -> dict:
    """Accept ('reviewed') or reject ('rejected', with a note saying why) a submitted batch.

    Runs in the caller's transaction; the submitter may not review their own batch (Forbidden).
    Returns the batch as :func:`get` does.
    """
    note = _text(note, "note")
    if not accept and note is None:
        raise InputError("a rejection needs a note saying why", zh="驳回须在备注中说明理由")
    row = _row(conn, asbuilt_id, lock=True)
    if row["submitted_by"] == user:
        raise Forbidden("the submitter of an as-built batch cannot review it (four eyes)",
                        zh="竣工批次的提交人不能审核该批次（双人审核）")
    status = "reviewed" if accept else "rejected"
    _move(asbuilt_id, row["status"], status)
    conn.execute(
        sa.text(
            "UPDATE asbuilt SET status = :s, reviewed_by = :u, reviewed_at = now(), "
            "review_note = :n WHERE id = :i"
        ),
        {"s": status, "u": user, "n": note, "i": asbuilt_id},
    )
    return get(conn, asbuilt_id)


# ----------------------------------------------------------------------------- commit
@dataclass
class StoredTable:
    """One of the two tables stored with an as-built batch."""

    role: str
    name: str
    content: bytes

    @property
    def info(self) -> dict:
        """Role, name, size and digest, as jobs and batches record files."""
        return {
            "role": self.role,
            "name": self.name,
            "bytes": len(self.content),
            "sha256": hashlib.sha256(self.content).hexdigest(),
        }


@dataclass
class Reviewed:
    """A reviewed as-built batch, read to be committed: its name, options and stored tables."""

    id: int
    name: str
    options: ImportOptions
    tables: list[StoredTable]  # points, segments


def reviewed(conn: sa.Connection, asbuilt_id: int) -> Reviewed:
    """The batch to commit, locked in the caller's transaction; Conflict unless it is reviewed."""
    row = _row(conn, asbuilt_id, lock=True)
    _move(asbuilt_id, row["status"], "committed")
    stored = conn.execute(
        sa.text("SELECT role, name, content FROM asbuilt_file WHERE asbuilt_id = :i"),
        {"i": asbuilt_id},
    ).all()
    by_role = {r.role: StoredTable(r.role, r.name, bytes(r.content)) for r in stored}
    if set(by_role) != set(ROLES):
        raise Conflict(f"as-built batch {asbuilt_id} lacks its stored tables",
                       zh=f"竣工批次 {asbuilt_id} 缺少已存储的数据表")
    opts = row["options"] or {}
    options = ImportOptions(
        opts.get("axis_order", "ne"),
        opts.get("scope") or f"asbuilt:{asbuilt_id}",
        opts.get("encoding", "auto"),
        opts.get("columns") or {},
        dry_run=False,
    )
    return Reviewed(asbuilt_id, row["name"], options, [by_role[r] for r in ROLES])


def _mark_committed(conn: sa.Connection, asbuilt_id: int, *, user: str, batch_id: int) -> None:
    """Inside the import's transaction: the batch turns 'committed', or the import rolls back."""
    status = _row(conn, asbuilt_id, lock=True)["status"]
    if not allowed(status, "committed"):
        raise Conflict(f"as-built batch {asbuilt_id} is no longer reviewed; nothing was applied",
                       zh=f"竣工批次 {asbuilt_id} 已不是已审核状态；未做任何更改")
    conn.execute(
        sa.text(
            "UPDATE asbuilt SET status = 'committed', committed_by = :u, "
            "committed_at = now(), batch_id = :b WHERE id = :i"
        ),
        {"u": user, "b": batch_id, "i": asbuilt_id},
    )


def commit(
    settings: TwinSettings,
    batch: Reviewed | int,
    *,
    user: str,
    progress: Progress | None = None,
    before_commit: Callable[[sa.Connection, Report], None] | None = None,
) -> Report:
    """Import a reviewed as-built batch from its stored tables, as ``user``; the import's report.

    The batch turns 'committed' inside the import's transaction, then ``before_commit(conn,
    report)`` runs there too; either failing rolls the whole import back. A batch the checks
    now reject is not applied and stays 'reviewed'.
    """
    if isinstance(batch, int):
        engine = open_twin(settings)
        try:
            with engine.begin() as conn:
                batch = reviewed(conn, batch)
        finally:
            engine.dispose()
    asbuilt_id = batch.id

    def claim(conn: sa.Connection, report: Report) -> None:
        _mark_committed(conn, asbuilt_id, user=user, batch_id=report.batch_id)
        if before_commit is not None:
            before_commit(conn, report)

    # The process id in the name lets the server sweep the folder of a process that died.
    with tempfile.TemporaryDirectory(prefix=f"pipetwin-asbuilt-{os.getpid()}-") as tmp:
        paths = []
        for table in batch.tables:
            (Path(tmp) / table.role).mkdir()
            paths.append(Path(tmp) / table.role / table.name)
            paths[-1].write_bytes(table.content)
        return ingest_survey(
            *paths,
            settings.model_copy(update={"user": user}),
            **batch.options.survey_kwargs(),
            progress=progress,
            before_commit=claim,
        )


# ----------------------------------------------------------------------------- read
def get(conn: sa.Connection, asbuilt_id: int) -> dict:
    """One as-built batch: its columns, data-check report and stored tables (without content)."""
    doc = plain(dict(_row(conn, asbuilt_id)))
    doc["report"] = doc.get("report") or {}
    files = conn.execute(
        sa.text(
            "SELECT role, name, octet_length(content) AS bytes, "
            "       encode(sha256(content), 'hex') AS sha256 "
            "FROM asbuilt_file WHERE asbuilt_id = :i ORDER BY role"
        ),
        {"i": asbuilt_id},
    ).mappings()
    doc["files"] = [dict(f) for f in files]
    return doc


def current_status(conn: sa.Connection, asbuilt_id: int) -> str:
    """The state of an as-built batch."""
    return _row(conn, asbuilt_id)["status"]


def list_batches(
    conn: sa.Connection, *, status: str | None = None, limit: int = 50, offset: int = 0
) -> list[dict]:
    """As-built batches, newest first, each with the outcome of its data checks (``check``)."""
    if status is not None and status not in STATES:
        raise InputError(f"no as-built state {status!r}; the states are {', '.join(STATES)}",
                         zh=f"没有竣工状态 {status!r}；状态有 {'、'.join(STATES)}")
    rows = conn.execute(
        sa.text(
            f"SELECT {_COLUMNS}, report FROM asbuilt "
            "WHERE CAST(:s AS text) IS NULL OR status = :s "
            "ORDER BY id DESC LIMIT :l OFFSET :o"
        ),
        {"s": status, "l": limit, "o": offset},
    ).mappings()
    docs = []
    for row in rows:
        doc = plain(dict(row))
        report = doc.pop("report", None) or {}
        doc["check"] = {k: report.get(k) for k in _CHECK_KEYS}
        docs.append(doc)
    return docs


def stored_table(conn: sa.Connection, asbuilt_id: int, role: str) -> StoredTable:
    """A table stored with an as-built batch, as it was submitted."""
    row = conn.execute(
        sa.text("SELECT name, content FROM asbuilt_file WHERE asbuilt_id = :i AND role = :r"),
        {"i": asbuilt_id, "r": role},
    ).first()
    if row is None:
        raise NotFound(f"no {role} table in as-built batch {asbuilt_id}",
                       zh=f"竣工批次 {asbuilt_id} 中没有 {role} 表")
    return StoredTable(role, row.name, bytes(row.content))
