"""Settings come from the environment; production refuses to start insecure; check --deploy is clean."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from portal.env import env_bool, env_int

ROOT = Path(__file__).resolve().parent.parent


def _manage(*args: str, env: dict) -> subprocess.CompletedProcess:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DEBUG", "SECRET_KEY", "PORTAL_TESTING", "CELERY_TASK_ALWAYS_EAGER"}
    }
    base.update({"DJANGO_SETTINGS_MODULE": "portal.settings", **env})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=base, capture_output=True, text=True, timeout=120
    )


PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "x" * 20 + "-production-secret-key-with-enough-entropy-8f3k2j",
    "PORTAL_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    "ALLOWED_HOSTS": "portal.example.nhs.uk",
}


def test_the_production_profile_passes_check_deploy_with_no_warnings():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_production_refuses_to_start_without_a_secret_key():
    env = {**PRODUCTION, "SECRET_KEY": ""}
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_production_refuses_to_start_without_an_encryption_key():
    env = {**PRODUCTION, "PORTAL_ENCRYPTION_KEYS": ""}
    result = _manage("check", env=env)
    assert result.returncode != 0
    assert "PORTAL_ENCRYPTION_KEYS must be set" in result.stderr


def test_production_refuses_the_development_secret_key():
    from portal.settings import _DEV_SECRET_KEY

    result = _manage("check", env={**PRODUCTION, "SECRET_KEY": _DEV_SECRET_KEY})
    assert result.returncode != 0 and "SECRET_KEY is the development key" in result.stderr


def test_production_refuses_the_development_encryption_key_and_a_malformed_one():
    from portal.settings import _DEV_ENCRYPTION_KEY

    dev = _manage("check", env={**PRODUCTION, "PORTAL_ENCRYPTION_KEYS": _DEV_ENCRYPTION_KEY})
    assert dev.returncode != 0 and "key 1 is the development key" in dev.stderr
    second = f"{Fernet.generate_key().decode()},not-a-key"
    bad = _manage("check", env={**PRODUCTION, "PORTAL_ENCRYPTION_KEYS": second})
    assert bad.returncode != 0 and "key 2 is not a Fernet key" in bad.stderr and "not-a-key" not in bad.stderr


def test_the_test_profile_cannot_be_switched_on_outside_the_test_runner():
    """PORTAL_TESTING=1 silently selected the development keys and password hasher."""
    result = _manage("check", env={**PRODUCTION, "PORTAL_TESTING": "1"})
    assert result.returncode != 0 and "PORTAL_TESTING is for the test runner only" in result.stderr
    both = _manage("check", env={"PORTAL_TESTING": "1", "DJANGO_SETTINGS_MODULE": "portal.settings_test"})
    assert both.returncode != 0 and "PORTAL_TESTING is for the test runner only" in both.stderr


def test_a_bad_boolean_fails_loudly(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    monkeypatch.setenv("SOME_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="SOME_FLAG"):
        env_bool("SOME_FLAG")


def test_a_bad_number_fails_loudly(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    monkeypatch.setenv("SOME_NUMBER", "ten")
    with pytest.raises(ImproperlyConfigured, match="SOME_NUMBER"):
        env_int("SOME_NUMBER", 1)


def test_the_embedded_default_is_sqlite_in_var_and_a_serverless_broker():
    env = {"DEBUG": "1", "DATABASE_URL": "", "CELERY_BROKER_URL": ""}
    code = "from django.conf import settings as s; print(s.DATABASES['default']['ENGINE'], s.DATABASES['default']['NAME'], s.CELERY_BROKER_URL)"
    result = _manage("shell", "-v", "0", "-c", code, env=env)
    assert result.returncode == 0, result.stderr
    engine, name, broker = result.stdout.split()
    assert engine == "django.db.backends.sqlite3"
    assert name.endswith("var/portal.sqlite3")
    assert broker == "filesystem://"


def test_database_and_broker_urls_are_read_from_the_environment():
    env = {
        "DEBUG": "1",
        "DATABASE_URL": "postgres://someone@db.example:5433/portal",
        "CELERY_BROKER_URL": "redis://cache.example:6379/2",
    }
    code = "from django.conf import settings as s; d=s.DATABASES['default']; print(d['ENGINE'], d['HOST'], d['PORT'], d['NAME'], s.CELERY_BROKER_URL)"
    result = _manage("shell", "-v", "0", "-c", code, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.postgresql",
        "db.example",
        "5433",
        "portal",
        "redis://cache.example:6379/2",
    ]


def _setting(name: str, env: dict) -> str:
    result = _manage("shell", "-c", f"from django.conf import settings; print(settings.{name})", env=env)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_invitation_links_use_the_port_make_run_serves():
    assert _setting("PORTAL_BASE_URL", {"DEBUG": "1", "PORT": "8231"}) == "http://127.0.0.1:8231"
    env = {"DEBUG": "1", "PORT": "8231", "PORTAL_BASE_URL": "https://portal.example.nhs.uk"}
    assert _setting("PORTAL_BASE_URL", env) == "https://portal.example.nhs.uk"


def test_manage_py_reads_what_make_run_wrote_and_the_environment_wins(tmp_path, monkeypatch):
    monkeypatch.delenv("PORT", raising=False)  # `make test` exports PORT; a newcomer's shell has none
    (tmp_path / ".env").write_text("# make run\nDEBUG=1\nPORT=8231\n")
    # DEBUG unset: without var/.env this stops with "SECRET_KEY must be set"
    assert _setting("DEBUG", {"PORTAL_VAR_DIR": str(tmp_path)}) == "True"
    assert _setting("PORTAL_BASE_URL", {"PORTAL_VAR_DIR": str(tmp_path)}) == "http://127.0.0.1:8231"
    assert _setting("PORTAL_BASE_URL", {"PORTAL_VAR_DIR": str(tmp_path), "PORT": "9000"}).endswith(":9000")


def test_a_redis_broker_keeps_a_running_task_longer_than_the_longest_task():
    """Redis hands an unacknowledged message to another worker after visibility_timeout: it must outlast the
    longest copy, or every long copy is started again (kombu's default is one hour)."""
    code = (
        "from django.conf import settings as s; "
        "print(s.CELERY_BROKER_TRANSPORT_OPTIONS['visibility_timeout'], s.LONGEST_TASK_SECONDS)"
    )
    result = _manage("shell", "-c", code, env={**PRODUCTION, "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0"})
    assert result.returncode == 0, result.stderr
    visibility, longest = map(int, result.stdout.strip().splitlines()[-1].split())
    assert visibility > longest >= 3600


def test_it_refuses_a_visibility_timeout_shorter_than_the_longest_task():
    env = {
        **PRODUCTION,
        "CELERY_BROKER_URL": "redis://127.0.0.1:6379/0",
        "CELERY_VISIBILITY_TIMEOUT_SECONDS": "3600",
    }
    result = _manage("check", env=env)
    assert result.returncode != 0 and "CELERY_VISIBILITY_TIMEOUT_SECONDS=3600 must be longer" in result.stderr


def test_copy_workers_can_share_a_connection_pool_and_pgbouncer_is_catered_for():
    code = (
        "from django.conf import settings as s; d=s.DATABASES['default']; "
        "print(d['CONN_MAX_AGE'], d.get('OPTIONS', {}).get('pool'), d.get('DISABLE_SERVER_SIDE_CURSORS', False))"
    )
    pooled = {
        "DEBUG": "1",
        "DATABASE_URL": "postgres://someone@db.example:5433/portal",
        "DB_POOL_MAX_SIZE": "25",
        "DB_PGBOUNCER_TRANSACTION_MODE": "1",
    }
    result = _manage("shell", "-v", "0", "-c", code, env=pooled)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0 {'min_size': 1, 'max_size': 25, 'timeout': 60.0} True"

    # No pool unless asked (web processes keep their persistent connection), and none on SQLite.
    plain = _manage("shell", "-v", "0", "-c", code, env={**pooled, "DB_POOL_MAX_SIZE": "0"})
    assert plain.stdout.strip().split()[1] == "None"
    sqlite = _manage("shell", "-v", "0", "-c", code, env={**pooled, "DATABASE_URL": ""})
    assert sqlite.stdout.strip().split()[1] == "None"

    refused = _manage("check", env={**pooled, "DB_POOL_MAX_SIZE": "-1"})
    assert refused.returncode != 0
    assert "DB_POOL_MAX_SIZE must be 0 (no pool) or more" in refused.stderr


def test_copies_can_have_a_queue_of_their_own():
    code = (
        "from portal.celery import app; r = app.amqp.router; "
        "print(r.route({}, 'migrations_app.tasks.mailboxes_work')['queue'].name, "
        "r.route({}, 'migrations_app.tasks.run_import_job')['queue'].name)"
    )
    routed = _manage("shell", "-v", "0", "-c", code, env={"DEBUG": "1", "CELERY_COPY_QUEUE": "copies"})
    assert routed.returncode == 0, routed.stderr
    assert routed.stdout.split() == ["copies", "celery"]
    default = _manage("shell", "-v", "0", "-c", code, env={"DEBUG": "1", "CELERY_COPY_QUEUE": ""})
    assert default.stdout.split() == ["celery", "celery"]
