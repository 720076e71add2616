"""Migrations that touch full production tables must not lock them against writes for the length of a scan
(ADR 029): indexes on the mailbox and event tables are built CONCURRENTLY on PostgreSQL, and check constraints
are added NOT VALID and validated in a step of their own. Checked for the two migrations rewritten to that
pattern and for every migration from MARKER on."""

import io

import pytest
from django.apps import apps as global_apps
from django.core.management import call_command
from django.db import connection, models
from django.db.migrations import operations as ops
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.state import ProjectState

from migrations_app.migration_ops import AddCheckConstraintSafely, AddIndexSafely

MARKER = "0023"
REWRITTEN = {"0010_event_txid_feed_horizon", "0017_state_constraints"}
BIG_TABLES = {"mailbox", "event"}


def _guarded_migrations():
    loader = MigrationLoader(None, ignore_no_migrations=True)
    for (app, name), migration in sorted(loader.disk_migrations.items()):
        if app == "migrations_app" and (name >= MARKER or name in REWRITTEN):
            yield name, migration


def _problems(name, migration) -> list[str]:
    found = []
    for op in migration.operations:
        model = getattr(op, "model_name", "")
        if isinstance(op, ops.AddIndex) and not isinstance(op, AddIndexSafely) and model in BIG_TABLES:
            found.append(f"{name}: index {op.index.name} on {model} built with the table locked")
        check = isinstance(op, ops.AddConstraint) and isinstance(op.constraint, models.CheckConstraint)
        if check and not isinstance(op, AddCheckConstraintSafely):
            found.append(f"{name}: constraint {op.constraint.name} checked with the table locked")
        indexed = isinstance(op, ops.AddField) and (op.field.db_index or op.field.unique)
        if indexed and model in BIG_TABLES:
            found.append(f"{name}: {model}.{op.name} indexed with the table locked (use AddIndexSafely)")
        if isinstance(op, (AddIndexSafely, AddCheckConstraintSafely)) and migration.atomic:
            found.append(f"{name}: {type(op).__name__} needs atomic = False")
    return found


def test_no_migration_after_the_marker_locks_a_big_table_for_a_scan():
    guarded = list(_guarded_migrations())
    assert {name for name, _ in guarded} >= REWRITTEN
    assert [p for name, migration in guarded for p in _problems(name, migration)] == []


def test_the_check_finds_a_plain_index_on_the_mailbox_table():
    class Careless:
        atomic = True
        operations = [ops.AddIndex("mailbox", models.Index(fields=["email"], name="careless_idx"))]

    assert _problems("0099_careless", Careless) == [
        "0099_careless: index careless_idx on mailbox built with the table locked"
    ]


def test_the_constraints_go_in_not_valid_then_are_validated(postgres):
    out = io.StringIO()
    call_command("sqlmigrate", "migrations_app", "0017_state_constraints", stdout=out)
    sql = [line for line in out.getvalue().splitlines() if not line.startswith("--")]
    added = [line for line in sql if "ADD CONSTRAINT" in line]
    validated = [line for line in sql if "VALIDATE CONSTRAINT" in line]
    assert added and all(line.endswith("NOT VALID;") for line in added)
    assert len(validated) == len(added) and sql.index(validated[0]) > sql.index(added[-1])
    out = io.StringIO()
    call_command("sqlmigrate", "migrations_app", "0010_event_txid_feed_horizon", stdout=out)
    assert "CREATE INDEX CONCURRENTLY" in out.getvalue()


@pytest.mark.django_db(transaction=True)
def test_an_index_on_the_partitioned_event_table_is_built_partition_by_partition(postgres):
    index = models.Index(fields=["action", "created_at"], name="event_safety_test_idx")
    op = AddIndexSafely("event", index)
    state = ProjectState.from_apps(global_apps)
    after = state.clone()
    op.state_forwards("migrations_app", after)
    try:
        with connection.schema_editor(atomic=False) as editor:
            op.database_forwards("migrations_app", editor, state, after)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT i.indisvalid, (SELECT count(*) FROM pg_inherits WHERE inhparent = i.indexrelid),"
                " (SELECT count(*) FROM pg_inherits WHERE inhparent = 'migrations_app_event'::regclass)"
                " FROM pg_index i WHERE i.indexrelid = 'event_safety_test_idx'::regclass"
            )
            valid, attached, partitions = cursor.fetchone()
        assert valid and attached == partitions > 1
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX IF EXISTS event_safety_test_idx")
