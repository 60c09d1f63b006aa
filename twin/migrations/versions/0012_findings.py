"""Whole-network findings that persist (key, status, history), issue 13.

``finding``: one row per finding the whole-network scan has ever reported, keyed by its stable
key (kind + the two pipe ids), with the latest measurement and a status (new, active,
reviewed, approved, resolved). ``finding_event``: who changed a status, when, from, to, note
(the scan's own changes are recorded too, by the user who ran it).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE finding (
            key text PRIMARY KEY,
            kind text NOT NULL,
            verdict text NOT NULL,
            status text NOT NULL DEFAULT 'new'
                CHECK (status IN ('new', 'active', 'reviewed', 'approved', 'resolved')),
            a_id text NOT NULL,
            b_id text,
            a_utility text,
            b_utility text,
            utility_pair text,
            a_owner text,
            b_owner text,
            owners text,
            road text,
            measured_m double precision,
            required_m double precision,
            uncertainty_m double precision,
            rule_id text,
            x double precision,
            y double precision,
            z double precision,
            first_seen timestamptz NOT NULL DEFAULT now(),
            last_seen timestamptz NOT NULL DEFAULT now(),
            resolved_at timestamptz,
            status_by text,
            status_at timestamptz NOT NULL DEFAULT now(),
            note text
        );
        CREATE INDEX finding_status_idx ON finding (status, verdict);
        CREATE INDEX finding_pair_idx ON finding (utility_pair);
        CREATE TABLE finding_event (
            id bigserial PRIMARY KEY,
            key text NOT NULL REFERENCES finding (key) ON DELETE CASCADE,
            at timestamptz NOT NULL DEFAULT now(),
            user_name text NOT NULL,
            from_status text,
            to_status text NOT NULL,
            note text
        );
        CREATE INDEX finding_event_key_idx ON finding_event (key, at);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS finding_event, finding")
