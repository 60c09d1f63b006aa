"""The 3D tileset over HTTP, and keeping it up to date after imports and edits.

``GET /tiles/{path}`` serves the tileset folder (``tileset.json`` and ``t/<level>/<x>/<y>.glb``)
as static files with revalidation: every answer carries an ETag (from the file's size and
modification time, both of which change when a build replaces a file). The network is
confidential, so shared caches must not keep it (``private``). ``tileset.json`` is
``no-cache``: a browser asks again each time and mostly gets ``304 Not Modified``. Each content
URI in it carries its file's version (``t/3/5/2.glb?v=<etag>``), and a content asked for with
its current version may be kept a year (``private, max-age=31536000, immutable``): a phone
re-opening the viewer revalidates the tileset and downloads only the tiles a build changed.
Any other version (or none) is answered ``no-cache``. The app's
GZipMiddleware compresses the answer when the client accepts gzip; that representation is not
byte-identical to the file, so the ETag is then weak. CORS comes from the app's middleware
(``TWIN_CORS_ORIGINS``).

:func:`schedule_refresh` is what imports and edits call after they commit: it starts an
incremental tile build as a job, at most one at a time per server process. A request made
while one is queued or running marks the build dirty and the job runs once more when it is
done, so a burst of edits costs two builds, not one per edit.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import threading
from contextlib import contextmanager
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse, Response

from api.audit import audit_now
from api.auth import User, allow
from api.jobs import JobResult, Progress, base_url, job_status
from tiles.build import MANIFEST, NetworkChanged, build_tileset, tiles_dir
from twin.db import twin_id
from twin.errors import Conflict, NotFound
from twin.settings import TwinSettings

__all__ = ["router", "schedule_refresh", "TileRefresh", "TilesetOwner", "MEDIA_TYPES", "CACHE_CONTROL",
           "CACHE_VERSIONED"]

log = logging.getLogger("pipetwin.tiles")

router = APIRouter(tags=["tiles"])

MEDIA_TYPES = {".json": "application/json", ".glb": "model/gltf-binary"}
#: Confidential data: only the user's own browser may keep a copy, and it revalidates.
CACHE_CONTROL = "private, no-cache"
#: A content asked for at its current version (``?v=``): the browser keeps it without asking.
CACHE_VERSIONED = "private, max-age=31536000, immutable"
#: Files in the folder that are the build's bookkeeping, not the tileset.
_PRIVATE_NAMES = {"manifest.json"}
_SAFE_PATH = re.compile(r"[A-Za-z0-9_.\-/]{1,300}")
_NO_TILESET = "no tileset built yet: run twin tiles build (or POST /tiles/build)"


# ----------------------------------------------------------------------------- serving
def _etag(size: int, mtime_ns: int) -> str:
    """A validator that changes whenever a build replaces the file."""
    return f"{size:x}-{mtime_ns:x}"


def _matches(if_none_match: str, tag: str) -> bool:
    """Weak comparison (RFC 9110 13.1.2): W/ prefixes do not matter for GET revalidation."""
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/").strip('"') == tag:
            return True
    return False


def _not_modified_since(header: str, mtime: float) -> bool:
    try:
        since = parsedate_to_datetime(header).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return False
    return int(mtime) <= since


def _resolve(root: Path, path: str) -> Path:
    """The file ``path`` names inside ``root``; NotFound for anything else."""
    missing = NotFound(f"no tile file {path[:300]!r} in the tileset",
                       zh=f"瓦片集中没有瓦片文件 {path[:300]!r}")
    if not _SAFE_PATH.fullmatch(path) or any(part.startswith(".") for part in path.split("/")):
        raise missing
    suffix = Path(path).suffix.lower()
    if suffix not in MEDIA_TYPES or Path(path).name in _PRIVATE_NAMES:
        raise missing
    base = root.resolve()
    target = (base / path).resolve()
    if not target.is_relative_to(base) or not target.is_file():
        raise missing
    return target


@router.get(
    "/tiles/{path:path}",
    summary="The 3D tileset: tileset.json and its glTF (.glb) contents",
    response_class=Response,
    responses={
        200: {"description": "The file", "content": {"application/json": {}, "model/gltf-binary": {}}},
        304: {"description": "Not modified since the ETag given in If-None-Match"},
    },
)
def tile_file(
    request: Request,
    path: str = PathParam(..., examples=["tileset.json"],
                          description="tileset.json, or a content URI it names (t/<level>/<x>/<y>.glb)"),
    user: User = Depends(allow("read")),
) -> Response:
    root = tiles_dir(request.app.state.settings)
    if not (root / "tileset.json").is_file():
        raise NotFound(_NO_TILESET,
                       zh="尚未生成三维瓦片集：请运行 twin tiles build（或 POST /tiles/build）")
    _refuse_another_twins(request, root, user)
    target = _resolve(root, path)
    # The validator and the bytes come from one open file: a build replacing it meanwhile
    # (os.replace) cannot pair a new ETag with old content, or a length with other bytes.
    index = target.suffix.lower() == ".json"
    try:
        with open(target, "rb") as f:
            st = os.fstat(f.fileno())
            tag = _etag(st.st_size, st.st_mtime_ns) + ("-v" if index else "")  # -v: versioned URIs
            # The app's GZipMiddleware compresses for clients that accept gzip: the bytes sent
            # then differ from the file's, which a strong validator must not claim.
            weak = "gzip" in request.headers.get("accept-encoding", "")
            current = not index and request.query_params.get("v") == tag
            headers = {"ETag": f'W/"{tag}"' if weak else f'"{tag}"',
                       "Cache-Control": CACHE_VERSIONED if current else CACHE_CONTROL,
                       "Last-Modified": formatdate(st.st_mtime, usegmt=True)}
            inm = request.headers.get("if-none-match")
            ims = request.headers.get("if-modified-since")
            if (inm is not None and _matches(inm, tag)) or (
                    inm is None and ims and _not_modified_since(ims, st.st_mtime)):
                return Response(status_code=304, headers=headers)
            content = f.read()
    except OSError:
        raise NotFound(f"no tile file {path[:300]!r} in the tileset",
                       zh=f"瓦片集中没有瓦片文件 {path[:300]!r}") from None
    if index and target.parent == root.resolve():
        content = _versioned(request.app.state.tileset_owner, target.parent, tag, content)
    return Response(content, media_type=MEDIA_TYPES[target.suffix.lower()], headers=headers)


def _versioned(owner: TilesetOwner, root: Path, tag: str, raw: bytes) -> bytes:
    """The tileset document with each content URI carrying its file's version (``?v=<etag>``),
    kept per process until the document changes (every build writes it last)."""
    with owner.lock:
        if owner.versioned is not None and owner.versioned[0] == tag:
            return owner.versioned[1]
    doc = json.loads(raw)
    stack = [doc["root"]]
    while stack:  # one stat per content: a few thousand at a city's tileset, once per build
        tile = stack.pop()
        for content in [tile["content"]] if "content" in tile else tile.get("contents", []):
            uri = content["uri"]
            try:
                st = (root / uri).stat()
            except OSError:
                continue
            content["uri"] = f"{uri}?v={_etag(st.st_size, st.st_mtime_ns)}"
        stack.extend(tile.get("children", []))
    body = json.dumps(doc, separators=(",", ":")).encode()
    with owner.lock:
        owner.versioned = (tag, body)
    return body


class TilesetOwner:
    """Per process: this twin's id, and the id the tileset folder's manifest names (read again
    only when the manifest file changes)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.twin: str | None = None
        self.manifest_key: tuple[int, int] | None = None
        self.tileset_twin: str | None = None
        #: (tileset.json's ETag, the document with versioned content URIs)
        self.versioned: tuple[str, bytes] | None = None


