"""Bulk reads from the twin: ``COPY (query) TO STDOUT`` in CSV, parsed by Arrow.

A million rows in a few seconds, against tens of seconds through a cursor. The tiles and the
whole-network scan read the network this way.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import sqlalchemy as sa

__all__ = ["copy_table", "copy_frame"]


def copy_table(conn: sa.Connection, query: str, params: Sequence | None = None,
               types: dict[str, pa.DataType] | None = None) -> pa.Table | None:
    """Run ``COPY (query) TO STDOUT`` (CSV with header) and parse it with Arrow; None when empty.

    ``query`` is psycopg SQL (``%s`` placeholders for ``params``); ``types`` fixes column types
    (otherwise Arrow infers them). Empty strings stay strings; unquoted empty fields are null.
    """
    raw = conn.connection.driver_connection
    sink = io.BytesIO()
    with raw.cursor() as cur, cur.copy(f"COPY ({query}) TO STDOUT (FORMAT csv, HEADER true)",
                                       params) as copy:
        for chunk in copy:
            sink.write(chunk)
    data = sink.getvalue()
    if not data:
        return None
    opts = pacsv.ConvertOptions(column_types=types or {}, strings_can_be_null=True,
                                true_values=["t", "true"], false_values=["f", "false"],
                                quoted_strings_can_be_null=False)
    return pacsv.read_csv(io.BytesIO(data), convert_options=opts,
                          read_options=pacsv.ReadOptions(block_size=1 << 24))


def copy_frame(conn: sa.Connection, query: str, params: Sequence | None = None,
               types: dict[str, pa.DataType] | None = None) -> pd.DataFrame:
    """:func:`copy_table` as a pandas frame (empty frame when the query returns nothing)."""
    table = copy_table(conn, query, params, types)
    return pd.DataFrame() if table is None else table.to_pandas()
