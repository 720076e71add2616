"""Migration operations that do not lock a full production table for the length of a scan (ADR 029).

- AddIndexSafely: CREATE INDEX CONCURRENTLY on PostgreSQL (writes go on while it builds); on a partitioned table,
  which cannot take CONCURRENTLY, the index is made on the parent alone (ON ONLY, instant), then concurrently on
  each partition and attached, after which the parent's index is valid. Needs `atomic = False` on the migration.
- AddCheckConstraintSafely + ValidateConstraintSafely: the constraint added NOT VALID (a brief lock, no scan:
  new rows are checked at once), then validated in its own step (a scan that lets reads and writes go on). Put
  the validations after every addition in a migration with `atomic = False`, so each commits on its own:
  inside one transaction the ACCESS EXCLUSIVE lock of the addition would be held through the scan anyway.

SQLite (the fresh-machine default) gets the plain operations: one process, nothing to keep waiting."""

from django.contrib.postgres.operations import AddConstraintNotValid, ValidateConstraint
from django.db import NotSupportedError
from django.db.migrations.operations import AddConstraint, AddIndex


def _postgres(schema_editor) -> bool:
    return schema_editor.connection.vendor == "postgresql"


class AddIndexSafely(AddIndex):
    atomic = False

    def describe(self):
        return f"Create index {self.index.name} on {self.model_name} (concurrently on PostgreSQL)"

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if not _postgres(schema_editor):
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        if schema_editor.connection.in_atomic_block and not schema_editor.collect_sql:
            raise NotSupportedError(f"{self.describe()}: set atomic = False on the migration")
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        table = model._meta.db_table
        partitions = _partitions(schema_editor, table)
        if partitions is None:
            schema_editor.add_index(model, self.index, concurrently=True)
            return
        quote = schema_editor.quote_name
        parent_sql = str(self.index.create_sql(model, schema_editor))
        schema_editor.execute(parent_sql.replace(f" ON {quote(table)} ", f" ON ONLY {quote(table)} ", 1))
        child_sql = str(self.index.create_sql(model, schema_editor, concurrently=True))
        for partition in partitions:
            name = f"{partition}_{self.index.name}"[:63]
            sql = child_sql.replace(quote(self.index.name), quote(name), 1)
            schema_editor.execute(sql.replace(f" ON {quote(table)} ", f" ON {quote(partition)} ", 1))
            schema_editor.execute(f"ALTER INDEX {quote(self.index.name)} ATTACH PARTITION {quote(name)}")

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        model = from_state.apps.get_model(app_label, self.model_name)
        if _postgres(schema_editor) and _partitions(schema_editor, model._meta.db_table) is None:
            if self.allow_migrate_model(schema_editor.connection.alias, model):
                schema_editor.remove_index(model, self.index, concurrently=True)
            return
        super().database_backwards(app_label, schema_editor, from_state, to_state)


def _partitions(schema_editor, table: str) -> list[str] | None:
    """The partitions of `table` (None if it is a plain table) that have no index attached yet."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = %s::regclass", [table])
        if cursor.fetchone()[0] != "p":
            return None
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = %s::regclass ORDER BY c.relname",
            [table],
        )
        return [name for (name,) in cursor.fetchall()]


class AddCheckConstraintSafely(AddConstraint):
    def describe(self):
        return f"Create constraint {self.constraint.name} on {self.model_name} (NOT VALID on PostgreSQL)"

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if _postgres(schema_editor):
            not_valid = AddConstraintNotValid(self.model_name, self.constraint)
            return not_valid.database_forwards(app_label, schema_editor, from_state, to_state)
        return super().database_forwards(app_label, schema_editor, from_state, to_state)


class ValidateConstraintSafely(ValidateConstraint):
    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if _postgres(schema_editor):
            super().database_forwards(app_label, schema_editor, from_state, to_state)
