"""The twin: nodes, segments, valves, sources, customers, batches; versioned history.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from alembic import context, op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

FEATURES = ("node", "segment", "valve", "source", "customer")

# Columns every versioned feature carries.
VERSION_COLUMNS = """
    attrs jsonb NOT NULL DEFAULT '{}'::jsonb,
    scope text NOT NULL DEFAULT 'default',
    batch_id bigint REFERENCES batch (id),
    version integer NOT NULL DEFAULT 1,
    valid_from timestamptz NOT NULL DEFAULT now(),
    retired_at timestamptz,
    retired_reason text
"""


def upgrade() -> None:
    cfg = context.config.attributes
    srid = int(cfg["srid"])
    _meta_and_batches()
    _meta_rows(srid, cfg["crs"], cfg["vertical_datum"])
    _network_tables(srid)
    _attachment_tables(srid)
    _history_trigger()
    _history_tables_and_views()
    _indexes()


def _meta_and_batches() -> None:
    """The twin's key-value metadata and the batch log."""
    op.execute(
        """
        CREATE TABLE twin_meta (key text PRIMARY KEY, value text NOT NULL);
        CREATE TABLE batch (
            id bigserial PRIMARY KEY,
            kind text NOT NULL,
            scope text NOT NULL,
            created_by text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            files jsonb NOT NULL DEFAULT '[]'::jsonb,
            status text NOT NULL CHECK (status IN ('applied', 'rejected')),
            counts jsonb NOT NULL DEFAULT '{}'::jsonb,
            report jsonb NOT NULL DEFAULT '{}'::jsonb
        );
        """
    )


def _meta_rows(srid: int, crs: str, vertical_datum: str) -> None:
    """The CRS and vertical datum the twin is stored in."""
    op.execute(
        f"""
        INSERT INTO twin_meta VALUES
            ('srid', '{srid}'),
            ('crs', $${crs}$$),
            ('vertical_datum', $${vertical_datum}$$);
        """
    )


def _network_tables(srid: int) -> None:
    """The versioned nodes and segments."""
    op.execute(
        f"""
        CREATE TABLE node (
            id text PRIMARY KEY,
            map_id text,
            utility text NOT NULL,
            subtype text,
            feature text,
            appurtenance text,
            geom geometry(PointZ, {srid}) NOT NULL,
            ground_z double precision NOT NULL,
            depth_m double precision,
            well_depth_m double precision,
            well_bottom_z double precision,
            eccentric_well_id text,
            sheet text,
            survey_date text,
            remarks text,
            {VERSION_COLUMNS}
        );

        CREATE TABLE segment (
            id text PRIMARY KEY,
            from_node text NOT NULL,
            to_node text NOT NULL,
            utility text NOT NULL,
            subtype text,
            shape text NOT NULL CHECK (shape IN ('circular', 'rect')),
            diameter_mm double precision,
            width_mm double precision,
            height_mm double precision,
            size_text text,
            material text,
            burial text,
            pressure_mpa double precision,
            voltage_kv double precision,
            cables integer,
            holes_total integer,
            holes_used integer,
            casing text,
            flow text,
            built_year integer,
            built text,
            owner text,
            road text,
            remarks text,
            status text NOT NULL DEFAULT 'active'
                CHECK (status IN ('active', 'abandoned', 'planned', 'proposed')),
            depth_reference text NOT NULL CHECK (depth_reference IN ('top', 'invert')),
            from_depth_m double precision,
            to_depth_m double precision,
            from_z double precision NOT NULL,
            to_z double precision NOT NULL,
            length_m double precision NOT NULL,
            geom geometry(LineStringZ, {srid}) NOT NULL,
            {VERSION_COLUMNS},
            CHECK ((shape = 'circular' AND diameter_mm > 0)
                OR (shape = 'rect' AND width_mm > 0 AND height_mm > 0))
        );
        """
    )


def _attachment_tables(srid: int) -> None:
    """The versioned valves, sources and customers (each at a node)."""
    op.execute(
        f"""
        CREATE TABLE valve (
            id text PRIMARY KEY,
            segment_id text NOT NULL,
            node_id text NOT NULL,
            utility text NOT NULL,
            kind text NOT NULL DEFAULT 'isolation',
            operable boolean NOT NULL DEFAULT true,
            normally_closed boolean NOT NULL DEFAULT false,
            geom geometry(PointZ, {srid}) NOT NULL,
            {VERSION_COLUMNS}
        );

        CREATE TABLE source (
            id text PRIMARY KEY,
            node_id text NOT NULL,
            utility text NOT NULL,
            kind text NOT NULL,
            name text,
            geom geometry(PointZ, {srid}) NOT NULL,
            {VERSION_COLUMNS}
        );

        CREATE TABLE customer (
            id text PRIMARY KEY,
            node_id text NOT NULL,
            utility text NOT NULL,
            name text,
            kind text,
            critical boolean NOT NULL DEFAULT false,
            demand double precision,
            geom geometry(PointZ, {srid}) NOT NULL,
            {VERSION_COLUMNS}
        );
        """
    )


