"""The event table partitioned by calendar month (UTC) on PostgreSQL: docs/adr/029-event-partitions.md.

An existing installation's plain table is converted in this one transaction: renamed aside, a partitioned table
of the same columns created under the old name, a partition made for every month from the oldest event to three
months ahead (plus a default partition that should stay empty), every row copied across in one set-based
INSERT ... SELECT that keeps each event's id and txid, the primary key (id, created_at), the indexes and the
audit-trail triggers built on the new table, and the old table dropped. The table is locked for the copy:
stop the web, worker and beat processes first (README, "Upgrading to the partitioned event table").

SQLite keeps its plain table: nothing here runs there."""

from importlib import import_module

from django.db import migrations

EVENT = "migrations_app_event"
OLD = "migrations_app_event_unpartitioned"
MONTHS_AHEAD = 3

# The partition that catches an event outside every month made so far; /healthz says when it holds rows.
# A TRUNCATE of the partitioned table fires each partition's own TRUNCATE trigger as well as the table's, but a
# TRUNCATE of one partition fires only that partition's: every partition gets this one. It honours
# django-pgtrigger's ignore of the table's own TRUNCATE trigger (the test suite's flush) and nothing else.
FUNCTIONS = """
CREATE OR REPLACE FUNCTION portal_event_partition_no_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF "public"._pgtrigger_should_ignore('pgtrigger_event_no_truncate_e2580') IS TRUE THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'the audit trail is append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;

-- Runs as its owner (the migration role, which owns the event table), so the portal's role, which owns
-- nothing, can make next months' partitions from beat. It only ever creates empty tables.
CREATE OR REPLACE FUNCTION portal_event_partitions_ensure(first_month date, months_ahead integer)
RETURNS integer LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
DECLARE
    month date := date_trunc('month', first_month)::date;
    last_month date := (date_trunc('month', (now() AT TIME ZONE 'UTC')) + make_interval(months => months_ahead))::date;
    lower_bound timestamptz;
    upper_bound timestamptz;
    partition text;
    made integer := 0;
BEGIN
    IF months_ahead < 0 OR months_ahead > 120 THEN
        RAISE EXCEPTION 'months_ahead must be between 0 and 120, not %', months_ahead;
    END IF;
    IF to_regclass('public.migrations_app_event_default') IS NULL THEN
        CREATE TABLE migrations_app_event_default PARTITION OF migrations_app_event DEFAULT;
        CREATE TRIGGER event_partition_no_truncate BEFORE TRUNCATE ON migrations_app_event_default
            FOR EACH STATEMENT EXECUTE FUNCTION portal_event_partition_no_truncate();
        made := made + 1;
    END IF;
    WHILE month <= last_month LOOP
        partition := 'migrations_app_event_' || to_char(month, 'YYYY_MM');
        lower_bound := month::timestamp AT TIME ZONE 'UTC';
        upper_bound := (month + interval '1 month')::timestamp AT TIME ZONE 'UTC';
        IF to_regclass('public.' || partition) IS NOT NULL THEN
            NULL;
        ELSIF EXISTS (SELECT 1 FROM migrations_app_event_default
                      WHERE created_at >= lower_bound AND created_at < upper_bound) THEN
            -- the month's events already sit in the default partition: leave it to an operator (README)
            RAISE WARNING 'events of % are in the default partition; % not created', to_char(month, 'YYYY-MM'),
                partition;
        ELSE
            EXECUTE format('CREATE TABLE %I PARTITION OF migrations_app_event FOR VALUES FROM (%L) TO (%L)',
                           partition, lower_bound, upper_bound);
            EXECUTE format('CREATE TRIGGER event_partition_no_truncate BEFORE TRUNCATE ON %I '
                           'FOR EACH STATEMENT EXECUTE FUNCTION portal_event_partition_no_truncate()', partition);
            made := made + 1;
        END IF;
        month := month + interval '1 month';
    END LOOP;
    RETURN made;
END $$;
REVOKE ALL ON FUNCTION portal_event_partitions_ensure(date, integer) FROM PUBLIC;

-- How many events (up to 10,000) sit in the default partition, for /healthz: the portal's role may not read it.
CREATE OR REPLACE FUNCTION portal_event_default_rows() RETURNS bigint LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = public, pg_temp AS $$
BEGIN
    RETURN (SELECT count(*) FROM (SELECT 1 FROM migrations_app_event_default LIMIT 10000) AS d);
END $$;
REVOKE ALL ON FUNCTION portal_event_default_rows() FROM PUBLIC;
"""


