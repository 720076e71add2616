"""Real Dovecot for the engine tests: one instance with '/' as hierarchy separator (the source) and one with
'.' (the target), started once per session; every test gets fresh users, so fresh mailboxes. Without
dovecot the tests skip (or fail under REQUIRE_SERVICES=1)."""

from __future__ import annotations

import contextlib
import itertools

import pytest

from migrations_app.engines import EndpointSpec, MailboxSpec
from tests.conftest import skip_or_fail
from tests.engines import mailgen
from tests.engines.dovecot import dovecot_binary, start_dovecot

_names = itertools.count(1)  # only for the email address


@pytest.fixture(scope="session")
def dovecots():
    if dovecot_binary() is None:
        skip_or_fail("dovecot is not installed (Debian: apt-get install dovecot-imapd)")
    source = start_dovecot("/")
    try:
        target = start_dovecot(".")
    except Exception:
        source.stop()
        raise
    yield source, target
    source.stop()
    target.stop()


def endpoint(server, user: str, security: str = "tls", **options) -> EndpointSpec:
    port = server.tls_port if security == "tls" else server.port
    if security != "plain":
        options.setdefault("ca_file", str(server.ca_file))
    return EndpointSpec(
        kind="imap",
        host=server.host,
        port=port,
        security=security,
        username=user,
        password=server.users.get(user, "secret"),
        options=options,
    )


@pytest.fixture
def mailbox(dovecots):
    """A MailboxSpec between fresh users: source over TLS, target over STARTTLS (both really verified).
    mailbox.src() / mailbox.tgt() give logged-in IMAPClients for seeding and checking."""
    source, target = dovecots
    n = next(_names)
    src_user = source.new_user()
    clients = []

    class Box:
        servers = dovecots
        tgt_user = target.new_user()

        def small_target(self):
            """Switch to a target user with a small quota (tests.engines.dovecot.SMALL_QUOTA)."""
            self.tgt_user = target.new_user(small=True)

        def spec(self, *, target_options=None, source_security="tls", target_security="starttls"):
            return MailboxSpec(
                email=f"user{n}@example.nhs.uk",
                source=endpoint(source, src_user, source_security),
                target=endpoint(target, self.tgt_user, target_security, **(target_options or {})),
            )

        def src(self):
            clients.append(mailgen.client(source, src_user))
            return clients[-1]

        def tgt(self):
            clients.append(mailgen.client(target, self.tgt_user))
            return clients[-1]

    yield Box()
    for c in clients:
        with contextlib.suppress(Exception):  # already gone is fine
            c.logout()
