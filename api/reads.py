"""Where a request reads from: the one seam between the routes and the database engines.

Read-only routes (the features API, statistics, the viewer's frames, criticality) take their
engine from :func:`read_engine`; writes always use ``request.app.state.engine`` (the primary).
Today both are the primary; read replicas (issue 19) are chosen here and nowhere else.
"""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import Request

__all__ = ["read_engine"]


def read_engine(request: Request) -> sa.Engine:
    """The engine a read-only request uses."""
    return request.app.state.engine
