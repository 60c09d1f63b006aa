"""Each user's language of the viewer and their documents (issue 22: Chinese first, an English
switch remembered for each user).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03
"""

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE app_user ADD COLUMN IF NOT EXISTS lang text NOT NULL DEFAULT 'zh-CN' "
        "CONSTRAINT app_user_lang CHECK (lang IN ('zh-CN', 'en'))"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE app_user DROP COLUMN IF EXISTS lang")
