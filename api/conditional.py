"""Conditional requests: ETags derived from the network's change mark, ``If-None-Match`` -> 304.

An answer that depends only on the network (and the request) carries an ETag made from the
change mark (:data:`twin.db.CHANGE_MARK_SQL`, which moves with every committed write to a
feature table), the request's own parameters and the variant the user sees (format, CRS, the
base URL of the links). A client that sends the tag back in ``If-None-Match`` gets
``304 Not Modified`` with no body, checked before the heavy work. The tags are weak (``W/``):
the gzip middleware may change the bytes, not the meaning. Answers stay private and are
revalidated every time (``Cache-Control: private, no-cache``): the data is confidential.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastapi import Request
from fastapi.responses import Response

__all__ = ["CACHE_CONTROL", "etag", "matches", "not_modified", "if_none_match"]

CACHE_CONTROL = "private, no-cache"


def etag(*parts: Any) -> str:
    """A weak ETag over ``parts`` (JSON-able; keys sorted, so dict order does not matter).

    >>> etag("items", "42", {"b": 1, "a": 2}) == etag("items", "42", {"a": 2, "b": 1})
    True
    """
    text = json.dumps(parts, sort_keys=True, default=str, ensure_ascii=False, separators=(",", ":"))
    return f'W/"{hashlib.sha256(text.encode()).hexdigest()[:32]}"'


def matches(header: str | None, tag: str) -> bool:
    """Whether ``If-None-Match`` names ``tag`` (weak comparison, RFC 9110 13.1.2) or is ``*``.

    >>> matches('"abc", W/"def"', 'W/"def"'), matches('"abc"', 'W/"abc"'), matches(None, 'W/"x"')
    (True, True, False)
    """
    if not header:
        return False
    bare = tag.removeprefix("W/")
    return any(c.strip() == "*" or c.strip().removeprefix("W/") == bare for c in header.split(","))


def if_none_match(request: Request) -> str | None:
    """The request's ``If-None-Match`` header, if any."""
    return request.headers.get("if-none-match")


def not_modified(tag: str) -> Response:
    """304 with the validator and no body."""
    return Response(status_code=304, headers={"ETag": tag, "Cache-Control": CACHE_CONTROL})
