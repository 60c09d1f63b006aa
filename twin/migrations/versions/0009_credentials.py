"""Credentials that can end: a token version per user, and failed sign-ins counted for throttling.

``app_user.token_version`` is written into every access token (the ``ver`` claim); a password
change, a role change or disabling the user moves it on, so tokens issued before stop working
(re-enabling does not move it back). Tokens issued before this revision carry no version and
are refused: their users sign in once more.

``signin_failure`` holds one row per sign-in attempt that reached the password check and did
not succeed, by the name tried and the client address, for the throttle in ``api.signin``;
rows older than the throttle's window are deleted as new ones come. It is kept in the
database so every server worker counts the same attempts.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE app_user ADD COLUMN token_version integer NOT NULL DEFAULT 0;

        CREATE TABLE signin_failure (
            id bigserial PRIMARY KEY,
            at timestamptz NOT NULL DEFAULT clock_timestamp(),
            user_name text NOT NULL,
            client text NOT NULL
        );
        CREATE INDEX signin_failure_user_idx ON signin_failure (user_name, at);
        CREATE INDEX signin_failure_client_idx ON signin_failure (client, at);
        CREATE INDEX signin_failure_at_idx ON signin_failure (at);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE signin_failure;
        ALTER TABLE app_user DROP COLUMN token_version;
        """
    )