def _refuse_another_twins(request: Request, root: Path, user: User) -> None:
    """A tileset built from another twin (another database or schema with the same data folder),
    or by a PipeTwin that did not stamp it, is not served as this twin's: 409, and a rebuild
    starts (the build sees the stamp differ and builds every tile anew)."""
    owner: TilesetOwner = request.app.state.tileset_owner
    try:
        st = (root / MANIFEST).stat()
        key = (st.st_size, st.st_mtime_ns)
    except OSError:
        key = None
    with owner.lock:
        if owner.twin is None:
            owner.twin = twin_id(request.app.state.engine)
        if key != owner.manifest_key:
            owner.tileset_twin = _manifest_twin(root) if key else None
            owner.manifest_key = key
        mine, theirs = owner.twin, owner.tileset_twin
    if theirs == mine:
        return
    job = schedule_refresh(request.app, user)
    raise Conflict(
        f"the tileset in {root} was built from "
        + (f"another twin ({theirs})" if theirs else "an unknown twin (no stamp)")
        + f", not this one ({mine}); it is being rebuilt"
        + (f" (job {job})" if job else ": run twin tiles build --full"),
        zh=f"{root} 中的三维瓦片集不属于此孪生库：它由"
        + (f"另一个孪生库（{theirs}）" if theirs else "未知孪生库（无标记）")
        + f"生成，而不是此孪生库（{mine}）；正在重新生成"
        + (f"（作业 {job}）" if job else "：请运行 twin tiles build --full"))


