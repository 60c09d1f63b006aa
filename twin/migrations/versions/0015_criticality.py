"""Criticality of every segment and the N-1 next ring of every valve, stored, issue 16.

``criticality_run``: one row, the network change mark the results were computed at (results
whose mark differs from the twin's are stale), when, by whom, and how long it took.
``criticality_segment``: per valve segment (the isolation model's numbering at that mark),
what a burst in it cuts off (pipes, length, customers, critical customers, demand), how
many valves it needs, and the ids of its pipes and of those valves (one row answers a query). ``criticality_pipe``: the segment of every pipe (per-pipe lookup).
``criticality_valve``: per valve that can close, the two segments it separates and the outage
when it fails to close (both shut off together) with the extra over the burst side's own.

The tables are UNLOGGED: they are derived from the network and rewritten whole (a million rows
in seconds, without WAL); after a crash PostgreSQL empties them, ``criticality_run`` included,
so the results read as not computed and are computed again.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_OUTAGE = """
    pipes integer NOT NULL,
    length_m double precision NOT NULL,
    customers integer NOT NULL,
    critical_customers integer NOT NULL,
    demand double precision NOT NULL"""


def upgrade() -> None:
    op.execute(
        f"""
        CREATE UNLOGGED TABLE criticality_run (
            id integer PRIMARY KEY DEFAULT 1 CHECK (id = 1),
            mark text NOT NULL,
            computed_at timestamptz NOT NULL DEFAULT now(),
            computed_by text,
            segments integer NOT NULL,
            regions integer NOT NULL,
            valves integer NOT NULL,
            fallback integer NOT NULL,
            seconds double precision NOT NULL
        );
        CREATE UNLOGGED TABLE criticality_segment (
            segment integer PRIMARY KEY,
            region integer NOT NULL,
            utility text,
            own_pipes integer NOT NULL,
            own_length_m double precision NOT NULL,
            region_segments integer NOT NULL,
            valves integer NOT NULL,{_OUTAGE},
            pipe_ids text[] NOT NULL,
            valve_ids text[] NOT NULL
        );
        CREATE INDEX criticality_segment_worst_idx ON criticality_segment
            (critical_customers DESC, customers DESC, length_m DESC, segment);
        CREATE INDEX criticality_segment_region_idx ON criticality_segment (region);
        CREATE UNLOGGED TABLE criticality_pipe (
            pipe_id text PRIMARY KEY,
            segment integer NOT NULL
        );
        CREATE INDEX criticality_pipe_segment_idx ON criticality_pipe (segment);
        CREATE UNLOGGED TABLE criticality_valve (
            valve_id text PRIMARY KEY,
            pipe_id text,
            node_id text,
            segment_a integer NOT NULL,
            segment_b integer NOT NULL,
            region_a integer NOT NULL,
            region_b integer NOT NULL,{_OUTAGE},
            extra_pipes integer NOT NULL,
            extra_length_m double precision NOT NULL,
            extra_customers integer NOT NULL,
            extra_critical_customers integer NOT NULL,
            extra_demand double precision NOT NULL
        );
        CREATE INDEX criticality_valve_a_idx ON criticality_valve (region_a);
        CREATE INDEX criticality_valve_b_idx ON criticality_valve (region_b);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS criticality_valve, criticality_pipe, criticality_segment, "
               "criticality_run")
