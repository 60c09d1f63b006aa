"""Rule tables (admin): the clearance, cover and service-life tables the analyses judge by.

``GET /rules`` lists them and where each comes from (``database``: stored by an admin;
``configured``: ``TWIN_*`` names a file; ``shipped``: the GB 50289 defaults in
``analysis/data``). ``GET /rules/{name}`` gives the CSV (``text/csv``, or the parsed rows as
JSON with ``?f=json``). ``PUT /rules/{name}`` (admin) stores a CSV after reading it with the
same loader the analyses use, so a bad table is refused (400, naming the rule and column)
before any analysis sees it; ``DELETE /rules/{name}`` (admin) goes back to the file. Both are
audited. The analyses read the stored table on their next run (the loaders cache by content).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

import pandas as pd
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from analysis.clearance import DEFAULT_RULES, load_clearance_rules
from analysis.cover import DEFAULT_COVER_RULES, load_cover_rules
from analysis.hazards import DEFAULT_SERVICE_LIFE, load_service_life
from analysis.rule_tables import RULE_TABLES, RuleText, stored_rule_table
from api.audit import audit
from api.auth import User, allow
from api.jobs import base_url
from twin.errors import InputError, NotFound
from twin.jsonable import plain
from twin.settings import TwinSettings

__all__ = ["router", "RULES"]

router = APIRouter(tags=["rules"])

#: Largest rule table accepted (bytes): the shipped ones are a few kB.
MAX_TABLE_BYTES = 1_000_000

RuleName = Annotated[Literal[RULE_TABLES], PathParam(description="clearance_rules, cover_rules or service_life")]  # type: ignore[valid-type]

#: name -> (title, loader, setting naming a file, shipped file)
RULES: dict[str, tuple[str, Callable[..., pd.DataFrame], str, Path]] = {
    "clearance_rules": ("Minimum horizontal and vertical clearance between pipes (GB 50289-2016)",
                        load_clearance_rules, "clearance_rules", DEFAULT_RULES),
    "cover_rules": ("Minimum cover by utility, burial, material and location (GB 50289-2016 table 4.1.1)",
                    load_cover_rules, "cover_rules", DEFAULT_COVER_RULES),
    "service_life": ("Expected service life by material (dig-site hazards)",
                     load_service_life, "service_life", DEFAULT_SERVICE_LIFE),
}


def _file(settings: TwinSettings, name: str) -> tuple[str, Path]:
    _, _, setting, shipped = RULES[name]
    configured = getattr(settings, setting, None)
    return ("configured", Path(configured)) if configured is not None else ("shipped", shipped)


def _current(request: Request, name: str) -> tuple[str, str, dict]:
    """The table the analyses use now: (source, CSV text, metadata)."""
    engine, settings = request.app.state.engine, request.app.state.settings
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT csv, updated_by, updated_at FROM rule_table WHERE name = :n"),
                           {"n": name}).first()
    if row is not None:
        return "database", row.csv, {"updated_by": row.updated_by, "updated_at": row.updated_at.isoformat()}
    source, path = _file(settings, name)
    try:
        return source, path.read_text(encoding="utf-8-sig"), {"file": path.name}
    except OSError as exc:
        raise NotFound(f"the {source} {name} file {path} cannot be read: {exc}") from None


def _entry(request: Request, name: str) -> dict:
    source, text, meta = _current(request, name)
    base = base_url(request)
    entry = {"name": name, "title": RULES[name][0], "source": source, **meta}
    try:
        entry["rows"] = len(_read(name, RuleText(text, f"{name} ({source})")))
    except InputError as exc:  # a broken configured file: say so, list the others
        entry["error"] = exc.message
    entry["links"] = [{"href": f"{base}/rules/{name}", "rel": "self", "type": "text/csv"},
                      {"href": f"{base}/rules/{name}?f=json", "rel": "alternate", "type": "application/json"}]
    return entry


def _read(name: str, source: RuleText) -> pd.DataFrame:
    """The table parsed by the analyses' own loader (InputError when it is bad)."""
    return RULES[name][1](source)


