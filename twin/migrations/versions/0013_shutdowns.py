"""Planned shutdowns (关阀方案) as records, and the valves' exercise history, issue 16.

``shutdown`` holds one planned or emergency shutdown: what it isolates, its forecast and actual
times, its status (planned -> notified -> executing -> restored, or cancelled) and the current
shutoff answer (``plan``: valves, outage, customers, hydrants). ``shutdown_valve`` is the crew's
checklist: each valve to close with its state (pending, closed, failed), who marked it, when.
``shutdown_event`` is who did what. ``valve_exercise`` is each valve's exercise history (when it
was operated, with what result, by whom): valves not exercised for years are likely to fail.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE shutdown (
            id bigserial PRIMARY KEY,
            utility text,
            pipe text,
            at_x double precision,
            at_y double precision,
            reason text,
            status text NOT NULL DEFAULT 'planned'
                CHECK (status IN ('planned', 'notified', 'executing', 'restored', 'cancelled')),
            planned_start timestamptz NOT NULL,
            planned_end timestamptz NOT NULL,
            actual_start timestamptz,
            actual_end timestamptz,
            created_by text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_by text,
            updated_at timestamptz,
            plan jsonb NOT NULL DEFAULT '{}'::jsonb,
            CHECK (planned_end > planned_start)
        );
        CREATE INDEX shutdown_status_idx ON shutdown (status, planned_start);

        CREATE TABLE shutdown_valve (
            shutdown_id bigint NOT NULL REFERENCES shutdown (id) ON DELETE CASCADE,
            valve_id text NOT NULL,
            position integer NOT NULL,
            needed boolean NOT NULL DEFAULT true,
            added_for text,
            state text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'closed', 'failed')),
            marked_by text,
            marked_at timestamptz,
            PRIMARY KEY (shutdown_id, valve_id)
        );

        CREATE TABLE shutdown_event (
            id bigserial PRIMARY KEY,
            shutdown_id bigint NOT NULL REFERENCES shutdown (id) ON DELETE CASCADE,
            at timestamptz NOT NULL DEFAULT now(),
            by text NOT NULL,
            action text NOT NULL,
            valve_id text,
            from_status text,
            to_status text,
            note text
        );
        CREATE INDEX shutdown_event_shutdown_idx ON shutdown_event (shutdown_id, at);

        CREATE TABLE valve_exercise (
            id bigserial PRIMARY KEY,
            valve_id text NOT NULL,
            at timestamptz NOT NULL,
            result text NOT NULL CHECK (result IN ('ok', 'failed', 'stuck')),
            by text NOT NULL,
            note text,
            recorded_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX valve_exercise_valve_idx ON valve_exercise (valve_id, at DESC);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS valve_exercise, shutdown_event, shutdown_valve, shutdown CASCADE")
