"""``twin serve`` and ``twin user``: run the service, manage who may use it."""

from __future__ import annotations

import getpass
import os

import typer
from rich.console import Console
from rich.table import Table

from twin.cli import fail
from twin.errors import InputError, TwinError
from twin.settings import get_settings

__all__ = ["serve", "user_app"]

console = Console(stderr=True)
user_app = typer.Typer(help="Manage the users of the API server.", no_args_is_help=True)


def serve(
    host: str = typer.Option(None, "--host", help="Address to listen on (TWIN_HOST, default 127.0.0.1)."),
    port: int = typer.Option(None, "--port", help="Port to listen on (TWIN_PORT, default 8000)."),
    workers: int = typer.Option(None, "--workers", help="Worker processes (TWIN_WORKERS, default 1)."),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
) -> None:
    """Start the API server (OGC API Features and Processes, 3D Tiles, the viewer)."""
    import uvicorn

    from api.logs import configure

    # numpy's and scipy's thread pools fight over two cores under concurrent requests.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    settings = get_settings()
    host = host or settings.host
    port = port or settings.port
    workers = workers or settings.workers
    configure(log_level.upper())
    try:
        from twin.db import open_twin

        open_twin(settings).dispose()  # migrate once, before workers start
    except TwinError as exc:
        fail(exc)
    console.print(f"PipeTwin serving on http://{host}:{port}/  (OGC API at /?f=json, OpenAPI at /api)")
    uvicorn.run("api.main:app", host=host, port=port, workers=workers, log_config=None,
                log_level=log_level, access_log=False, proxy_headers=True,
                forwarded_allow_ips="127.0.0.1")


@user_app.command("add")
def user_add(
    name: str = typer.Argument(..., help="User name."),
    role: str = typer.Option(..., "--role", help="viewer, editor, approver or admin."),
    password: str = typer.Option(None, "--password", help="Password; prompted for when not given."),
    no_password: bool = typer.Option(False, "--no-password", help="API keys only, no password sign-in."),
    exist_ok: bool = typer.Option(False, "--exist-ok", help="Succeed without change if the user exists."),
) -> None:
    """Add a user with a role."""
    import sqlalchemy as sa

    from api.auth import add_user
    from twin.db import open_twin

    if exist_ok:
        with open_twin(get_settings()).connect() as conn:
            if conn.execute(sa.text("SELECT 1 FROM app_user WHERE name = :n"), {"n": name}).first():
                console.print(f"user {name} exists")
                return
    if password is None and not no_password:
        password = getpass.getpass(f"password for {name}: ")
        if password != getpass.getpass("again: "):
            fail(InputError("the two passwords differ"))
    try:
        with open_twin(get_settings()).begin() as conn:
            add_user(conn, name, role, password, by=_operator())
    except TwinError as exc:
        fail(exc)
    console.print(f"user {name} added as {role}")


@user_app.command("key")
def user_key(
    name: str = typer.Argument(..., help="User name."),
    label: str = typer.Option(None, "--label", help="What the key is for."),
) -> None:
    """Make an API key for a machine client; it is printed once."""
    from api.auth import create_api_key
    from twin.db import open_twin

    try:
        with open_twin(get_settings()).begin() as conn:
            key = create_api_key(conn, name, label)
    except TwinError as exc:
        fail(exc)
    typer.echo(key)


@user_app.command("role")
def user_role(
    name: str = typer.Argument(..., help="User name."),
    role: str = typer.Option(None, "--role", help="New role."),
    disable: bool = typer.Option(None, "--disable/--enable", help="Disable or enable the user."),
) -> None:
    """Change a user's role, or disable or enable them."""
    from api.auth import update_user
    from twin.db import open_twin

    try:
        with open_twin(get_settings()).begin() as conn:
            u = update_user(conn, name, role=role, disabled=disable)
    except TwinError as exc:
        fail(exc)
    console.print(f"user {u.name}: {u.role}" + (" (disabled)" if disable else ""))


@user_app.command("password")
def user_password(name: str = typer.Argument(..., help="User name.")) -> None:
    """Set a user's password (prompted)."""
    from api.auth import set_password
    from twin.db import open_twin

    password = getpass.getpass(f"new password for {name}: ")
    if password != getpass.getpass("again: "):
        fail(InputError("the two passwords differ"))
    try:
        with open_twin(get_settings()).begin() as conn:
            set_password(conn, name, password)
    except TwinError as exc:
        fail(exc)
    console.print(f"password of {name} set")


@user_app.command("list")
def user_list() -> None:
    """List the users."""
    from api.auth import list_users
    from twin.db import open_twin

    try:
        with open_twin(get_settings()).connect() as conn:
            users = list_users(conn)
    except TwinError as exc:
        fail(exc)
    table = Table(title="PipeTwin users")
    for col in ("name", "role", "password", "API keys", "disabled", "created"):
        table.add_column(col)
    for u in users:
        table.add_row(u["name"], u["role"], "yes" if u["has_password"] else "no", str(u["api_keys"]),
                      "yes" if u["disabled"] else "", f"{u['created_at']:%Y-%m-%d} by {u['created_by']}")
    Console().print(table)


def _operator() -> str:
    return get_settings().user or getpass.getuser()
