"""Proposals keep their geometry in the twin CRS, and may be withdrawn.

``proposal.geom`` is the proposal as submitted, transformed into the twin CRS by the Python
that checks it (``analysis.proposal_input.proposal_geometry``) at submission and at every
re-check; the features API serves it as it is, with no CRS guessed in SQL. The column is a
plain ``geometry`` held to the twin's SRID by a CHECK: a proposal given with heights keeps
them, one without stays 2D (a typed column is either 2D or 3D, and inventing z = 0 would
draw a pipe at sea level).

Existing rows are filled here where the CRS they name (or do not name) is unambiguous: none
(lon/lat if the coordinates look so, else the twin CRS: RFC 7946 and the check's own rule),
``EPSG:n``, its URN or URI, or CRS84. A row whose CRS is named any other way, or whose
geometry cannot be read or transformed, keeps NULL (served without a geometry) until its
next re-check stores it.

``status`` may also be ``withdrawn`` (its submitter or an admin took it back).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

STATUSES = "'new', 'reviewed', 'approved', 'rejected'"

# The SRID of a CRS name written in one of the unambiguous forms, else NULL.
_NAMED_SRID = r"""
CREATE FUNCTION pg_temp.proposal_named_srid(name text) RETURNS integer LANGUAGE sql IMMUTABLE AS $fn$
    SELECT CASE
        WHEN name ~* '^(OGC:CRS84|CRS:84|urn:ogc:def:crs:OGC:1\.3:CRS84|https?://www\.opengis\.net/def/crs/OGC/1\.3/CRS84)$'
            THEN 4326
        WHEN name ~* '^(EPSG:|urn:ogc:def:crs:EPSG:[0-9.]*:|https?://www\.opengis\.net/def/crs/EPSG/0/)[0-9]{1,9}$'
            THEN (SELECT s.srid FROM spatial_ref_sys s WHERE s.srid = substring(name FROM '([0-9]+)$')::int)
    END
$fn$;
"""

# Each row's features in the twin CRS, collected as analysis.proposal_input.proposal_geometry does;
# a row that cannot be read or transformed keeps NULL.
_BACKFILL = r"""
DO $do$
DECLARE
    p record;
    in_twin geometry;
BEGIN
    FOR p IN SELECT id, geojson FROM proposal LOOP
        BEGIN
            WITH feature AS (
                SELECT ST_GeomFromGeoJSON((e.f -> 'geometry') - 'crs') AS g,
                       coalesce(pg_temp.proposal_crs_name(e.f), pg_temp.proposal_crs_name(p.geojson)) AS name
                  FROM jsonb_array_elements(CASE p.geojson ->> 'type'
                           WHEN 'FeatureCollection' THEN p.geojson -> 'features'
                           WHEN 'Feature' THEN jsonb_build_array(p.geojson)
                           ELSE jsonb_build_array(jsonb_build_object('geometry', p.geojson)) END) AS e(f)
                 WHERE jsonb_typeof(e.f -> 'geometry') = 'object'
            ), located AS (
                SELECT g, CASE
                    WHEN name IS NOT NULL THEN pg_temp.proposal_named_srid(name)
                    WHEN ST_XMin(g) >= -180 AND ST_XMax(g) <= 180 AND ST_YMin(g) >= -90 AND ST_YMax(g) <= 90
                        THEN 4326
                    ELSE {srid} END AS srid
                  FROM feature
            ), twin AS (
                SELECT ST_Transform(ST_SetSRID(g, srid), {srid}) AS g FROM located
            )
            SELECT CASE
                       WHEN (SELECT count(*) FROM located WHERE srid IS NULL) > 0 THEN NULL
                       WHEN count(*) = 1 THEN (array_agg(g))[1]
                       WHEN bool_and(ST_NDims(g) = 3) THEN ST_Collect(g)
                       ELSE ST_Collect(ST_Force2D(g)) END
              INTO in_twin FROM twin;
            UPDATE proposal SET geom = in_twin WHERE id = p.id;
        EXCEPTION WHEN OTHERS THEN
            RAISE NOTICE USING MESSAGE = 'proposal ' || p.id || ': geometry left empty (' || SQLERRM || ')';
        END;
    END LOOP;
END
$do$;
"""

_CRS_NAME = r"""
CREATE FUNCTION pg_temp.proposal_crs_name(o jsonb) RETURNS text LANGUAGE sql IMMUTABLE AS $fn$
    SELECT CASE jsonb_typeof(o -> 'crs') WHEN 'string' THEN o ->> 'crs'
           ELSE coalesce(o #>> '{crs,properties,name}', o -> 'properties' ->> 'crs') END
$fn$;
"""


def upgrade() -> None:
    # exec_driver_sql: the CRS patterns hold colons text() would read as bind parameters
    conn = op.get_bind()
    srid = int(conn.exec_driver_sql("SELECT value FROM twin_meta WHERE key = 'srid'").scalar())
    conn.exec_driver_sql(
        f"""
        ALTER TABLE proposal
            ADD COLUMN geom geometry CONSTRAINT proposal_geom_srid CHECK (ST_SRID(geom) = {srid}),
            DROP CONSTRAINT proposal_status_check,
            ADD CONSTRAINT proposal_status_check CHECK (status IN ({STATUSES}, 'withdrawn'));
        """
    )
    conn.exec_driver_sql(_CRS_NAME)
    conn.exec_driver_sql(_NAMED_SRID)
    conn.exec_driver_sql(_BACKFILL.replace("{srid}", str(srid)))
    conn.exec_driver_sql(
        """
        DROP FUNCTION pg_temp.proposal_named_srid(text);
        DROP FUNCTION pg_temp.proposal_crs_name(jsonb);
        CREATE INDEX proposal_geom_idx ON proposal USING gist (geom);
        """
    )


def downgrade() -> None:
    # a withdrawn proposal becomes rejected (its event log still says it was withdrawn)
    op.execute(
        f"""
        UPDATE proposal SET status = 'rejected' WHERE status = 'withdrawn';
        ALTER TABLE proposal
            DROP CONSTRAINT proposal_status_check,
            ADD CONSTRAINT proposal_status_check CHECK (status IN ({STATUSES})),
            DROP COLUMN geom;
        """
    )
