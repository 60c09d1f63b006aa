"""Database access: engines on the twin's schema, migrations, the private cluster."""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

from twin.crs import twin_crs
from twin.errors import ConfigError, DatabaseError
from twin.pgcluster import database_url, local_cluster
from twin.settings import TwinSettings

__all__ = [
    "make_engine", "upgrade", "open_twin", "current_revision", "FEATURE_TABLES", "twin_srid",
    "CHANGE_MARK_SQL", "change_mark",
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


def make_engine(settings: TwinSettings, **kwargs: object) -> Engine:
    """An engine whose connections see the twin's schema first, then ``public`` (PostGIS)."""
    url = sa.engine.make_url(database_url(settings))
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    schema = settings.db_schema
    if not schema.isidentifier():
        raise ConfigError(f"TWIN_DB_SCHEMA {schema!r} is not a plain identifier")
    return sa.create_engine(
        url,
        # JIT compiling costs up to seconds on the twin's short, index-driven queries.
        connect_args={"options": f"-c search_path={schema},public -c jit=off"},
        pool_pre_ping=True,
        **kwargs,  # type: ignore[arg-type]
    )


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
    """Apply the migrations to the twin's schema; returns the revision reached."""
    engine = engine or make_engine(settings)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{settings.db_schema}"'))
            conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS postgis SCHEMA public"))
            command.upgrade(_alembic_config(settings, conn), revision)
    except sa.exc.OperationalError as exc:
        raise DatabaseError(f"cannot reach the database: {exc.orig}") from exc
    with engine.connect() as conn:
        _check_crs(settings, conn)
        return current_revision(conn, settings)


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
            "one twin has one CRS"
        )


def open_twin(settings: TwinSettings) -> Engine:
    """An engine on an up-to-date twin: starts the private cluster if it is the one in use."""
    if not settings.database_url:
        local_cluster(settings).start()
    engine = make_engine(settings)
    upgrade(settings, engine)
    return engine
