"""The production profile as README says to serve it: `collectstatic`, then `gunicorn portal.wsgi` with DEBUG
unset, on a freshly migrated database seeded with the demo programme (`seed_demo`, what `make run` shows).

Its own database (PostgreSQL when DATABASE_URL is PostgreSQL: `<name>_served`, created and dropped here; else
a SQLite file), its own var folder (filesystem broker, file cache, demo credentials) and its own static folder,
so nothing it does reaches the test database, the test broker or the checkout.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ProductionServer:
    url: str
    credentials: dict[str, str]  # username -> password, from seed_demo
    env: dict[str, str]
    log: Path

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _database(base: Path) -> tuple[str, callable]:
    """(DATABASE_URL for the server, drop()): a fresh PostgreSQL database beside the test one, or SQLite."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        return f"sqlite:///{base / 'served.sqlite3'}", lambda: None
    import psycopg

    config = dj_database_url.parse(url)
    name = f"{config['NAME']}_served"[:63]
    admin = dict(
        host=config["HOST"] or "127.0.0.1",
        port=config["PORT"] or 5432,
        user=config["USER"],
        password=config["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    )

    def drop():
        with psycopg.connect(**admin) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    drop()
    with psycopg.connect(**admin) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.rsplit("/", 1)[0] + f"/{name}", drop


def _run(args: list[str], env: dict, timeout: int = 300) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def production_env(base: Path, database_url: str, port: int) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PORTAL_", "DJANGO_", "CELERY_", "SIMULATED_"))
        and k not in {"DEBUG", "CACHE_URL"}
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DEBUG": "0",
            "SECRET_KEY": "served-in-a-test-" + Fernet.generate_key().decode(),
            "PORTAL_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            # plain http on loopback; HSTS and secure cookies stay on (Chromium keeps them on localhost)
            "SECURE_SSL_REDIRECT": "0",
            "PORTAL_VAR_DIR": str(base / "var"),
            "STATIC_ROOT": str(base / "static"),
            "DATABASE_URL": database_url,
            "PORT": str(port),
            "PORTAL_BASE_URL": f"http://localhost:{port}",
        }
    )
    return env


def start(base: Path):
    """Build everything and start gunicorn; a generator: yields the ProductionServer, stops it after."""
    port = _free_port()
    database_url, drop = _database(base)
    env = production_env(base, database_url, port)
    log = base / "gunicorn.log"
    process = None
    try:
        _run(["collectstatic", "--noinput", "-v", "0"], env)
        _run(["migrate", "--noinput", "-v", "0"], env)
        _run(["seed_demo"], env)
        credentials = {
            row["username"]: row["password"]
            for row in json.loads((base / "var" / "demo-credentials.json").read_text())
        }
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "portal.wsgi", "--bind", f"127.0.0.1:{port}"]
                + ["--workers", "2", "--threads", "4", "--timeout", "60"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        url = f"http://localhost:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=5)  # noqa: S310 - loopback
                break
            except OSError as exc:  # refused or timed out while it starts; an HTTP error is an answer
                if isinstance(exc, urllib.error.HTTPError) or process.poll() is not None:
                    raise AssertionError(f"gunicorn did not start: {exc}\n{log.read_text()}") from exc
                if time.monotonic() > deadline:
                    raise AssertionError(f"gunicorn did not answer in 60 s\n{log.read_text()}") from exc
                time.sleep(0.3)
        yield ProductionServer(url=url, credentials=credentials, env=env, log=log)
    finally:
        if process is not None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        drop()
