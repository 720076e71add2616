"""What the HTTP benchmarks share: the portal served by gunicorn with the production profile (DEBUG off,
static files collected, the real middleware), signed-in session cookies made without a browser, and a
keep-alive client that times each request from the client's side."""

from __future__ import annotations

import http.client
import os
import secrets
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from bench._scratch import log

ROOT = Path(__file__).resolve().parent.parent


def production_env(**extra: str) -> dict[str, str]:
    """The production profile as an operator would run it on loopback: fresh secrets for this run only,
    no HTTPS redirect (there is no TLS terminator in front of it here)."""
    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "PORTAL_TESTING")}
    env.update(
        SECRET_KEY=secrets.token_urlsafe(50),
        PORTAL_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="0",
        SECURE_HSTS_SECONDS="0",
        DJANGO_SETTINGS_MODULE="portal.settings",
        # the public lookup is rate-limited per address and overall; every request here comes from one
        # address, so the limits are lifted for the run (they are measured by their own tests)
        PUBLIC_LOOKUP_RATE="1000000/m",
        PUBLIC_LOOKUP_GLOBAL_RATE="1000000/m",
        API_THROTTLE_RATE="1000000/min",
    )
    env.update(extra)
    return env


@contextmanager
def gunicorn(*, port: int, workers: int, threads: int, env: dict[str, str]):
    """collectstatic, then gunicorn portal.wsgi on 127.0.0.1:port until the block ends."""
    python = sys.executable
    subprocess.run(
        [python, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    command = [
        python,
        "-m",
        "gunicorn",
        "portal.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--worker-class",
        "gthread" if threads > 1 else "sync",
        "--keep-alive",
        "30",
        "--log-level",
        "warning",
        "--backlog",
        "2048",
    ]
    log(f"serving: {' '.join(command[2:])}")
    server = subprocess.Popen(command, cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                connection.request("GET", "/healthz")
                if connection.getresponse().status in (200, 503):
                    break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("gunicorn did not start")
            time.sleep(0.2)
        yield server
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def session_cookie(user, *, secret_key: str) -> str:
    """A signed-in session for `user`, as the sign-in view would leave it (after django.setup()), signed with
    the served portal's SECRET_KEY."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.test.utils import override_settings

    with override_settings(SECRET_KEY=secret_key):
        from django.contrib.sessions.backends.db import SessionStore

        store = SessionStore()
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.create()
    return f"{settings.SESSION_COOKIE_NAME}={store.session_key}"


class Client:
    """One keep-alive connection; get() returns (status, seconds) timed from the client's side."""

    def __init__(self, port: int, cookie: str = "") -> None:
        self.port, self.cookie = port, cookie
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, float, bytes]:
        sent = {"Host": "127.0.0.1", **({"Cookie": self.cookie} if self.cookie else {}), **(headers or {})}
        started = time.perf_counter()
        try:
            self.connection.request("GET", path, headers=sent)
            response = self.connection.getresponse()
            body = response.read()
        except (http.client.HTTPException, OSError):
            self.connection.close()
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            self.connection.request("GET", path, headers=sent)
            response = self.connection.getresponse()
            body = response.read()
        return response.status, time.perf_counter() - started, body
