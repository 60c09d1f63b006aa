"""The token signing secret leaves the database.

The secret that signs access tokens is now ``TWIN_JWT_SECRET`` or a 0600 file under the data
folder (``api.auth.signing_secret``): anyone who could read the twin's tables, or a backup of
them, could otherwise forge tokens. The ``server_secret`` table goes; tokens signed with the
secret it held stop working (their users sign in again). A downgrade makes the table again,
empty: that version's server then makes a new secret in it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP TABLE IF EXISTS server_secret")


def downgrade() -> None:
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS server_secret (
            name text PRIMARY KEY,
            value text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        """
    )
