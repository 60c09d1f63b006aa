"""Database access: engines on the twin's schema, migrations, the private cluster.

Two roles reach the twin (see :mod:`twin.pgcluster`): the *application role* (the server's
and the commands' connections) owns its tables but not the schema, the audit log or the
schema revision; the *admin role* creates the schema, installs PostGIS, migrates, backs up and
restores. With ``TWIN_DATABASE_URL`` alone both are the role it names.
"""

from __future__ import annotations

import getpass
import logging
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Engine

from twin.crs import twin_crs
from twin.errors import ConfigError, DatabaseError
from twin.pgcluster import Cluster, database_url, local_cluster
from twin.roles import privileges_sql
from twin.settings import TwinSettings

__all__ = [
    "make_engine", "upgrade", "open_twin", "current_revision", "FEATURE_TABLES", "twin_srid",
    "CHANGE_MARK_SQL", "change_mark", "twin_id", "app_role", "unlimited_statements", "engine_settings",
]

log = logging.getLogger(__name__)

#: Versioned feature tables; each has a ``<name>_history`` twin and a ``current_<name>`` view.
FEATURE_TABLES = ("node", "segment", "valve", "source", "customer")

MIGRATIONS = Path(__file__).with_name("migrations")

#: The network's change counter (migration 0007): statement triggers move it inside every
#: transaction that writes a feature table, so it moves exactly when a change becomes visible.
CHANGE_MARK_SQL = "(SELECT value FROM twin_meta WHERE key = 'changes')"


def twin_srid(conn: sa.Connection | sa.Engine) -> int:
    """The twin's SRID, from ``twin_meta`` (``Find_SRID()`` scans the catalogue: 50-100 ms a call)."""
    if isinstance(conn, sa.Engine):
        with conn.connect() as c:
            return twin_srid(c)
    return int(conn.execute(sa.text("SELECT value FROM twin_meta WHERE key = 'srid'")).scalar())


def change_mark(conn: sa.Connection | sa.Engine) -> str:
    """A text that changes whenever a feature table's contents change (see :data:`CHANGE_MARK_SQL`)."""
    if isinstance(conn, sa.Engine):
        with conn.connect() as c:
            return change_mark(c)
    return str(conn.execute(sa.text(f"SELECT {CHANGE_MARK_SQL}")).scalar())


def twin_id(conn: sa.Connection | sa.Engine) -> str:
    """The twin's identity (a random id made with it, ``twin_meta`` key ``twin``): derived files,
    such as a tileset, carry it so one twin's are never taken for another's."""
    if isinstance(conn, sa.Engine):
        with conn.connect() as c:
            return twin_id(c)
    return str(conn.execute(sa.text("SELECT value FROM twin_meta WHERE key = 'twin'")).scalar())


def _url(settings: TwinSettings, *, admin: bool = False) -> sa.URL:
    url = sa.engine.make_url(database_url(settings, admin=admin))
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


def app_role(settings: TwinSettings) -> str:
    """The role the server and the commands connect as (see :mod:`twin.pgcluster`)."""
    return _url(settings).username or getpass.getuser()


def make_engine(settings: TwinSettings, *, admin: bool = False, statement_timeout_s: float | None = None,
                parallel_query: bool = True, **kwargs: object) -> Engine:
    """An engine whose connections see the twin's schema first, then ``public`` (PostGIS).

    It connects as the application role, or as the admin role with ``admin=True``.
    ``statement_timeout_s`` stops any statement that runs longer, except inside
    :func:`unlimited_statements`.
    """
    schema = settings.db_schema
    if not schema.isidentifier():
        raise ConfigError(f"TWIN_DB_SCHEMA {schema!r} is not a plain identifier",
                          zh=f"TWIN_DB_SCHEMA {schema!r} 不是普通标识符")
    # JIT compiling costs up to seconds on the twin's short, index-driven queries.
    options = f"-c search_path={schema},public -c jit=off"
    if not parallel_query:
        options += " -c max_parallel_workers_per_gather=0"
    timeout_ms = round(statement_timeout_s * 1000) if statement_timeout_s else 0
    if timeout_ms:
        options += f" -c statement_timeout={timeout_ms}"
    engine = sa.create_engine(
        _url(settings, admin=admin),
        connect_args={"options": options},
        pool_pre_ping=True,
        **kwargs,  # type: ignore[arg-type]
    )
    if not settings.database_url:
        _password_from_file(engine, local_cluster(settings))
    if timeout_ms:
        _limit_statements(engine, timeout_ms)
    _OPENED_WITH[engine] = settings
    return engine


