"""The OGC API landing page, conformance and the OpenAPI document at /api."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from api.auth import User, allow
from api.jobs import base_url

__all__ = ["router", "landing", "CONFORMANCE"]

router = APIRouter(tags=["ogc"])

CONFORMANCE = [
    "http://www.opengis.net/spec/ogcapi-common-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-common-2/1.0/conf/collections",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/oas30",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-2/1.0/conf/crs",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables-query-parameters",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/filter",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/features-filter",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-text",
    "http://www.opengis.net/spec/cql2/1.0/conf/cql2-json",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-cql2",
    "http://www.opengis.net/spec/cql2/1.0/conf/advanced-comparison-operators",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions",
    "http://www.opengis.net/spec/cql2/1.0/conf/basic-spatial-functions-plus",
    "http://www.opengis.net/spec/cql2/1.0/conf/spatial-functions",
    "http://www.opengis.net/spec/ogcapi-records-1/1.0/conf/sorting",
    "http://www.opengis.net/spec/ogcapi-features-6/1.0/conf/property-selection",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/json",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/job-list",
    "http://www.opengis.net/spec/ogcapi-processes-1/1.0/conf/dismiss",
]


def landing(request: Request) -> dict:
    base = base_url(request)
    return {
        "title": "PipeTwin",
        "description": "The 3D underground pipeline digital twin: pipes, nodes, valves, customers and "
        "proposals as OGC API Features; analyses as OGC API Processes; the network as 3D Tiles.",
        "links": [
            {"href": f"{base}/?f=json", "rel": "self", "type": "application/json", "title": "This document"},
            {"href": f"{base}/", "rel": "alternate", "type": "text/html", "title": "The 3D viewer"},
            {"href": f"{base}/api", "rel": "service-desc", "type": "application/vnd.oai.openapi+json;version=3.0",
             "title": "The API definition"},
            {"href": f"{base}/conformance", "rel": "conformance", "type": "application/json",
             "title": "Conformance classes"},
            {"href": f"{base}/collections", "rel": "data", "type": "application/json", "title": "Collections"},
            {"href": f"{base}/processes", "rel": "http://www.opengis.net/def/rel/ogc/1.0/processes",
             "type": "application/json", "title": "Analyses"},
            {"href": f"{base}/jobs", "rel": "http://www.opengis.net/def/rel/ogc/1.0/job-list",
             "type": "application/json", "title": "Jobs"},
            {"href": f"{base}/tiles/tileset.json", "rel": "item", "type": "application/json",
             "title": "3D Tiles tileset"},
        ],
    }


@router.get("/conformance", summary="Conformance classes")
def conformance(user: User = Depends(allow("read"))) -> dict:
    return {"conformsTo": CONFORMANCE}


OPENAPI_TYPE = "application/vnd.oai.openapi+json;version=3.0"


@router.get("/api", summary="This API's OpenAPI 3 document", response_class=JSONResponse,
            responses={200: {"content": {OPENAPI_TYPE: {"schema": {"type": "object"}}}}})
def openapi_document(request: Request, user: User = Depends(allow("read"))) -> JSONResponse:
    return JSONResponse(request.app.openapi(), media_type=OPENAPI_TYPE)
