"""``twin serve`` and ``twin user``: run the service, manage who may use it.

Every ``twin user`` change is audited in its own transaction, as the operator (``TWIN_USER``,
else the login name) with the role ``cli`` (:func:`twin.audit.record_command`).
"""

from __future__ import annotations

import getpass
import os

import typer
from rich.console import Console
from rich.table import Table

from twin.audit import record_command
from twin.errors import InputError
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
    from api.workers import serve_balanced
    from twin.db import open_twin

    # numpy's and scipy's thread pools fight over two cores under concurrent requests.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    settings = get_settings()
    host = host or settings.host
    port = port or settings.port
    workers = workers or settings.workers
    configure(log_level.upper())
    open_twin(settings).dispose()  # migrate once, before workers start
    console.print(f"PipeTwin serving on http://{host}:{port}/  (OGC API at /?f=json, OpenAPI at /api)")
    options = dict(host=host, port=port, workers=workers, log_config=None, log_level=log_level,
                   access_log=False,
                   # X-Forwarded-* are believed from TWIN_TRUSTED_PROXIES only (none by default)
                   proxy_headers=bool(settings.trusted_proxies),
                   forwarded_allow_ips=",".join(settings.trusted_proxies) or "",
                   # uvicorn kills a worker whose health ping is not answered within 5 s by
                   # default: a worker building a million-pipe model on busy cores, with every
                   # request it holds
                   timeout_worker_healthcheck=60)
    if workers > 1:  # each worker on a socket of its own, so that they share the connections
        serve_balanced(uvicorn.Config("api.main:app", **options))
    else:
        uvicorn.run("api.main:app", **options)


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
            raise InputError("the two passwords differ", zh="两次输入的密码不一致")
    with open_twin(get_settings()).begin() as conn:
        add_user(conn, name, role, password, by=_operator())
        record_command(conn, _operator(), "user add", "user-add", params={"name": name, "role": role},
                       affected=[name])
    console.print(f"user {name} added as {role}")


@user_app.command("key")
def user_key(
    name: str = typer.Argument(..., help="User name."),
    label: str = typer.Option(None, "--label", help="What the key is for."),
) -> None:
    """Make an API key for a machine client; it is printed once."""
    from api.auth import create_api_key
    from twin.db import open_twin

    with open_twin(get_settings()).begin() as conn:
        key = create_api_key(conn, name, label)
        record_command(conn, _operator(), "user key", "api-key-add", params={"label": label}, affected=[name])
    typer.echo(key)


@user_app.command("keys")
def user_keys(name: str = typer.Argument(..., help="User name.")) -> None:
    """List a user's API keys: id, label, made, revoked (never the keys themselves)."""
    from api.auth import list_api_keys
    from twin.db import open_twin

    with open_twin(get_settings()).connect() as conn:
        keys = list_api_keys(conn, name)
    table = Table(title=f"API keys of {name}")
    for col in ("id", "label", "created", "revoked"):
        table.add_column(col, justify="right" if col == "id" else "left")
    for k in keys:
        table.add_row(str(k["id"]), k["label"] or "", f"{k['created_at']:%Y-%m-%d %H:%M}",
                      f"{k['revoked_at']:%Y-%m-%d %H:%M}" if k["revoked_at"] else "")
    Console().print(table)


@user_app.command("revoke-key")
def user_revoke_key(
    name: str = typer.Argument(..., help="User name."),
    key_id: int = typer.Argument(..., help="The key's id (twin user keys NAME).", min=1),
) -> None:
    """Revoke one of a user's API keys; it stops working within seconds."""
    from api.auth import revoke_api_key
    from twin.db import open_twin

    with open_twin(get_settings()).begin() as conn:
        revoke_api_key(conn, name, key_id)
        record_command(conn, _operator(), "user revoke-key", "api-key-revoke", params={"key_id": key_id},
                       affected=[name])
    console.print(f"API key {key_id} of {name} revoked")


@user_app.command("role")
def user_role(
    name: str = typer.Argument(..., help="User name."),
    role: str = typer.Option(None, "--role", help="New role."),
    disable: bool = typer.Option(None, "--disable/--enable", help="Disable or enable the user."),
) -> None:
    """Change a user's role, or disable or enable them; a new role or disabling ends their tokens."""
    from api.auth import update_user
    from twin.db import open_twin

    with open_twin(get_settings()).begin() as conn:
        u = update_user(conn, name, role=role, disabled=disable)
        changes = {k: v for k, v in (("role", role), ("disabled", disable)) if v is not None}
        record_command(conn, _operator(), "user role", "user-change", params=changes, affected=[name])
    console.print(f"user {u.name}: {u.role}" + (" (disabled)" if disable else ""))


@user_app.command("password")
def user_password(name: str = typer.Argument(..., help="User name.")) -> None:
    """Set a user's password (prompted); the access tokens issued before stop working."""
    from api.auth import set_password
    from twin.db import open_twin

    password = getpass.getpass(f"new password for {name}: ")
    if password != getpass.getpass("again: "):
        raise InputError("the two passwords differ", zh="两次输入的密码不一致")
    with open_twin(get_settings()).begin() as conn:
        set_password(conn, name, password)
        record_command(conn, _operator(), "user password", "user-password", affected=[name])
    console.print(f"password of {name} set")


@user_app.command("list")
def user_list() -> None:
    """List the users."""
    from api.auth import list_users
    from twin.db import open_twin

    with open_twin(get_settings()).connect() as conn:
        users = list_users(conn)
    table = Table(title="PipeTwin users")
    for col in ("name", "role", "password", "API keys", "disabled", "created"):
        table.add_column(col)
    for u in users:
        table.add_row(u["name"], u["role"], "yes" if u["has_password"] else "no", str(u["api_keys"]),
                      "yes" if u["disabled"] else "", f"{u['created_at']:%Y-%m-%d} by {u['created_by']}")
    Console().print(table)


def _operator() -> str:
    """Who runs the command: TWIN_USER, else the login name."""
    return get_settings().user_name
