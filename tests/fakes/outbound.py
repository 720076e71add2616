"""What the programme office would configure for a service on its own network, said for the fakes: this
host may use http, this port, and resolve to an internal (here loopback) address. The fakes listen on
127.0.0.1, and the code under test reaches them through the same outbound rules as production
(migrations_app/outbound_transport.py); without this it refuses them, as it should."""

from __future__ import annotations

import os
from urllib.parse import urlsplit


def allow_fake(settings, url: str) -> None:
    """For a test: the pytest-django `settings` fixture, so the exception ends with the test."""
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port
    settings.OUTBOUND_ALLOWED_HTTP_HOSTS = [*settings.OUTBOUND_ALLOWED_HTTP_HOSTS, host]
    settings.OUTBOUND_ALLOWED_PORTS = [*settings.OUTBOUND_ALLOWED_PORTS, f"{host}:{port}"]
    settings.OUTBOUND_ALLOWED_INTERNAL_HOSTS = [*settings.OUTBOUND_ALLOWED_INTERNAL_HOSTS, host]


def allow_fake_in_environment(url: str) -> None:
    """For a plain-Python script (the copy benchmarks), where outbound reads the same names from the
    environment because Django is not configured."""
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port
    for name, value in (
        ("OUTBOUND_ALLOWED_HTTP_HOSTS", host),
        ("OUTBOUND_ALLOWED_PORTS", f"{host}:{port}"),
        ("OUTBOUND_ALLOWED_INTERNAL_HOSTS", host),
    ):
        present = [v for v in os.environ.get(name, "").split(",") if v]
        os.environ[name] = ",".join([*present, value])
