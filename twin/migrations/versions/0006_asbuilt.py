"""As-built batches (竣工测量): submitted, reviewed, then committed to the twin or rejected.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE asbuilt (
            id bigserial PRIMARY KEY,
            name text NOT NULL,
            status text NOT NULL DEFAULT 'submitted'
                CHECK (status IN ('submitted', 'reviewed', 'committed', 'rejected')),
            options jsonb NOT NULL DEFAULT '{}'::jsonb,
            report jsonb NOT NULL DEFAULT '{}'::jsonb,
            submitted_by text NOT NULL,
            submitted_at timestamptz NOT NULL DEFAULT now(),
            reviewed_by text,
            reviewed_at timestamptz,
            review_note text,
            committed_by text,
            committed_at timestamptz,
            batch_id bigint REFERENCES batch (id)
        );
        CREATE TABLE asbuilt_file (
            asbuilt_id bigint NOT NULL REFERENCES asbuilt (id) ON DELETE CASCADE,
            name text NOT NULL,
            role text NOT NULL,
            content bytea NOT NULL,
            PRIMARY KEY (asbuilt_id, name)
        );
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS asbuilt_file, asbuilt")
