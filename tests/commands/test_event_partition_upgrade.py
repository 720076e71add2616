"""Upgrading an installation whose event table is a plain table (migrations up to 0022): `migrate` converts it
to the monthly partitioned table in place. Every event keeps its id, its txid (the feed's order, the webhook
cursors) and its contents, lands in its month's partition, new events carry on after the highest id, and the
audit trail's protection holds on the new table and each partition."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh_database(postgres):
    name = f"portal_upgrade_{uuid.uuid4().hex[:8]}"
    s = connection.settings_dict
    admin = {"user": s["USER"], "host": s["HOST"], "port": s["PORT"] or 5432, "autocommit": True}
    with psycopg.connect(dbname="postgres", **admin) as session:
        session.execute(f"CREATE DATABASE {name}")
    yield name
    with psycopg.connect(dbname="postgres", **admin) as session:
        session.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _migrate(database: str, *target: str) -> None:
    s = connection.settings_dict
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"PORTAL_TESTING", "CELERY_TASK_ALWAYS_EAGER"}},
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DEBUG": "1",
        "DATABASE_URL": f"postgres://{s['USER']}@{s['HOST']}:{s['PORT'] or 5432}/{database}",
    }
    done = subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0", *target],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _refused(session: psycopg.Connection, sql: str) -> str:
    with pytest.raises(psycopg.Error) as caught:
        session.execute(sql)
    session.rollback()
    return str(caught.value)


def test_migrate_converts_a_plain_event_table_keeping_every_event(fresh_database):
    _migrate(fresh_database, "migrations_app", "0022_merge_notify_reliability")
    s = connection.settings_dict
    with psycopg.connect(dbname=fresh_database, user=s["USER"], host=s["HOST"], port=s["PORT"] or 5432) as db:
        assert db.execute(
            "SELECT relkind FROM pg_class WHERE relname = 'migrations_app_event'"
        ).fetchone() == ("r",)
        db.execute(
            "INSERT INTO migrations_app_event (created_at, action, subject, from_state, to_state, message, data)"
            " SELECT now() - g * interval '40 days', 'test.before-upgrade', 'm' || g, '', '', '', '{\"n\": 1}'"
            " FROM generate_series(0, 11) AS g"
        )
        db.commit()
        before = db.execute(
            "SELECT id, txid, created_at, subject, data FROM migrations_app_event ORDER BY id"
        ).fetchall()

    _migrate(fresh_database)

    with psycopg.connect(dbname=fresh_database, user=s["USER"], host=s["HOST"], port=s["PORT"] or 5432) as db:
        assert db.execute(
            "SELECT relkind FROM pg_class WHERE relname = 'migrations_app_event'"
        ).fetchone() == ("p",)
        after = db.execute("SELECT id, txid, created_at, subject, data FROM migrations_app_event ORDER BY id")
        assert after.fetchall() == before
        months = db.execute(
            "SELECT count(DISTINCT tableoid) FROM migrations_app_event WHERE tableoid::regclass::text"
            " <> 'migrations_app_event_default'"
        ).fetchone()[0]
        assert months == len({row[2].strftime("%Y-%m") for row in before}) >= 10
        new_id = db.execute(
            "INSERT INTO migrations_app_event (created_at, action, subject, from_state, to_state, message, data)"
            " VALUES (now(), 'test.after-upgrade', '', '', '', '', '{}') RETURNING id"
        ).fetchone()[0]
        db.commit()
        assert new_id == before[-1][0] + 1
        assert "append-only" in _refused(db, "UPDATE migrations_app_event SET message = 'x'")
        assert "append-only" in _refused(db, "DELETE FROM migrations_app_event")
        assert "append-only" in _refused(db, "TRUNCATE migrations_app_event")
        oldest = db.execute("SELECT min(tableoid::regclass::text) FROM migrations_app_event").fetchone()[0]
        assert "append-only" in _refused(db, f"TRUNCATE {oldest}")
        assert db.execute("SELECT count(*) FROM migrations_app_event").fetchone()[0] == len(before) + 1
