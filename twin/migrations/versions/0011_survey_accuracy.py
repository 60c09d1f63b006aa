"""Survey accuracy of points (exposed or concealed), issue 13.

``node.survey_class``: ``exposed`` (明显管线点, measured in a manhole, chamber or trench) or
``concealed`` (隐蔽管线点, located with a detector); NULL when the survey does not say (the
analyses then default by appurtenance, see ``analysis/accuracy.py``).

The history trigger copies a row into ``node_history`` by position (the row, then
``valid_to`` and ``op``), so the history table is rebuilt with the new column before those
two; the ``current_node`` view and ``node_as_of`` are made again to carry it.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

_CHECK = "CHECK (survey_class IN ('exposed', 'concealed'))"


def _rebuild_history() -> None:
    """``node_history`` as ``LIKE node`` plus ``valid_to`` and ``op``, rows kept by name."""
    op.execute(
        """
        DO $do$
        DECLARE cols text;
        BEGIN
            ALTER TABLE node_history RENAME TO node_history_old;
            ALTER INDEX node_history_id_idx RENAME TO node_history_old_id_idx;
            ALTER INDEX node_history_valid_to_idx RENAME TO node_history_old_valid_to_idx;
            CREATE TABLE node_history (LIKE node);
            ALTER TABLE node_history ADD COLUMN valid_to timestamptz NOT NULL,
                                     ADD COLUMN op text NOT NULL;
            SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO cols
              FROM pg_attribute
             WHERE attrelid = 'node_history_old'::regclass AND attnum > 0 AND NOT attisdropped;
            EXECUTE format('INSERT INTO node_history (%1$s) SELECT %1$s FROM node_history_old', cols);
            DROP TABLE node_history_old;
            CREATE INDEX node_history_id_idx ON node_history (id, valid_from);
            CREATE INDEX node_history_valid_to_idx ON node_history (valid_to);
        END
        $do$;
        """
    )


def _views() -> None:
    """``current_node`` and ``node_as_of`` with every column of ``node``."""
    op.execute("DROP VIEW IF EXISTS current_node")
    op.execute("CREATE VIEW current_node AS SELECT * FROM node WHERE retired_at IS NULL")
    op.execute(
        """
        DO $do$
        DECLARE cols text;
        BEGIN
            SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO cols
              FROM pg_attribute
             WHERE attrelid = 'node'::regclass AND attnum > 0 AND NOT attisdropped;
            DROP FUNCTION IF EXISTS node_as_of(timestamptz);
            EXECUTE format($f$
                CREATE FUNCTION node_as_of(t timestamptz) RETURNS SETOF node
                LANGUAGE sql STABLE AS $body$
                    SELECT %1$s FROM node
                     WHERE valid_from <= t AND (retired_at IS NULL OR retired_at > t)
                    UNION ALL
                    SELECT %1$s FROM node_history
                     WHERE valid_from <= t AND valid_to > t
                       AND (retired_at IS NULL OR retired_at > t)
                $body$ $f$, cols);
        END
        $do$;
        """
    )


def upgrade() -> None:
    op.execute(f"ALTER TABLE node ADD COLUMN survey_class text CONSTRAINT node_survey_class {_CHECK}")
    _rebuild_history()
    _views()


def downgrade() -> None:
    op.execute("DROP VIEW IF EXISTS current_node")
    op.execute("DROP FUNCTION IF EXISTS node_as_of(timestamptz)")
    op.execute("ALTER TABLE node DROP COLUMN survey_class")
    op.execute("ALTER TABLE node_history DROP COLUMN survey_class")
    _rebuild_history()  # the dropped column leaves a hole the positional copy would trip on
    _views()
