"""Least privilege on PostgreSQL: the portal runs as a role that owns nothing, so it cannot drop or alter the
audit trail's triggers, and is granted no UPDATE, DELETE or TRUNCATE on the event table at all. A separate
migration role owns the schema and runs `migrate` (README, "Database roles")."""

import re

from django.db import connection

from migrations_app.models import Event

ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def app_role_statements(*, role: str) -> list[str]:
    """The GRANTs that let `role` run the portal: read and write every table of the schema except the event
    table, which it may only read and append to; use every sequence. On a partitioned event table the role gets
    nothing on the partitions themselves (reads and inserts through the table need no more), and may call the
    function that makes the coming months' partitions (services/event_partitions.py)."""
    if not ROLE_NAME.fullmatch(role):
        raise ValueError(f"Not a plain role name: {role!r} (lower-case letters, digits and _)")
    quoted, events = connection.ops.quote_name(role), connection.ops.quote_name(Event._meta.db_table)
    return [
        f"GRANT USAGE ON SCHEMA public TO {quoted}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {quoted}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}",
        f"REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {events} FROM {quoted}",
        # "ALL TABLES" took in the existing partitions: nothing on them directly (a plain table: no rows here)
        "DO $$ DECLARE p regclass; BEGIN"
        f" FOR p IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = '{events}'::regclass LOOP"
        f" EXECUTE format('REVOKE ALL ON %s FROM %I', p, '{role}'); END LOOP;"
        " IF to_regprocedure('portal_event_partitions_ensure(date, integer)') IS NOT NULL THEN"
        f" GRANT EXECUTE ON FUNCTION portal_event_partitions_ensure(date, integer), portal_event_default_rows()"
        f" TO {quoted}; END IF; END $$",
    ]


def app_role_grant(*, role: str) -> list[str]:
    """Run app_role_statements as the migration role (after every `migrate`: new tables need their grants).
    Refuses a role that owns any of the portal's tables: it could drop the triggers."""
    if connection.vendor != "postgresql":
        raise ValueError("Database roles apply to PostgreSQL only")
    statements = app_role_statements(role=role)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
        if cursor.fetchone() is None:
            raise ValueError(f"No database role {role!r}: create it first (README, Database roles)")
        cursor.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND pg_get_userbyid(c.relowner) = %s "
            "ORDER BY c.relname LIMIT 5",
            [role],
        )
        owned = [name for (name,) in cursor.fetchall()]
        if owned:
            raise ValueError(
                f"{role!r} owns {', '.join(owned)}: the portal's role must own nothing "
                "(run migrate as the migration role, which owns the tables)"
            )
        for statement in statements:
            cursor.execute(statement)
    return statements
