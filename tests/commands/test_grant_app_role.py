"""README's "Database roles" block run as written against a fresh database (role names made unique, since roles
belong to the whole PostgreSQL cluster): the portal's role can do the portal's work but cannot UPDATE,
DELETE or TRUNCATE the audit trail, switch its triggers off or drop them; the migration role, which owns the
table, is refused by the triggers."""

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from tests.test_readme import readme_example

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh_cluster_names(postgres):
    """A database and the two roles, named for this run, dropped afterwards."""
    suffix = uuid.uuid4().hex[:8]
    names = {
        "db": f"portal_roles_{suffix}",
        "migrator": f"portal_migrator_{suffix}",
        "app": f"portal_app_{suffix}",
    }
    yield names
    s = connection.settings_dict
    with psycopg.connect(
        dbname="postgres", user=s["USER"], host=s["HOST"], port=s["PORT"] or 5432, autocommit=True
    ) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {names['db']} WITH (FORCE)")
        admin.execute(f"DROP ROLE IF EXISTS {names['app']}")
        admin.execute(f"DROP ROLE IF EXISTS {names['migrator']}")


def _session(names: dict, role: str) -> psycopg.Connection:
    s = connection.settings_dict
    return psycopg.connect(
        dbname=names["db"], user=names[role], password="pw-" + role, host=s["HOST"], port=s["PORT"] or 5432
    )


def _refused(session: psycopg.Connection, sql: str) -> str:
    with pytest.raises(psycopg.Error) as caught:
        session.execute(sql)
    session.rollback()
    return str(caught.value)


def test_the_readme_database_roles_block(fresh_cluster_names):
    names = fresh_cluster_names
    s = connection.settings_dict
    host = f"{s['HOST']}:{s['PORT'] or 5432}"
    block = readme_example("database-roles")
    block = re.sub(r"\bportal_migrator\b", names["migrator"], block)
    block = re.sub(r"\bportal_app\b", names["app"], block)
    env = {
        # the commands run as an operator would: not under the test profile (which refuses to start outside pytest)
        **{k: v for k, v in os.environ.items() if k not in {"PORTAL_TESTING", "CELERY_TASK_ALWAYS_EAGER"}},
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DEBUG": "1",
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "ADMIN_DATABASE_URL": f"postgres://{s['USER']}@{host}/postgres",
        "MIGRATOR_PASSWORD": "pw-migrator",
        "APP_PASSWORD": "pw-app",
        "DB": names["db"],
        "DB_HOST": host,
    }
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "REVOKE UPDATE, DELETE, TRUNCATE" in done.stdout

    with _session(names, "app") as app:
        # the portal's work: append to the trail, read it, change a mailbox
        app.execute(
            "INSERT INTO migrations_app_event (created_at, action, subject, from_state, to_state, message, data) VALUES (now(), 'test.recorded', '', '', '', '', '{}')"
        )
        app.execute("UPDATE migrations_app_mailbox SET attempts = 0 WHERE false")
        assert app.execute("SELECT count(*) FROM migrations_app_event").fetchone()[0] == 1
        app.commit()
        for sql in (
            "UPDATE migrations_app_event SET message = 'rewritten'",
            "DELETE FROM migrations_app_event",
            "TRUNCATE migrations_app_event",
        ):
            assert "permission denied" in _refused(app, sql)
        # switching the triggers off for the session does not help: the grant is missing
        app.execute("SET pgtrigger.ignore = '{pgtrigger_event_append_only_3e039}'")
        assert "permission denied" in _refused(app, "UPDATE migrations_app_event SET message = 'rewritten'")
        assert "must be owner" in _refused(
            app, "DROP TRIGGER pgtrigger_event_append_only_3e039 ON migrations_app_event"
        )
        assert "must be owner" in _refused(app, "ALTER TABLE migrations_app_event DISABLE TRIGGER ALL")

        # the monthly partitions: nothing on them directly, but beat's function makes the coming months
        month = app.execute("SELECT 'migrations_app_event_' || to_char(now() AT TIME ZONE 'UTC', 'YYYY_MM')")
        month = month.fetchone()[0]
        for sql in (
            f"UPDATE {month} SET message = 'rewritten'",
            f"TRUNCATE {month}",
            "TRUNCATE migrations_app_event_default",
            f"ALTER TABLE migrations_app_event DETACH PARTITION {month}",
        ):
            assert "permission denied" in _refused(app, sql) or "must be owner" in _refused(app, sql)
        assert app.execute("SELECT portal_event_partitions_ensure(current_date, 6)").fetchone()[0] >= 1
        assert app.execute("SELECT portal_event_default_rows()").fetchone()[0] == 0
        app.commit()

    with _session(names, "migrator") as owner:
        for sql in (
            "UPDATE migrations_app_event SET message = 'x'",
            "DELETE FROM migrations_app_event",
            "TRUNCATE migrations_app_event",
        ):
            assert "append-only" in _refused(owner, sql)
        assert "append-only" in _refused(owner, "TRUNCATE migrations_app_event_default")
        # the partitions beat made through the function belong to the migration role, not the portal's
        owners = owner.execute(
            "SELECT DISTINCT pg_get_userbyid(c.relowner) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = 'migrations_app_event'::regclass"
        ).fetchall()
        assert owners == [(names["migrator"],)]
        assert owner.execute("SELECT message FROM migrations_app_event").fetchall() == [("",)]

    # the portal's role must own nothing: the command refuses the migration role
    refused = subprocess.run(
        [sys.executable, "manage.py", "grant_app_role", names["migrator"]],
        cwd=ROOT,
        env={**env, "DATABASE_URL": f"postgres://{names['migrator']}:pw-migrator@{host}/{names['db']}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0 and "must own nothing" in refused.stderr


def test_it_refuses_a_role_name_that_is_not_plain(postgres):
    from migrations_app.services.db_roles import app_role_statements

    with pytest.raises(ValueError, match="plain role name"):
        app_role_statements(role='portal"; DROP TABLE x; --')
