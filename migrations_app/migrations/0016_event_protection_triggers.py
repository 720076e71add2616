"""The audit trail's protection, declared on the model with django-pgtrigger: UPDATE and DELETE (row trigger)
and TRUNCATE (statement trigger) refused. Replaces 0002's hand-written row trigger, which let TRUNCATE through."""

import pgtrigger.compiler
import pgtrigger.migrations
from django.db import migrations

DROP = """
DROP TRIGGER IF EXISTS event_append_only ON migrations_app_event;
DROP FUNCTION IF EXISTS portal_event_append_only();
"""


def drop_hand_written_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


def restore_hand_written_trigger(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        from importlib import import_module

        schema_editor.execute(import_module("migrations_app.migrations.0002_event_append_only").CREATE)


class Migration(migrations.Migration):
    dependencies = [
        ("migrations_app", "0015_merged_mailbox_states"),
    ]

    operations = [
        migrations.RunPython(drop_hand_written_trigger, restore_hand_written_trigger),
        pgtrigger.migrations.AddTrigger(
            model_name="event",
            trigger=pgtrigger.compiler.Trigger(
                name="event_append_only",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    func="RAISE EXCEPTION 'the audit trail is append-only: % on % refused', TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';",
                    hash="8a451ed06ea343b67d7541df052d918f69688c9f",
                    operation="UPDATE OR DELETE",
                    pgid="pgtrigger_event_append_only_3e039",
                    table="migrations_app_event",
                    when="BEFORE",
                ),
            ),
        ),
        pgtrigger.migrations.AddTrigger(
            model_name="event",
            trigger=pgtrigger.compiler.Trigger(
                name="event_no_truncate",
                sql=pgtrigger.compiler.UpsertTriggerSql(
                    func="RAISE EXCEPTION 'the audit trail is append-only: % on % refused', TG_OP, TG_TABLE_NAME USING ERRCODE = 'insufficient_privilege';",
                    hash="4e1217156de86f751713bac2847ac8f90b196671",
                    level="STATEMENT",
                    operation="TRUNCATE",
                    pgid="pgtrigger_event_no_truncate_e2580",
                    table="migrations_app_event",
                    when="BEFORE",
                ),
            ),
        ),
    ]
