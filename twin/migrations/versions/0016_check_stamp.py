"""The stamp of a proposal check: the network version and the rule-table version it was checked
against (issue 14: the approval package carries it, and a re-check says what changed).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03
"""

from alembic import op  # noqa: F401

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