@router.get("/rules", summary="The rule tables and where each comes from")
def rule_tables(request: Request, user: User = Depends(allow("read"))) -> dict:
    return {"rules": [_entry(request, name) for name in RULES],
            "links": [{"href": f"{base_url(request)}/rules", "rel": "self", "type": "application/json"}]}


@router.get("/rules/{name}", response_class=Response,
            responses={200: {"content": {"text/csv": {"schema": {"type": "string"}},
                                         "application/json": {"schema": {"type": "object"}}}}},
            summary="One rule table: CSV (default) or its rows as JSON (?f=json)")
def rule_table(
    name: RuleName,
    request: Request,
    f: Literal["csv", "json"] = Query("csv", description="csv (the table as stored) or json (parsed rows)"),
    user: User = Depends(allow("read")),
) -> Response:
    source, text, meta = _current(request, name)
    if f == "csv":
        return Response(text, media_type="text/csv; charset=utf-8",
                        headers={"X-Rule-Source": source,
                                 "Content-Disposition": f'inline; filename="{name}.csv"'})
    table = _read(name, RuleText(text, f"{name} ({source})"))
    return JSONResponse(plain({"name": name, "title": RULES[name][0], "source": source, **meta,
                                   "columns": [str(c) for c in table.columns],
                                   "rows": table.to_dict("records")}))


async def _csv_body(request: Request) -> str:
    raw = await request.body()
    if len(raw) > MAX_TABLE_BYTES:
        raise InputError(f"a rule table is at most {MAX_TABLE_BYTES:,} bytes")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"the table is not UTF-8 text: {exc}") from None
    if "\x00" in text:
        raise InputError("the table contains NUL characters")
    if not text.strip():
        raise InputError("the table is empty: send the CSV with its header row")
    return text


@router.put("/rules/{name}",
            openapi_extra={"requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}},
            summary="Replace a rule table (admin): CSV with the shipped table's columns")
async def put_rule_table(name: RuleName, request: Request, user: User = Depends(allow("admin"))) -> dict:
    text = await _csv_body(request)
    return await run_in_threadpool(_store, name, text, request, user)


def _store(name: str, text: str, request: Request, user: User) -> dict:
    table = _read(name, RuleText(text, f"{name} (uploaded)"))
    if table.empty:
        raise InputError(f"the {name} table has no rows: DELETE /rules/{name} goes back to the defaults")
    engine = request.app.state.engine
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO rule_table (name, csv, updated_by, updated_at) VALUES (:n, :c, :u, now()) "
            "ON CONFLICT (name) DO UPDATE SET csv = EXCLUDED.csv, updated_by = EXCLUDED.updated_by, "
            "updated_at = now()"), {"n": name, "c": text, "u": user.name})
        ids = table["id"].astype(str).tolist() if "id" in table.columns else []
        audit(conn, user, "rules-put", request, params={"name": name, "rows": len(table), "bytes": len(text)},
              affected=[name, *ids[:200]], status=200)
        stored = stored_rule_table(conn, name)
    return {"name": name, "source": "database", "rows": len(table), "updated_by": user.name,
            "label": str(stored)}


@router.delete("/rules/{name}", summary="Go back to the configured or shipped table (admin)")
def delete_rule_table(name: RuleName, request: Request, user: User = Depends(allow("admin"))) -> dict:
    engine = request.app.state.engine
    with engine.begin() as conn:
        gone = conn.execute(sa.text("DELETE FROM rule_table WHERE name = :n"), {"n": name}).rowcount
        audit(conn, user, "rules-delete", request, params={"name": name, "removed": bool(gone)},
              affected=[name], status=200)
    source, path = _file(request.app.state.settings, name)
    return {"name": name, "source": source, "file": path.name, "removed": bool(gone)}
