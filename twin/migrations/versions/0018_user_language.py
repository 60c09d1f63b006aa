"""Each user's language of the viewer and their documents (issue 22: Chinese first, an English
switch remembered for each user).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03
"""

from alembic import op  # noqa: F401

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass  # filled in by the viewer-language work


def downgrade() -> None:
    pass
