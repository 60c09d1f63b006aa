"""What the twin holds: counts and lengths of the live network, by utility, in one snapshot.

Lengths are sums of each pipe's stored ``length_m``: its plan (horizontal) length, the length
the survey tables, the data checks and every feature report use. They are added in the
database at full precision and rounded once, at the end.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa

from twin.domain import UTILITIES

__all__ = ["TwinSummary", "summarise"]


@dataclass
class TwinSummary:
    """Counts and lengths of the live (not retired) network."""

    nodes: int = 0
    segments: int = 0
    valves: int = 0
    sources: int = 0
    customers: int = 0
    critical_customers: int = 0
    length_m: float = 0.0
    length_km: float = 0.0
    by_utility: list[dict[str, object]] = field(default_factory=list)
    #: Applied batches: how many, and the newest (None before the first).
    batches: int = 0
    latest_batch: int | None = None
    #: When the snapshot was read (the statement's time).
    as_of: datetime | None = None


# One statement, so one snapshot: a reader sees the network before or after a batch, never half.
_SUMMARY_SQL = """
SELECT (SELECT count(*) FROM current_node) AS nodes,
       (SELECT count(*) FROM current_segment) AS segments,
       (SELECT count(*) FROM current_valve) AS valves,
       (SELECT count(*) FROM current_source) AS sources,
       (SELECT count(*) FROM current_customer) AS customers,
       (SELECT count(*) FROM current_customer WHERE critical) AS critical_customers,
       (SELECT coalesce(sum(length_m), 0) FROM current_segment) AS length_m,
       (SELECT coalesce(json_agg(u ORDER BY u.utility), '[]')
          FROM (SELECT utility, count(*) AS segments, sum(length_m) AS length_m
                  FROM current_segment GROUP BY utility) AS u) AS by_utility,
       (SELECT count(*) FROM batch WHERE status = 'applied') AS batches,
       (SELECT max(id) FROM batch WHERE status = 'applied') AS latest_batch,
       statement_timestamp() AS as_of
"""


def _utility(row: dict) -> dict[str, object]:
    u = UTILITIES.get(row["utility"])
    length_m = float(row["length_m"])
    return {
        "utility": row["utility"],
        "name": u.name_en if u else row["utility"],
        "segments": int(row["segments"]),
        "length_m": round(length_m, 3),
        "length_km": round(length_m / 1000, 3),
    }


def summarise(db: sa.Connection | sa.Engine) -> TwinSummary:
    """Summarise the live network in one statement (one snapshot)."""
    if isinstance(db, sa.Engine):
        with db.connect() as conn:
            return summarise(conn)
    row = dict(db.execute(sa.text(_SUMMARY_SQL)).mappings().one())
    by_utility = row.pop("by_utility")
    if isinstance(by_utility, str):
        by_utility = json.loads(by_utility)
    length_m = float(row.pop("length_m"))
    return TwinSummary(
        **{k: row[k] for k in ("nodes", "segments", "valves", "sources", "customers",
                               "critical_customers", "batches", "latest_batch", "as_of")},
        length_m=round(length_m, 3),
        length_km=round(length_m / 1000, 3),
        by_utility=[_utility(r) for r in by_utility],
    )
