"""The audit trail is append-only: on PostgreSQL a trigger refuses UPDATE and DELETE on the event table."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION portal_event_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only: %% on migrations_app_event refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER event_append_only BEFORE UPDATE OR DELETE ON migrations_app_event
    FOR EACH ROW EXECUTE FUNCTION portal_event_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS event_append_only ON migrations_app_event;
DROP FUNCTION IF EXISTS portal_event_append_only();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("migrations_app", "0001_initial")]
    operations = [migrations.RunPython(forwards, backwards)]