#: The settings each engine was made with (see :func:`engine_settings`).
_OPENED_WITH: weakref.WeakKeyDictionary[Engine, TwinSettings] = weakref.WeakKeyDictionary()


def engine_settings(engine: Engine) -> TwinSettings | None:
    """The settings :func:`make_engine` made ``engine`` with (None for an engine made otherwise):
    where code that is handed only an engine keeps what it derives from the twin (its data dir)."""
    return _OPENED_WITH.get(engine)


def _password_from_file(engine: Engine, cluster: Cluster) -> None:
    """Each new connection to the private cluster reads its role's password file anew, so an
    engine made before ``twin db start`` closed the cluster goes on connecting after it."""
    user = engine.url.username

    @event.listens_for(engine, "do_connect")
    def with_password(dialect, record, cargs, cparams) -> None:
        password = cluster.password(user)
        if password:
            cparams["password"] = password


#: Connections a server process keeps beyond its request and heavy threads (the live hub's
#: listener, jobs, sign-in look-ups), and may open more at a peak.
SERVER_POOL_SPARE = 4
SERVER_POOL_OVERFLOW = 8
#: Connections an engine of a server process keeps open when not sized from its settings.
SERVER_POOL_SIZE = 16

# ----------------------------------------------------------------------------- statement timeout
_unlimited: ContextVar[bool] = ContextVar("twin_unlimited_statements", default=False)


@contextmanager
def unlimited_statements() -> Iterator[None]:
    """Statements run inside (in this thread) are not stopped by the engine's statement timeout.

    For long work the server runs on its own engine: jobs (imports, scans, tile builds).
    """
    token = _unlimited.set(True)
    try:
        yield
    finally:
        _unlimited.reset(token)


def _limit_statements(engine: Engine, timeout_ms: int) -> None:
    """Each connection's statement_timeout follows :func:`unlimited_statements` as it is checked
    out (one ``SET`` only when it changes), and a statement stopped by it is a DatabaseError."""

    @event.listens_for(engine, "connect")
    def connected(dbapi_conn, record) -> None:
        record.info["statement_timeout_ms"] = timeout_ms  # set by the connection's options

    @event.listens_for(engine, "checkout")
    def checked_out(dbapi_conn, record, proxy) -> None:
        wanted = 0 if _unlimited.get() else timeout_ms
        if record.info.get("statement_timeout_ms") != wanted:
            with dbapi_conn.cursor() as cur:
                cur.execute(f"SET statement_timeout = {int(wanted)}")
            dbapi_conn.commit()
            record.info["statement_timeout_ms"] = wanted

    @event.listens_for(engine, "handle_error")
    def timed_out(context: sa.engine.ExceptionContext) -> None:
        orig = context.original_exception
        if getattr(orig, "sqlstate", None) == "57014" and "statement timeout" in str(orig):
            raise DatabaseError(
                f"the database work of this request took longer than {timeout_ms / 1000:g} s "
                "(TWIN_STATEMENT_TIMEOUT_S) and was stopped; ask for less at once",
                code="STATEMENT_TIMEOUT",
                zh=f"本次请求的数据库操作超过 {timeout_ms / 1000:g} 秒（TWIN_STATEMENT_TIMEOUT_S），已被中止；请减少一次请求的数据量") from orig


