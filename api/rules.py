"""Rule tables (admin): the clearance, cover and service-life tables the analyses judge by.

``GET /rules`` lists them and where each comes from (``database``: stored by an admin;
``configured``: ``TWIN_*`` names a file; ``shipped``: the GB 50289 defaults in
``analysis/data``). ``GET /rules/{name}`` gives the CSV (``text/csv``, or the parsed rows as
JSON with ``?f=json``). ``PUT /rules/{name}`` (admin) stores a CSV after reading it with the
same loader the analyses use, so a bad table is refused (400, naming the rule and column)
before any analysis sees it; ``DELETE /rules/{name}`` (admin) goes back to the file. Both are
audited. The analyses read the stored table on their next run (the loaders cache by content).
Reading, checking and storing the tables is :mod:`analysis.rule_catalogue`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from analysis import rule_catalogue
from analysis.rule_tables import RULE_TABLES, stored_rule_table
from api.audit import audit
from api.auth import User, allow
from api.jobs import base_url
from twin.jsonable import plain

__all__ = ["router"]

router = APIRouter(tags=["rules"])

RuleName = Annotated[Literal[RULE_TABLES], PathParam(description="clearance_rules, cover_rules or service_life")]  # type: ignore[valid-type]


def _links(request: Request, name: str) -> list[dict]:
    base = base_url(request)
    return [{"href": f"{base}/rules/{name}", "rel": "self", "type": "text/csv"},
            {"href": f"{base}/rules/{name}?f=json", "rel": "alternate", "type": "application/json"}]


@router.get("/rules", summary="The rule tables and where each comes from")
def rule_tables(request: Request, user: User = Depends(allow("read"))) -> dict:
    engine, settings = request.app.state.engine, request.app.state.settings
    return {"rules": [{**rule_catalogue.rule_table_summary(engine, name, settings), "links": _links(request, name)}
                      for name in RULE_TABLES],
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
    engine, settings = request.app.state.engine, request.app.state.settings
    if f == "json":
        return JSONResponse(plain(rule_catalogue.rule_table_rows(engine, name, settings)))
    current = rule_catalogue.rules_in_use(engine, name, settings)
    return Response(current.text, media_type="text/csv; charset=utf-8",
                    headers={"X-Rule-Source": current.source,
                             "Content-Disposition": f'inline; filename="{name}.csv"'})


@router.put("/rules/{name}",
            openapi_extra={"requestBody": {"required": True, "content": {"text/csv": {"schema": {"type": "string"}}}}},
            summary="Replace a rule table (admin): CSV with the shipped table's columns")
async def put_rule_table(name: RuleName, request: Request, user: User = Depends(allow("admin"))) -> dict:
    text = rule_catalogue.rule_csv(await request.body())
    return await run_in_threadpool(_store, name, text, request, user)


def _store(name: str, text: str, request: Request, user: User) -> dict:
    with request.app.state.engine.begin() as conn:
        table = rule_catalogue.store_rule_table(conn, name, text, user.name)
        ids = table["id"].astype(str).tolist() if "id" in table.columns else []
        audit(conn, user, "rules-put", request, params={"name": name, "rows": len(table), "bytes": len(text)},
              affected=[name, *ids[:200]], status=200)
        label = str(stored_rule_table(conn, name))
    return {"name": name, "source": "database", "rows": len(table), "updated_by": user.name, "label": label}


@router.delete("/rules/{name}", summary="Go back to the configured or shipped table (admin)")
def delete_rule_table(name: RuleName, request: Request, user: User = Depends(allow("admin"))) -> dict:
    with request.app.state.engine.begin() as conn:
        result = rule_catalogue.delete_rule_table(conn, name, request.app.state.settings)
        audit(conn, user, "rules-delete", request, params={"name": name, "removed": result["removed"]},
              affected=[name], status=200)
    return result