def _manifest_twin(root: Path) -> str | None:
    try:
        return json.loads((root / MANIFEST).read_text(encoding="utf-8")).get("twin")
    except (OSError, ValueError, AttributeError):
        return None


# ----------------------------------------------------------------------------- building
@contextmanager
def _build_lock(settings: TwinSettings):
    """One build at a time on a tileset folder, across threads and server processes."""
    folder = tiles_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".build.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _build(settings: TwinSettings, full: bool, progress: Progress, run: int = 1) -> dict:
    """One tile build under the lock, its progress mapped onto the job's percent."""
    prefix = f"build {run}: " if run > 1 else ""

    def step(stage: str, done: int, total: int) -> None:
        if stage == "meshing tiles":
            percent = 20 + (75 * done // total if total else 75)
            progress(percent, f"{prefix}{stage} {done}/{total}")
        else:
            progress(5 if stage.startswith("reading the") else 15, prefix + stage)

    with _build_lock(settings):
        # One process: forking the threaded server for mesh workers is not safe, and an
        # incremental build touches few tiles. `twin tiles build` uses every core.
        return build_tileset(settings, full=full, progress=step, workers=1)


class TileRefresh:
    """The debounce state of one server process: is a refresh job queued or running, and
    has anything changed since it started reading?"""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.job_id: str | None = None
        self.again = False


def _refresh_state(app: FastAPI) -> TileRefresh:
    return app.state.tile_refresh


def schedule_refresh(app: FastAPI, user: User | str) -> str | None:
    """Bring the tileset up to date after a change; returns the id of the job that will.

    Only a tileset that exists is refreshed (None otherwise): the first build is the operator's
    call (``twin tiles build``, ``POST /tiles/build``). Never raises: a refresh that cannot
    start is logged, and the next one catches up.
    """
    owner = user.name if isinstance(user, User) else str(user)
    try:
        state = _refresh_state(app)
        settings: TwinSettings = app.state.settings
        if not (tiles_dir(settings) / "tileset.json").is_file():
            log.info("no tileset to refresh in %s", tiles_dir(settings))
            return None
        with state.lock:
            if state.job_id is not None:
                state.again = True
                return state.job_id

            def work(progress: Progress) -> JobResult:
                runs = 0
                try:
                    while True:
                        with state.lock:
                            state.again = False
                        runs += 1
                        try:
                            report = _build(settings, False, progress, runs)
                        except NetworkChanged:
                            # Edits landed while the build read the network: read it again
                            # (a few times; a network that never holds still is an error).
                            if runs >= 5:
                                raise
                            continue
                        with state.lock:
                            if not state.again:
                                state.job_id = None
                                return JobResult({**report, "runs": runs})
                except BaseException:
                    with state.lock:
                        state.job_id = None
                    raise

            state.job_id = app.state.jobs.submit("tiles", owner, {"full": False, "refresh": True}, work,
                                                 limited=False)
            return state.job_id
    except Exception:
        log.exception("could not schedule a tile refresh for %s", owner)
        return None


@router.post(
    "/tiles/build",
    summary="Build the tileset (incrementally, or in full) as a job",
    status_code=201,
    responses={201: {"description": "The job, at the Location given", "headers": {
        "Location": {"description": "The job's status URL", "schema": {"type": "string"}}}},
        429: {"description": "Too many of your jobs are running"}},
)
def build_tiles(
    request: Request,
    full: bool = Query(False, description="Rebuild every tile, not only the changed ones."),
    user: User = Depends(allow("edit")),
) -> JSONResponse:
    settings: TwinSettings = request.app.state.settings
    job_id = request.app.state.jobs.submit(
        "tiles", user.name, {"full": full}, lambda progress: JobResult(_build(settings, full, progress)))
    audit_now(request.app.state.engine, user, "tiles-build", request, params={"full": full, "job": job_id})
    doc = jsonable_encoder(job_status(job_id, request, user))
    return JSONResponse(doc, status_code=201, headers={"Location": f"{base_url(request)}/jobs/{job_id}"})
