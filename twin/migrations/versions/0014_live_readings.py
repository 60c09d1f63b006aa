"""Sensors, readings partitioned by time, alarms, issue 17.

``sensor``: one row per sensor on the network, on a node or on a pipe (ids of the twin's
features; checked by :mod:`live.sensors` when added), with its thresholds and its last reading.

``reading``: every stored reading, ``PARTITION BY RANGE (t)`` with one partition per UTC day,
made on demand by :mod:`live.readings` and dropped after ``TWIN_READINGS_RETENTION_DAYS``.

``alarm``: raised from readings (and the stale check); ``open -> acknowledged -> closed``; at
most one alarm not closed per sensor and cause (the partial unique index).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE sensor (
            id text PRIMARY KEY CHECK (id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$'),
            kind text NOT NULL
                CHECK (kind IN ('pressure', 'flow', 'level', 'gas', 'cover', 'valve_position')),
            unit text NOT NULL,
            node_id text,
            segment_id text,
            low double precision,
            high double precision,
            rate double precision CHECK (rate > 0),
            stale_s integer CHECK (stale_s > 0),
            created_at timestamptz NOT NULL DEFAULT now(),
            created_by text,
            last_t timestamptz,
            last_v double precision,
            CHECK ((node_id IS NULL) <> (segment_id IS NULL)),
            CHECK (low IS NULL OR high IS NULL OR low < high)
        );

        CREATE TABLE reading (
            sensor_id text NOT NULL,
            t timestamptz NOT NULL,
            v double precision NOT NULL
        ) PARTITION BY RANGE (t);
        CREATE UNIQUE INDEX reading_sensor_t_idx ON reading (sensor_id, t);

        CREATE TABLE alarm (
            id bigserial PRIMARY KEY,
            sensor_id text NOT NULL REFERENCES sensor (id) ON DELETE CASCADE,
            node_id text,
            segment_id text,
            kind text NOT NULL,
            cause text NOT NULL CHECK (cause IN ('low', 'high', 'drop', 'rise', 'stale', 'cover_open')),
            severity text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
            value double precision,
            reading_t timestamptz,
            raised_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            state text NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'acknowledged', 'closed')),
            acknowledged_at timestamptz,
            acknowledged_by text,
            closed_at timestamptz,
            closed_by text,
            note text
        );
        CREATE UNIQUE INDEX alarm_one_active_idx ON alarm (sensor_id, cause) WHERE state <> 'closed';
        CREATE INDEX alarm_state_idx ON alarm (state, raised_at);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE alarm; DROP TABLE reading; DROP TABLE sensor;")