def partition(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = %s::regclass", [EVENT])
        if cursor.fetchone()[0] == "p":
            return
        cursor.execute(f"LOCK TABLE {EVENT} IN ACCESS EXCLUSIVE MODE")
        cursor.execute(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), i.indisprimary "
            "FROM pg_index i WHERE i.indrelid = %s::regclass ORDER BY 1",
            [EVENT],
        )
        indexes = cursor.fetchall()
        cursor.execute(
            "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute "
            "WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            [EVENT],
        )
        columns = cursor.fetchone()[0]
        cursor.execute(
            f"SELECT greatest(coalesce(max(id), 0), coalesce(pg_sequence_last_value("
            f"pg_get_serial_sequence('{EVENT}', 'id')), 0)), min(created_at) FROM {EVENT}"
        )
        last_id, oldest = cursor.fetchone()

        # the old table, its indexes and its identity sequence out of the way of the new names
        for name, _definition, _primary in indexes:
            cursor.execute(f"ALTER INDEX {name} RENAME TO {name[:55]}_old")
        cursor.execute(f"ALTER TABLE {EVENT} RENAME TO {OLD}")
        cursor.execute(f"ALTER TABLE {OLD} ALTER id DROP IDENTITY IF EXISTS")

        cursor.execute(
            f"CREATE TABLE {EVENT} (LIKE {OLD} INCLUDING DEFAULTS INCLUDING CONSTRAINTS) "
            "PARTITION BY RANGE (created_at)"
        )
        # one sequence for every partition: ids stay unique across the table (ADR 029)
        cursor.execute(f"CREATE SEQUENCE {EVENT}_id_seq AS bigint OWNED BY {EVENT}.id")
        if last_id:
            cursor.execute(f"SELECT setval('{EVENT}_id_seq', %s)", [last_id])
        cursor.execute(f"ALTER TABLE {EVENT} ALTER id SET DEFAULT nextval('{EVENT}_id_seq')")
        cursor.execute(FUNCTIONS)
        cursor.execute(
            "SELECT portal_event_partitions_ensure(coalesce(%s, now())::date, %s)", [oldest, MONTHS_AHEAD]
        )
        # set-based, ids and txids kept: the feed's order and every webhook cursor stay valid
        cursor.execute(f"INSERT INTO {EVENT} ({columns}) SELECT {columns} FROM {OLD}")
        cursor.execute(f"DROP TABLE {OLD}")

        # the primary key must hold the partition key; `id` alone is unique by the shared sequence
        cursor.execute(f"ALTER TABLE {EVENT} ADD CONSTRAINT {EVENT}_pkey PRIMARY KEY (id, created_at)")
        for _name, definition, primary in indexes:
            if not primary:
                cursor.execute(definition)  # its original name and table: now the partitioned table's
        protection = import_module("migrations_app.migrations.0016_event_protection_triggers")
        for operation in protection.Migration.operations:
            if hasattr(operation, "trigger"):
                cursor.execute(operation.trigger.install_sql)
        cursor.execute(f"ANALYZE {EVENT}")


class Migration(migrations.Migration):
    dependencies = [("migrations_app", "0022_merge_notify_reliability")]

    operations = [
        # Not reversed: a partitioned table with the same columns serves the older code as well.
        migrations.RunPython(partition, migrations.RunPython.noop, elidable=False),
    ]
