"""What the twin holds: counts and lengths by utility."""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from twin.domain import UTILITIES

__all__ = ["TwinSummary", "summarise"]


@dataclass
class TwinSummary:
    """Counts of the current network."""

    nodes: int = 0
    segments: int = 0
    valves: int = 0
    sources: int = 0
    customers: int = 0
    critical_customers: int = 0
    length_km: float = 0.0
    by_utility: list[dict[str, object]] = field(default_factory=list)
    batches: int = 0


def summarise(engine: Engine) -> TwinSummary:
    """Summarise the current (not retired) network."""
    with engine.connect() as conn:
        s = TwinSummary()
        for name in ("node", "segment", "valve", "source", "customer"):
            setattr(s, name + "s", conn.execute(sa.text(f"SELECT count(*) FROM current_{name}")).scalar())
        s.critical_customers = conn.execute(
            sa.text("SELECT count(*) FROM current_customer WHERE critical")
        ).scalar()
        s.batches = conn.execute(sa.text("SELECT count(*) FROM batch WHERE status = 'applied'")).scalar()
        rows = conn.execute(
            sa.text(
                "SELECT utility, count(*) AS segments, sum(length_m) / 1000 AS km "
                "FROM current_segment GROUP BY utility ORDER BY utility"
            )
        ).mappings()
        for r in rows:
            u = UTILITIES.get(r["utility"])
            s.by_utility.append(
                {"utility": r["utility"], "name": u.name_en if u else r["utility"],
                 "segments": r["segments"], "length_km": round(float(r["km"]), 3)}
            )
        s.length_km = round(sum(float(r["length_km"]) for r in s.by_utility), 3)
        return s
