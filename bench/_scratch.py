"""What every benchmark needs before it starts: a scratch PostgreSQL database it may wipe, and a log line
that does not mix with the one JSON line it prints."""

import os
import sys


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def scratch_database_url(example: str) -> str:
    """DATABASE_URL, refused unless it is PostgreSQL and its database name says "bench" (the schema is
    dropped and recreated); the database is created when missing."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        sys.exit(
            f"This benchmark needs PostgreSQL: set DATABASE_URL=postgres://.../{example} "
            "(a scratch database: its schema is dropped and recreated)."
        )
    base, name = url.rsplit("/", 1)
    name = name.split("?", 1)[0]
    if "bench" not in name:
        sys.exit(
            f"Refusing to drop the schema of database {name!r}: use a scratch database whose name contains 'bench'."
        )
    import psycopg

    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    return url


def reset_schema() -> None:
    """Drop the scratch database's schema and migrate afresh (after django.setup())."""
    from django.core.management import call_command
    from django.db import connection

    log(f"resetting the schema of {connection.settings_dict['NAME']} ...")
    with connection.cursor() as cursor:
        cursor.execute("DROP SCHEMA public CASCADE")
        cursor.execute("CREATE SCHEMA public")
    call_command("migrate", verbosity=0, interactive=False)
