"""Endpoints written as URLs, for copying one mailbox from the command line (manage.py copy_mailbox):

    imaps://USER[:PASSWORD]@HOST[:PORT][/?ca_file=...&master_user_separator=*]   IMAP over TLS (993)
    imap://USER[:PASSWORD]@HOST[:PORT][/?starttls=1]                             plain (143), or STARTTLS
    graph://CLIENT_ID[:SECRET]@TENANT/?user=UPN[&import_mode=mime]                Exchange Online (Graph)
    ewss://ACCOUNT[:PASSWORD]@CAS[:PORT]/?user=SMTP[&auth=basic&ca_file=...]       Exchange 2013 (EWS, HTTPS)
    ews://ACCOUNT[:PASSWORD]@HOST:PORT/?user=SMTP&auth=basic                       EWS over plain HTTP (test systems)

A password left out of the URL is taken from the environment (COPY_SOURCE_PASSWORD / COPY_TARGET_PASSWORD),
so it need not appear in a shell's history. Every other query parameter becomes an endpoint option.
Plain Python: no Django.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qsl, unquote, urlsplit

from migrations_app.engines.base import EndpointSpec

SCHEMES = {
    "imaps": ("imap", "tls"),
    "imap": ("imap", "plain"),
    "graph": ("graph", "tls"),
    "ewss": ("exchange", "tls"),
    "ews": ("exchange", "plain"),
}


def endpoint_from_url(url: str, *, side: str) -> tuple[EndpointSpec, str]:
    """(EndpointSpec, the mailbox user on that side). `side` is "source" or "target" (which environment
    variable holds a password the URL leaves out). Raises ValueError with a message that never repeats
    the password."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ValueError(f"{side}: the URL must start with one of {', '.join(s + '://' for s in SCHEMES)}")
    kind, security = SCHEMES[parts.scheme]
    options = dict(parse_qsl(parts.query))
    if kind == "imap" and options.pop("starttls", "") in ("1", "true", "yes"):
        security = "starttls"
    username = unquote(parts.username or "")
    password = unquote(parts.password) if parts.password is not None else ""
    password = password or os.environ.get(f"COPY_{side.upper()}_PASSWORD", "")
    if not parts.hostname:
        raise ValueError(f"{side}: the URL has no host (or tenant)")
    user = options.pop("user", "") or username
    for key in ("max_message_bytes", "timeout", "max_connections"):
        if key in options:
            options[key] = int(options[key])
    if "include_archive" in options:
        options["include_archive"] = options["include_archive"] in ("1", "true", "yes")
    spec = EndpointSpec(
        kind=kind,
        host=parts.hostname,
        port=parts.port or 0,
        security=security,
        username=username,
        password=password,
        options=options,
    )
    return spec, user
