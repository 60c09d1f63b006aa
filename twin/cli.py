"""The ``twin`` command.

Its root knows only the twin's own commands (``db``, ``summary``); ``ingest/``,
``analysis/``, ``tiles/`` and ``api/`` add theirs through the ``twin.commands``
entry-point group, so the twin never imports the layers above it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from importlib.metadata import entry_points
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from twin.errors import TwinError
from twin.settings import get_settings

__all__ = ["app", "main"]

app = typer.Typer(help="PipeTwin: the 3D underground pipeline digital twin.", no_args_is_help=True)
db_app = typer.Typer(help="Manage the twin's database.", no_args_is_help=True)
app.add_typer(db_app, name="db")
console = Console(stderr=True)


@db_app.command("start")
def db_start() -> None:
    """Start the private PostGIS cluster under the data folder (idempotent).

    A cluster that still trusts local accounts is closed: every connection then needs a password
    (kept in 0600 files under the data folder's secrets/).
    """
    from twin.pgcluster import local_cluster

    settings = get_settings()
    if settings.database_url:
        console.print("TWIN_DATABASE_URL is set: the private cluster is not used")
        return
    cluster = local_cluster(settings)
    started = cluster.start()
    console.print(("started" if started else "already running") + f" on port {cluster.port} ({cluster.data})")
    if cluster.close():
        console.print(f"closed to other local accounts: connections need a password ({cluster.secrets})")


@db_app.command("stop")
def db_stop() -> None:
    """Stop the private cluster (idempotent)."""
    from twin.pgcluster import local_cluster

    cluster = local_cluster(get_settings())
    stopped = cluster.stop()
    console.print("stopped" if stopped else "not running")


@db_app.command("status")
def db_status() -> None:
    """Say whether the database in use is reachable and at which schema revision."""
    import sqlalchemy as sa

    from twin.db import current_revision, make_engine
    from twin.pgcluster import local_cluster

    settings = get_settings()
    try:
        if not settings.database_url:
            cluster = local_cluster(settings)
            state = "running" if cluster.running() else ("stopped" if cluster.initialised() else "not created")
            console.print(f"private cluster: {state} (port {cluster.port}, {cluster.data})")
            if state != "running":
                raise typer.Exit(code=1)
        with make_engine(settings).connect() as conn:
            rev = current_revision(conn, settings)
            pg = conn.execute(sa.text("SELECT postgis_lib_version()")).scalar()
        console.print(f"database reachable, PostGIS {pg}, schema {settings.db_schema!r} at revision {rev or 'none'}")
    except sa.exc.OperationalError as exc:
        console.print(f"[red]database unreachable[/]: {exc.orig}")
        raise typer.Exit(code=1) from None


@db_app.command("url")
def db_url() -> None:
    """Print the connection URL in use (without its password)."""
    import sqlalchemy as sa

    from twin.pgcluster import database_url, local_cluster

    settings = get_settings()
    url = sa.engine.make_url(database_url(settings))
    typer.echo(url._replace(password=None).render_as_string(hide_password=False))
    if url.password and not settings.database_url:
        console.print(f"password: {local_cluster(settings).app_password_file}")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the schema migrations to the database in use."""
    from twin.db import current_revision, open_twin

    settings = get_settings()
    with open_twin(settings).connect() as conn:
        console.print(f"schema {settings.db_schema!r} at revision {current_revision(conn, settings)}")


replica_app = typer.Typer(help="A read replica (hot standby) of the private cluster on loopback.",
                          no_args_is_help=True)
db_app.add_typer(replica_app, name="replica")


def _standby():
    from twin.errors import ConfigError
    from twin.pgcluster import local_standby

    settings = get_settings()
    if settings.database_url:
        raise ConfigError("TWIN_DATABASE_URL is set: the local replica is of the private cluster only; "
                          "list a deployment's standbys in TWIN_READ_DATABASE_URLS",
                          zh="已设置 TWIN_DATABASE_URL：本地只读副本只用于私有集群；部署环境的备库请列在 TWIN_READ_DATABASE_URLS")
    return local_standby(settings)


@replica_app.command("start")
def replica_start() -> None:
    """Make (pg_basebackup with a replication slot, first time) and start the standby (idempotent).

    `twin serve` then sends reads there while TWIN_READ_DATABASE_URLS is empty.
    """
    standby = _standby()
    with console.status("making the read replica (pg_basebackup)" if not standby.initialised()
                        else "starting the read replica"):
        started = standby.start()
    console.print(("started" if started else "already running") + f" on port {standby.port} "
                  f"({standby.data}, slot {standby.slot})")


@replica_app.command("stop")
def replica_stop(drop: bool = typer.Option(False, "--drop", help="Also remove the standby's "
                                           "folder and its replication slot on the primary.")) -> None:
    """Stop the standby (idempotent); --drop removes it."""
    standby = _standby()
    stopped = standby.stop(drop=drop)
    console.print(("stopped" if stopped else "not running") + (" and removed" if drop else ""))


@replica_app.command("status")
def replica_status(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Whether the standby runs and streams, and its lag behind the primary (bytes, seconds)."""
    s = _standby().status()
    if as_json:
        typer.echo(json.dumps(s))
    elif not s["made"]:
        console.print("read replica: not made (twin db replica start)")
    else:
        lag = (f"lag {s['lag_bytes']:,} bytes, {s['lag_s']:.3f} s" if s["streaming"] else "not streaming")
        console.print(f"read replica: {'running' if s['running'] else 'stopped'} (port {s['port']}, "
                      f"slot {s['slot']}, {s['data']}); {lag}")
    if not s["running"]:
        raise typer.Exit(code=1)


@replica_app.command("url")
def replica_url() -> None:
    """Print the standby's connection URL (without its password)."""
    import sqlalchemy as sa

    standby = _standby()
    url = sa.engine.make_url(standby.url)
    typer.echo(url._replace(password=None).render_as_string(hide_password=False))
    console.print(f"password: {standby.primary.app_password_file}")


@app.command("summary")
def summary(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Summarise the current network: counts and lengths by utility."""
    from twin.db import open_twin
    from twin.jsonable import plain
    from twin.summary import summarise

    s = summarise(open_twin(get_settings()))
    if as_json:
        typer.echo(json.dumps(plain(dataclasses.asdict(s)), ensure_ascii=False, indent=2))
        return
    table = Table(title="PipeTwin network")
    for col in ("utility", "name", "segments", "length km"):
        table.add_column(col, justify="right" if col in ("segments", "length km") else "left")
    for row in s.by_utility:
        table.add_row(str(row["utility"]), str(row["name"]), f"{row['segments']:,}", f"{row['length_km']:.3f}")
    table.add_row("all", "", f"{s.segments:,}", f"{s.length_km:.3f}", style="bold")
    out = Console()
    out.print(table)
    out.print(
        f"nodes {s.nodes:,}  valves {s.valves:,}  sources {s.sources:,}  "
        f"customers {s.customers:,} ({s.critical_customers:,} critical)  batches {s.batches}"
    )


def _passphrase(confirm: bool) -> str:
    """TWIN_BACKUP_PASSPHRASE, else asked for (twice when making a backup)."""
    given = get_settings().backup_passphrase
    if given is not None:
        return given.get_secret_value()
    return typer.prompt("Backup passphrase", hide_input=True, confirmation_prompt=confirm, err=True)


@app.command("backup")
def backup_command(
    file: Path = typer.Argument(..., help="Archive to write (pg_dump custom format; 0600)."),
    encrypt: bool = typer.Option(False, "--encrypt", help="Encrypt it with a passphrase "
                                 "(TWIN_BACKUP_PASSPHRASE, else asked for)."),
) -> None:
    """Back up the twin's schema (network, history, users, audit log) to FILE, readable by this
    account only."""
    from twin.backup import backup

    passphrase = _passphrase(confirm=True) if encrypt else None
    with console.status("backing up") as status:
        r = backup(get_settings(), file, progress=status.update, passphrase=passphrase)
    console.print(f"schema {r['schema']} (revision {r['revision']}, {r['segments']:,} segments) backed up "
                  f"to {r['path']}{' (encrypted)' if r['encrypted'] else ''}: {r['bytes'] / 1e6:.2f} MB "
                  f"in {r['seconds']:.1f} s")


@app.command("restore")
def restore_command(
    file: Path = typer.Argument(..., help="Archive written by `twin backup` (encrypted or not)."),
    yes: bool = typer.Option(False, "--yes", help="Replace the twin without asking."),
) -> None:
    """Replace the twin with a backup, atomically: a failed restore leaves it as it was.

    The restore is audited, and the live audit log's entries the backup lacks are kept.
    """
    from twin.backup import inspect_backup, is_sealed, restore

    settings = get_settings()
    passphrase = _passphrase(confirm=False) if file.is_file() and is_sealed(file) else None
    info = inspect_backup(settings, file, passphrase=passphrase)
    if not yes and not typer.confirm(
        f"Replace the twin in schema {settings.db_schema!r} with the backup of {info.created} "
        f"(schema {info.schema}, revision {info.revision})?", err=True):
        raise typer.Exit(code=1)
    with console.status("restoring") as status:
        r = restore(settings, file, progress=status.update, passphrase=passphrase)
    console.print(f"schema {r['schema']} restored from {r['path']} ({r['segments']:,} segments, revision "
                  f"{r['revision']}) in {r['seconds']:.1f} s; rebuild the 3D tiles: twin tiles build")


def _plugins(argv: list[str]) -> list:
    """The entry points a command line needs: only the sub-command it names, none for the twin's
    own commands, all of them for the top-level help or an unknown name (click lists them).

    Loading one plugin loads its package (analysis and exchange bring wntr, scipy and more:
    seconds), so ``twin db status`` or ``twin tiles build`` must not load the others.
    """
    eps = list(entry_points(group="twin.commands"))
    name = next((a for a in argv[1:] if not a.startswith("-")), None)
    if name in {ep.name for ep in eps}:
        return [ep for ep in eps if ep.name == name]
    if name is not None and name in _own_commands():
        return []
    return eps


def _own_commands() -> set[str]:
    """The names of the twin's own sub-commands and groups."""
    return {c.name or c.callback.__name__ for c in app.registered_commands} | {
        g.name for g in app.registered_groups if g.name}


def _load_plugins(argv: list[str] | None = None) -> None:
    for ep in _plugins(sys.argv if argv is None else argv):
        obj = ep.load()
        if isinstance(obj, typer.Typer):
            app.add_typer(obj, name=ep.name)
        else:
            app.command(ep.name)(obj)


def main() -> None:
    """Entry point of the ``twin`` command."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _load_plugins()
    try:
        app()
    except TwinError as exc:  # the one handler: commands let their errors come here
        # Not wrapped at the terminal's width: a message names files and ids people copy.
        # Chinese first for the people who use it, then English (for logs, searches, support).
        said = f"{exc.message_zh} — {exc.message}" if exc.message_zh else exc.message
        console.print(f"[bold red]error[/] \\[{exc.code}] {escape(said)}", soft_wrap=True,
                      highlight=False)
        sys.exit(2)
