"""The fake Microsoft cloud for the graph engine tests, and a MailboxSpec from a real Dovecot source to it."""

from __future__ import annotations

import contextlib
import datetime
import itertools

import pytest

from migrations_app.engines import EndpointSpec, MailboxSpec
from tests.engines import mailgen
from tests.engines.conftest import endpoint
from tests.fakes.microsoft import FakeMicrosoft
from tests.fakes.outbound import allow_fake

_n = itertools.count(1)


@pytest.fixture
def fake(settings):
    server = FakeMicrosoft()
    allow_fake(settings, server.base)
    yield server
    server.stop()


def graph_endpoint(fake: FakeMicrosoft, **options) -> EndpointSpec:
    return EndpointSpec(
        kind="graph",
        host=fake.tenant_id,
        username=fake.client_id,
        password=fake.client_secret,
        options=options,
    )


class GraphBox:
    """A fresh Dovecot source user and a fresh Exchange Online user in the fake."""

    def __init__(self, dovecots, fake: FakeMicrosoft):
        self.source_server = dovecots[0]
        self.fake = fake
        self.src_user = self.source_server.new_user()
        n = next(_n)
        self.upn = f"user{n}@trust.onmicrosoft.com"
        self.mailbox = fake.add_user(self.upn)
        self.clients = []

    def spec(self, **target_options) -> MailboxSpec:
        return MailboxSpec(
            email=self.upn,
            source=endpoint(self.source_server, self.src_user, "tls"),
            target=graph_endpoint(self.fake, **target_options),
            target_user=self.upn,
        )

    def src(self):
        self.clients.append(mailgen.client(self.source_server, self.src_user))
        return self.clients[-1]

    def close(self):
        for c in self.clients:
            with contextlib.suppress(Exception):  # already gone is fine
                c.logout()


@pytest.fixture
def graphbox(dovecots, fake):
    box = GraphBox(dovecots, fake)
    yield box
    box.close()


def when(n: int) -> datetime.datetime:
    return datetime.datetime(
        2023, 3, 1 + n % 27, 8, n % 60, tzinfo=datetime.timezone(datetime.timedelta(hours=1))
    )
