"""Proposals (管线审批): stored proposals, their findings with decisions, and an event log.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE proposal (
            id bigserial PRIMARY KEY,
            name text NOT NULL,
            geojson jsonb NOT NULL,
            utility text,
            status text NOT NULL DEFAULT 'new'
                CHECK (status IN ('new', 'reviewed', 'approved', 'rejected')),
            passed boolean,
            created_by text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            checked_at timestamptz,
            decided_by text,
            decided_at timestamptz,
            note text,
            override_note text,
            report jsonb NOT NULL DEFAULT '{}'::jsonb,
            version integer NOT NULL DEFAULT 1
        );
        CREATE INDEX proposal_status_idx ON proposal (status);

        -- One row per finding key a check has ever produced for the proposal: decisions stay
        -- with the key across re-runs; a key no longer found is 'resolved', not deleted.
        CREATE TABLE proposal_finding (
            proposal_id bigint NOT NULL REFERENCES proposal (id) ON DELETE CASCADE,
            key text NOT NULL,
            kind text NOT NULL,
            status text NOT NULL DEFAULT 'open'
                CHECK (status IN ('open', 'accepted', 'rejected', 'resolved')),
            summary text,
            detail jsonb NOT NULL DEFAULT '{}'::jsonb,
            first_seen_at timestamptz NOT NULL DEFAULT now(),
            last_seen_at timestamptz NOT NULL DEFAULT now(),
            decided_by text,
            decided_at timestamptz,
            note text,
            PRIMARY KEY (proposal_id, key)
        );

        -- Who did what and when: every check, status change and finding decision.
        CREATE TABLE proposal_event (
            id bigserial PRIMARY KEY,
            proposal_id bigint NOT NULL REFERENCES proposal (id) ON DELETE CASCADE,
            at timestamptz NOT NULL DEFAULT now(),
            by text NOT NULL,
            action text NOT NULL,
            finding_key text,
            from_status text,
            to_status text,
            note text
        );
        CREATE INDEX proposal_event_proposal_idx ON proposal_event (proposal_id, at);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS proposal_event, proposal_finding, proposal CASCADE")
