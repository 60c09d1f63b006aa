"""Each twin's identity: a random id in ``twin_meta`` (key ``twin``), so a tileset (or any
derived file) built from one twin is told apart from another twin's in the same data folder
(issue 22: tiles in step with the twin).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03
"""

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("INSERT INTO twin_meta VALUES ('twin', gen_random_uuid()::text) ON CONFLICT (key) DO NOTHING")


def downgrade() -> None:
    op.execute("DELETE FROM twin_meta WHERE key = 'twin'")