def _history_trigger() -> None:
    """The trigger function keeping every replaced or deleted feature row."""
    op.execute(
        """
        -- Every update or delete of a feature keeps the old row in <table>_history.
        CREATE FUNCTION twin_keep_history() RETURNS trigger LANGUAGE plpgsql AS $fn$
        BEGIN
            IF TG_OP = 'UPDATE' THEN
                NEW.version := OLD.version;
                NEW.valid_from := OLD.valid_from;
                IF NEW IS NOT DISTINCT FROM OLD THEN
                    RETURN NULL;  -- nothing changed: no new version
                END IF;
                NEW.version := OLD.version + 1;
                NEW.valid_from := now();
            END IF;
            EXECUTE format('INSERT INTO %I.%I SELECT ($1).*, now(), %L',
                           TG_TABLE_SCHEMA, TG_TABLE_NAME || '_history', lower(TG_OP))
                USING OLD;
            IF TG_OP = 'UPDATE' THEN
                RETURN NEW;
            END IF;
            RETURN OLD;
        END
        $fn$;
        """
    )


def _history_tables_and_views() -> None:
    """Per feature: its history table and trigger, indexes, the current view and ``<t>_as_of``."""
    for t in FEATURES:
        op.execute(
            f"""
            CREATE TABLE {t}_history (LIKE {t});
            ALTER TABLE {t}_history ADD COLUMN valid_to timestamptz NOT NULL,
                                    ADD COLUMN op text NOT NULL;
            CREATE INDEX {t}_history_id_idx ON {t}_history (id, valid_from);
            CREATE TRIGGER {t}_history BEFORE UPDATE OR DELETE ON {t}
                FOR EACH ROW EXECUTE FUNCTION twin_keep_history();
            CREATE INDEX {t}_geom_idx ON {t} USING gist (geom);
            CREATE INDEX {t}_scope_idx ON {t} (scope);
            CREATE VIEW current_{t} AS SELECT * FROM {t} WHERE retired_at IS NULL;
            """
        )
        # The network as it stood at time t: rows valid then, from the table and its
        # history (the history row minus its two trailing columns).
        op.execute(
            f"""
            DO $do$
            DECLARE cols text;
            BEGIN
                SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO cols
                  FROM pg_attribute
                 WHERE attrelid = '{t}'::regclass AND attnum > 0 AND NOT attisdropped;
                EXECUTE format($f$
                    CREATE FUNCTION {t}_as_of(t timestamptz) RETURNS SETOF {t}
                    LANGUAGE sql STABLE AS $body$
                        SELECT %1$s FROM {t}
                         WHERE valid_from <= t AND (retired_at IS NULL OR retired_at > t)
                        UNION ALL
                        SELECT %1$s FROM {t}_history
                         WHERE valid_from <= t AND valid_to > t
                           AND (retired_at IS NULL OR retired_at > t)
                    $body$ $f$, cols);
            END
            $do$;
            """
        )


def _indexes() -> None:
    """Indexes of the 3D geometries and the common look-ups."""
    op.execute(
        """
        CREATE INDEX node_geom_nd_idx ON node USING gist (geom gist_geometry_ops_nd);
        CREATE INDEX segment_geom_nd_idx ON segment USING gist (geom gist_geometry_ops_nd);
        CREATE INDEX segment_from_idx ON segment (from_node);
        CREATE INDEX segment_to_idx ON segment (to_node);
        CREATE INDEX segment_utility_idx ON segment (utility);
        CREATE INDEX valve_segment_idx ON valve (segment_id);
        CREATE INDEX customer_node_idx ON customer (node_id);
        """
    )


def downgrade() -> None:
    for t in FEATURES:
        op.execute(f"DROP TABLE IF EXISTS {t}_history, {t} CASCADE")
    op.execute("DROP FUNCTION IF EXISTS twin_keep_history() CASCADE")
    op.execute("DROP TABLE IF EXISTS batch, twin_meta CASCADE")
