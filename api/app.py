"""The FastAPI application: `create_app(settings)` wires the routers, middleware and state.

Everything but ``/healthz``, ``POST /token`` and the viewer's static page needs a signed-in
user; each router declares the permission it needs (see :mod:`api.auth`).
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from pathlib import Path

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Request, params
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.staticfiles import StaticFiles

from api import (
    account,
    criticality,
    edit,
    errors,
    exports,
    features,
    findings,
    jobs,
    live,
    ogc,
    processes,
    proposals,
    rules,
    shutdowns,
    stats,
    tiles,
    uploads,
    viewer_api,
)
from api.auth import API_KEY, BEARER, credential_user, current_user, signed_in, signing_secret
from api.errors import PROBLEMS
from api.jobs import JobRunner
from api.limits import HeavyPool, WorkLimits, request_threads
from api.live_hub import LiveHub
from api.live_subscriber import SubscriberHost
from api.middleware import AccessLog, BodyLimit, SecurityHeaders, SignIn
from api.reads import ReadRouting
from twin.db import current_revision, open_twin
from twin.replicas import ReadRouter
from twin.settings import TwinSettings, get_settings

__all__ = ["create_app", "VIEWER"]

log = logging.getLogger("pipetwin.api")
_signed_in = Depends(signed_in)

ROOT = Path(__file__).resolve().parent.parent
#: The web viewer's files; `/` serves its index.html to browsers, `/viewer/` the rest.
VIEWER = ROOT / "viewer"
#: CesiumJS as npm installed it (package.json); served at `/cesium/`.
CESIUM = ROOT / "node_modules" / "cesium" / "Build" / "Cesium"
#: uPlot (the live chart) as npm installed it; served at `/uplot/`.
UPLOT = ROOT / "node_modules" / "uplot" / "dist"
#: Noto Sans SC (woff2 subsets by unicode range, @fontsource) so Chinese renders offline; `/fonts/`.
FONTS = ROOT / "node_modules" / "@fontsource" / "noto-sans-sc"


def _routers() -> list:
    """The protected routers."""
    return [ogc.router, account.router, features.router, processes.router, jobs.router,
            tiles.router, uploads.router, edit.router, stats.router, proposals.router, rules.router,
            findings.router, exports.router,
            viewer_api.router, live.router, shutdowns.router, criticality.router]


def create_app(settings: TwinSettings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine = open_twin(settings, limit_statements=True)
        app.state.engine = engine
        # read replicas, if any; reads in autocommit: a read is one statement, one round trip
        app.state.reads = ReadRouter.from_settings(
            settings, engine.execution_options(isolation_level="AUTOCOMMIT"))
        app.state.settings = settings
        app.state.secret = signing_secret(settings)
        app.state.jobs = JobRunner(engine, per_user=settings.heavy_per_user)
        # Per-process state, made once here rather than lazily under locks in the routes.
        app.state.features = features.features_state(engine)
        app.state.work_limits = WorkLimits.from_settings(settings)
        request_threads(settings)  # TWIN_THREADS request threads; heavy work has its own:
        app.state.heavy = HeavyPool.from_settings(settings)
        app.state.viewer_cache = viewer_api.ViewerCache()
        app.state.tile_refresh = tiles.TileRefresh()
        app.state.tileset_owner = tiles.TilesetOwner()
        app.state.live_hub = LiveHub(engine, settings.db_schema)
        app.state.subscriber = SubscriberHost(settings, engine).start()  # MQTT readings, if a broker
        failed = app.state.jobs.recover()
        if failed:
            log.warning("%d jobs left unfinished by a previous server marked failed", failed)
        try:
            yield
        finally:
            app.state.subscriber.stop()
            app.state.live_hub.stop()
            app.state.jobs.shutdown()
            app.state.reads.dispose()
            engine.dispose()

    app = FastAPI(
        title="PipeTwin",
        version="0.1.0",
        description="The 3D underground pipeline digital twin. Sign in at POST /token "
        "(or send an API key as X-API-Key); every other route needs it.",
        openapi_url=None,  # served at /api, behind sign-in (see api.ogc)
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    errors.install(app)

    app.include_router(account.public)

    @app.get("/healthz", tags=["operations"], summary="Liveness and database reachability (no sign-in)")
    def healthz(request: Request) -> JSONResponse:
        try:
            with request.app.state.engine.connect() as conn:
                rev = current_revision(conn, settings)
        except sa.exc.SQLAlchemyError:
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok", "database": "ok", "revision": rev})

    @app.get("/", tags=["ogc"], summary="Landing page (JSON, signed in) or the 3D viewer (HTML)",
             response_model=None,
             responses={200: {"content": {"application/json": {"schema": {"type": "object"}},
                                          "text/html": {"schema": {"type": "string"}}}}})
    def root(
        request: Request,
        f: str | None = None,
        bearer: HTTPAuthorizationCredentials | None = Depends(BEARER),
        api_key: str | None = Depends(API_KEY),
    ) -> JSONResponse | FileResponse | HTMLResponse:
        accept = request.headers.get("accept", "")
        wants_json = f == "json" or (f is None and "application/json" in accept and "text/html" not in accept)
        if wants_json:
            current_user(request, bearer, api_key)  # the page is public, its JSON is not
            return JSONResponse(ogc.landing(request))
        index = VIEWER / "index.html"
        if index.is_file():
            return FileResponse(index, media_type="text/html")
        return HTMLResponse("<!doctype html><title>PipeTwin</title><p>PipeTwin API: "
                            "<a href='/?f=json'>landing page</a> (sign in first).")

    # The viewer's code and CesiumJS hold no data: served without sign-in, like the page.
    if VIEWER.is_dir():
        app.mount("/viewer", StaticFiles(directory=VIEWER), name="viewer")
    if CESIUM.is_dir():
        app.mount("/cesium", StaticFiles(directory=CESIUM), name="cesium")
    if UPLOT.is_dir():
        app.mount("/uplot", StaticFiles(directory=UPLOT), name="uplot")
    if FONTS.is_dir():
        app.mount("/fonts", StaticFiles(directory=FONTS), name="fonts")

    for router in _routers():
        app.include_router(router, dependencies=[_signed_in], responses=PROBLEMS)

    # Outermost last: the access log sees everything, headers go on every answer, CORS headers
    # on refusals too (a browser app then reads the 401 or 413), sign-in is checked (and the
    # body limit chosen) before any body is read.
    app.add_middleware(ReadRouting)  # reads retried off a failed replica; writes noted (api.reads)
    app.add_middleware(GZipMiddleware, minimum_size=1024, compresslevel=1)  # tiles: speed over 3 %
    app.add_middleware(BodyLimit, limit_for=_body_limits(app, settings))
    app.add_middleware(SignIn, public=is_public, authenticate=_authenticate)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "If-None-Match"],
            expose_headers=["ETag", "X-Request-Id", "Location"],
            max_age=3600,
        )
    app.add_middleware(SecurityHeaders, headers=SECURITY_HEADERS, allowed_hosts=allowed_hosts(settings),
                       trusted_proxies=set(settings.trusted_proxies))
    app.add_middleware(AccessLog)
    return app


#: Sent with every answer. Scripts come only from the server itself (the viewer and CesiumJS, whose
#: workers load from /cesium/), never inline or from elsewhere. CesiumJS 1.145 needs 'unsafe-eval':
#: its embedded Emscripten modules build their bindings with `new Function` and compile
#: WebAssembly; without it Cesium does not load. It makes images and workers from blob: URLs and
#: draws inline styles on its widget.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-eval' blob:; worker-src 'self' blob:; "
    "img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; connect-src 'self'; "
    "font-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
_PUBLIC_PREFIXES = ("/viewer/", "/cesium/", "/uplot/", "/fonts/")


def is_public(method: str, path: str) -> bool:
    """What needs no sign-in: health, sign-in itself, the viewer page and static files (no data)."""
    if method in ("GET", "HEAD"):
        return path in ("/", "/healthz", "/viewer", "/cesium") or path.startswith(_PUBLIC_PREFIXES)
    return method == "POST" and path == "/token"


def allowed_hosts(settings: TwinSettings) -> set[str]:
    """Host names the server answers to: TWIN_ALLOWED_HOSTS, or its own and the loopback names."""
    if settings.allowed_hosts:
        return set(settings.allowed_hosts)
    return {settings.host, "localhost", "127.0.0.1", "::1"}


def _authenticate(scope, credential: str | None) -> object:
    state = scope["app"].state
    return credential_user(state.engine, state.secret, credential)


def _api_routes(app: FastAPI) -> list[APIRoute]:
    """Every APIRoute of the app, included routers opened up."""
    out, stack = [], list(app.routes)
    while stack:
        r = stack.pop()
        if isinstance(r, APIRoute):
            out.append(r)
        else:
            stack.extend(getattr(getattr(r, "original_router", r), "routes", []))
    return out


def _body_limits(app: FastAPI, settings: TwinSettings):
    """The body limit of a request: uploads (multipart routes) get TWIN_MAX_UPLOAD_MB, others TWIN_MAX_JSON_MB."""
    upload, small = int(settings.max_upload_mb * 1e6), int(settings.max_json_mb * 1e6)
    cache: list = []

    def uploads() -> list:
        if not cache:  # the routes are complete once the app serves
            cache.append([r.path_regex for r in _api_routes(app) if any(
                isinstance(p.field_info, params.File) for p in r.dependant.body_params)])
        return cache[0]

    def limit_for(scope) -> int:
        if scope["method"] not in ("POST", "PUT", "PATCH"):
            return small
        return upload if any(rx.match(scope["path"]) for rx in uploads()) else small

    return limit_for
