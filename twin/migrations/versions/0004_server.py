"""The server: users and API keys, the audit log, jobs, the token signing secret.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE app_user (
            name text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.@-]{1,64}$'),
            role text NOT NULL CHECK (role IN ('viewer', 'editor', 'approver', 'admin')),
            password_hash text,
            disabled boolean NOT NULL DEFAULT false,
            created_at timestamptz NOT NULL DEFAULT now(),
            created_by text NOT NULL
        );

        -- Machine clients: only a SHA-256 of the key is kept; the key is shown once.
        CREATE TABLE api_key (
            id bigserial PRIMARY KEY,
            user_name text NOT NULL REFERENCES app_user (name) ON DELETE CASCADE,
            key_hash text NOT NULL UNIQUE,
            label text,
            created_at timestamptz NOT NULL DEFAULT now(),
            revoked_at timestamptz
        );

        -- Who did what, when: every write and every analysis run.
        CREATE TABLE audit_log (
            id bigserial PRIMARY KEY,
            at timestamptz NOT NULL DEFAULT clock_timestamp(),
            user_name text NOT NULL,
            role text,
            action text NOT NULL,
            method text,
            path text,
            params jsonb NOT NULL DEFAULT '{}'::jsonb,
            affected jsonb NOT NULL DEFAULT '[]'::jsonb,
            status integer
        );
        CREATE INDEX audit_log_at_idx ON audit_log (at);
        CREATE INDEX audit_log_user_idx ON audit_log (user_name, at);

        -- Long work (imports, scans, tile builds) runs as jobs the client polls.
        CREATE TABLE job (
            id text PRIMARY KEY,
            kind text NOT NULL,
            owner text NOT NULL,
            status text NOT NULL DEFAULT 'accepted'
                CHECK (status IN ('accepted', 'running', 'successful', 'failed', 'dismissed')),
            progress integer NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
            message text,
            params jsonb NOT NULL DEFAULT '{}'::jsonb,
            result jsonb,
            result_type text,
            result_text text,
            created_at timestamptz NOT NULL DEFAULT now(),
            started_at timestamptz,
            finished_at timestamptz
        );
        CREATE INDEX job_owner_idx ON job (owner, created_at);

        CREATE TABLE server_secret (
            name text PRIMARY KEY,
            value text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS server_secret, job, audit_log, api_key, app_user CASCADE")
