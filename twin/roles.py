"""The twin's two database roles, and what the application role may do in a twin's schema.

The *application role* (``twin_app`` on the private cluster, the role ``TWIN_DATABASE_URL``
names otherwise) is what the server and the commands connect as; the *admin role* (the
private cluster's superuser, or ``TWIN_DATABASE_ADMIN_URL``) creates schemas and PostGIS,
migrates, backs up and restores. With one role for both, there is nothing to separate.
"""

from __future__ import annotations

from twin.errors import ConfigError

__all__ = ["APP_ROLE", "privileges_sql"]

#: The application role of the private cluster.
APP_ROLE = "twin_app"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def privileges_sql(schema: str, role: str) -> str:
    """SQL run by the admin role that leaves the twin in ``schema`` as the application ``role``
    may use it, changing only what differs (no lock is taken when all is in order):

    * the schema stays the admin's; the role may use it and create in it (an import rebuilds
      indexes), but it cannot drop or rename it, nor anything it does not own;
    * the role owns every table, view and sequence, except two that stay the admin's:
    * ``audit_log``: the role may read it and add entries, naming neither ``id`` nor ``at``
      (their defaults stand); it cannot change, delete, truncate, alter or drop an entry;
    * ``alembic_version``: the role may read it.

    Run by the application role itself (one role for both), it changes nothing.
    """
    if not schema.isidentifier():
        raise ConfigError(f"schema name {schema!r} is not a plain identifier",
                          zh=f"模式名 {schema!r} 不是普通标识符")
    return f"""
DO $pipetwin$
DECLARE
  s name := {_literal(schema)};
  app name := {_literal(role)};
  q text := quote_ident({_literal(schema)});
  a text := quote_ident({_literal(role)});
  me oid := (SELECT oid FROM pg_roles WHERE rolname = current_user);
  app_oid oid := (SELECT oid FROM pg_roles WHERE rolname = {_literal(role)});
  audit regclass := to_regclass(q || '.audit_log');
  revision regclass := to_regclass(q || '.alembic_version');
  seq text;
  cols text;
  r record;
BEGIN
  IF app = current_user THEN
    RETURN;  -- one role for the server and the admin: nothing to separate
  END IF;
  IF app_oid IS NULL THEN
    RAISE EXCEPTION 'the application role % does not exist', app;
  END IF;
  IF (SELECT nspowner FROM pg_namespace WHERE nspname = s) <> me THEN
    EXECUTE 'ALTER SCHEMA ' || q || ' OWNER TO CURRENT_USER';
  END IF;
  IF NOT (has_schema_privilege(app, s, 'USAGE') AND has_schema_privilege(app, s, 'CREATE')) THEN
    EXECUTE 'GRANT USAGE, CREATE ON SCHEMA ' || q || ' TO ' || a;
  END IF;
  FOR r IN
    SELECT c.oid::regclass AS rel, CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
           WHEN 'S' THEN 'SEQUENCE' WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END AS kind
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = s AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND c.relowner <> app_oid
      AND c.oid NOT IN (coalesce(audit, 0), coalesce(revision, 0))
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                      AND d.objid = c.oid AND d.objsubid = 0 AND d.deptype IN ('a', 'i'))  -- a column's sequence (a partition key column depends on its own table: objsubid <> 0)
  LOOP
    EXECUTE 'ALTER ' || r.kind || ' ' || r.rel::text || ' OWNER TO ' || a;
  END LOOP;
  IF revision IS NOT NULL AND ((SELECT relowner FROM pg_class WHERE oid = revision) <> me
      OR NOT has_table_privilege(app, revision, 'SELECT')
      OR has_any_column_privilege(app, revision, 'INSERT, UPDATE, REFERENCES')
      OR has_table_privilege(app, revision, 'DELETE, TRUNCATE, TRIGGER')) THEN
    EXECUTE 'ALTER TABLE ' || revision::text || ' OWNER TO CURRENT_USER';
    EXECUTE 'REVOKE ALL ON ' || revision::text || ' FROM PUBLIC, ' || a;
    EXECUTE 'GRANT SELECT ON ' || revision::text || ' TO ' || a;
  END IF;
  IF audit IS NOT NULL THEN
    seq := pg_get_serial_sequence(audit::text, 'id');
    SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO cols FROM pg_attribute
      WHERE attrelid = audit AND attnum > 0 AND NOT attisdropped AND attname NOT IN ('id', 'at');
    IF (SELECT relowner FROM pg_class WHERE oid = audit) <> me
        OR NOT has_table_privilege(app, audit, 'SELECT')
        OR has_table_privilege(app, audit, 'INSERT, DELETE, TRUNCATE, TRIGGER')
        OR has_any_column_privilege(app, audit, 'UPDATE, REFERENCES')
        OR has_column_privilege(app, audit, 'id', 'INSERT') OR has_column_privilege(app, audit, 'at', 'INSERT')
        OR EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = audit AND attnum > 0 AND NOT attisdropped
                   AND attname NOT IN ('id', 'at') AND NOT has_column_privilege(app, audit, attnum, 'INSERT'))
        OR (seq IS NOT NULL AND NOT has_sequence_privilege(app, seq, 'USAGE')) THEN
      EXECUTE 'ALTER TABLE ' || audit::text || ' OWNER TO CURRENT_USER';
      EXECUTE 'REVOKE ALL ON ' || audit::text || ' FROM PUBLIC, ' || a;
      EXECUTE 'GRANT SELECT, INSERT (' || cols || ') ON ' || audit::text || ' TO ' || a;
      IF seq IS NOT NULL THEN
        EXECUTE 'GRANT USAGE ON SEQUENCE ' || seq || ' TO ' || a;
      END IF;
    END IF;
  END IF;
END
$pipetwin$;
"""
