"""A change counter every write to a feature table moves, inside the writer's transaction.

In-memory models (shutoff, the features API's counts and extents) compare it to decide
whether to re-read the network. The marks of migration 0003 are transaction start times: an
import that began before an edit but committed after it would not move them. This counter
is updated by a statement trigger in the writing transaction, so readers see it move exactly
when the change becomes visible. Also: an index on (utility, id) for per-utility pages.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

FEATURES = ("node", "segment", "valve", "source", "customer")


def upgrade() -> None:
    op.execute(
        """
        -- A random start: a twin restored from an older backup never meets its old count.
        INSERT INTO twin_meta VALUES ('changes', (floor(random() * 1e12))::bigint::text)
            ON CONFLICT (key) DO NOTHING;
        CREATE FUNCTION twin_count_change() RETURNS trigger LANGUAGE plpgsql AS $fn$
        BEGIN
            EXECUTE format('UPDATE %I.twin_meta SET value = (value::bigint + 1)::text '
                           'WHERE key = ''changes''', TG_TABLE_SCHEMA);
            RETURN NULL;
        END
        $fn$;
        CREATE INDEX segment_utility_id_idx ON segment (utility, id);
        """
    )
    for t in FEATURES:
        op.execute(
            f"CREATE TRIGGER {t}_changes AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {t} "
            "FOR EACH STATEMENT EXECUTE FUNCTION twin_count_change()"
        )


def downgrade() -> None:
    for t in FEATURES:
        op.execute(f"DROP TRIGGER IF EXISTS {t}_changes ON {t}")
    op.execute("DROP FUNCTION IF EXISTS twin_count_change()")
    op.execute("DROP INDEX IF EXISTS segment_utility_id_idx")
    op.execute("DELETE FROM twin_meta WHERE key = 'changes'")