def _alembic_config(settings: TwinSettings, connection: sa.Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    cfg.attributes["schema"] = settings.db_schema
    cfg.attributes["srid"] = twin_crs(settings.crs).srid
    cfg.attributes["crs"] = settings.crs
    cfg.attributes["vertical_datum"] = settings.vertical_datum
    return cfg


def upgrade(settings: TwinSettings, engine: Engine | None = None, revision: str = "head") -> str | None:
    """Apply the migrations to the twin's schema as the admin role, then give the application
    role its privileges (:func:`twin.roles.privileges_sql`); returns the revision reached.

    ``engine`` is used when it connects as the admin role; otherwise one is made for the purpose.
    """
    admin_url = _url(settings, admin=True)
    own = engine is None or engine.url.username != admin_url.username
    admin = make_engine(settings, admin=True) if own else engine
    try:
        with admin.begin() as conn:
            # Server workers start together: one migrates, the others find it done.
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:k))"),
                         {"k": f"twin.upgrade.{settings.db_schema}"})
            conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{settings.db_schema}"'))
            conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS postgis SCHEMA public"))
            command.upgrade(_alembic_config(settings, conn), revision)
            conn.execute(sa.text(privileges_sql(settings.db_schema, app_role(settings))))
        with admin.connect() as conn:
            _check_crs(settings, conn)
            return current_revision(conn, settings)
    except sa.exc.OperationalError as exc:
        raise DatabaseError(f"cannot reach the database: {exc.orig}",
                            zh=f"无法连接数据库：{exc.orig}") from exc
    finally:
        if own:
            admin.dispose()


def current_revision(conn: sa.Connection, settings: TwinSettings) -> str | None:
    """The schema's alembic revision, or None before the first migration."""
    exists = conn.execute(
        sa.text("SELECT to_regclass(:t)"), {"t": f"{settings.db_schema}.alembic_version"}
    ).scalar()
    if not exists:
        return None
    return conn.execute(sa.text(f'SELECT version_num FROM "{settings.db_schema}".alembic_version')).scalar()


def _check_crs(settings: TwinSettings, conn: sa.Connection) -> None:
    stored = conn.execute(sa.text("SELECT value FROM twin_meta WHERE key = 'srid'")).scalar()
    wanted = twin_crs(settings.crs).srid
    if stored is not None and int(stored) != wanted:
        raise ConfigError(
            f"this twin is stored in EPSG:{stored} but TWIN_CRS asks for EPSG:{wanted}; "
            "one twin has one CRS",
            zh=f"此孪生库以 EPSG:{stored} 存储，但 TWIN_CRS 要求 EPSG:{wanted}；一个孪生库只有一个坐标参照系"
        )


def open_twin(settings: TwinSettings, *, limit_statements: bool = False) -> Engine:
    """An engine on an up-to-date twin, as the application role: starts the private cluster if
    it is the one in use and migrates as the admin role.

    ``limit_statements=True`` (the server's engine): statements stop after
    ``TWIN_STATEMENT_TIMEOUT_S`` unless run inside :func:`unlimited_statements`.
    """
    if not settings.database_url:
        local_cluster(settings).start()
    upgrade(settings)
    if not limit_statements:
        return make_engine(settings)
    # The server keeps its connections: a new one costs a SCRAM exchange and a backend start,
    # which under load (25 requests at once per worker) would be paid again and again.
    # As many as the threads that use them (TWIN_THREADS + TWIN_HEAVY_THREADS): a pool smaller
    # than the concurrency opens and closes overflow connections on every burst.
    pool = settings.threads + settings.heavy_threads + SERVER_POOL_SPARE
    return make_engine(settings, statement_timeout_s=settings.statement_timeout_s,
                       parallel_query=False, pool_size=pool, max_overflow=SERVER_POOL_OVERFLOW)
