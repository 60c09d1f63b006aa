"""Rule tables edited by admins through the API: they replace the shipped CSV defaults.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE rule_table (
            name text PRIMARY KEY CHECK (name IN ('clearance_rules', 'cover_rules', 'service_life')),
            csv text NOT NULL,
            updated_by text NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS rule_table")
