"""The fake Exchange 2013 and the fake Graph for the exchange engine tests, a seed corpus of every item class
written as ordinary files, and a MailboxSpec joining the two."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path

import pytest

from migrations_app.engines import EndpointSpec, MailboxSpec
from tests.fakes.exchange import FakeExchange
from tests.fakes.graph import FakeGraph
from tests.fakes.outbound import allow_fake

_n = itertools.count(1)


def write_corpus(
    directory: Path,
    address: str,
    *,
    mail: int = 6,
    calendar: int = 2,
    contacts: int = 2,
    tasks: int = 1,
    notes: int = 1,
    journal: int = 0,
    search_folder: bool = True,
) -> Path:
    """One mailbox's folders and files: mail split between Inbox, Inbox/Projects and Sent Items."""
    root = directory / address
    folders = {
        "Inbox": root / "Inbox",
        "Projects": root / "Inbox" / "Projects",
        "Sent": root / "Sent Items",
        "Calendar": root / "Calendar",
        "Contacts": root / "Contacts",
        "Tasks": root / "Tasks",
        "Notes": root / "Notes",
        "Journal": root / "Journal",
    }
    for path in folders.values():
        path.mkdir(parents=True, exist_ok=True)
    for n in range(mail):
        folder = folders[("Inbox", "Projects", "Sent")[n % 3]]
        (folder / f"m{n:05d}.eml").write_bytes(mail_bytes(n))
    for n in range(calendar):
        (folders["Calendar"] / f"e{n:05d}.ics").write_bytes(event_bytes(n))
    for n in range(contacts):
        (folders["Contacts"] / f"c{n:05d}.vcf").write_bytes(
            f"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Dr Contact {n}\r\nEMAIL:contact{n}@nhs.net\r\nEND:VCARD\r\n".encode()
        )
    for n in range(tasks):
        (folders["Tasks"] / f"t{n:05d}.json").write_text(
            json.dumps({"class": "IPM.Task", "subject": f"Audit {n}"})
        )
    for n in range(notes):
        (folders["Notes"] / f"n{n:05d}.json").write_text(
            json.dumps({"class": "IPM.StickyNote", "subject": f"Remember {n}"})
        )
    for n in range(journal):
        (folders["Journal"] / f"j{n:05d}.json").write_text(
            json.dumps({"class": "IPM.Activity", "subject": f"Call {n}"})
        )
    if search_folder:
        (root / "Unread Mail").mkdir(exist_ok=True)
        (root / "Unread Mail" / ".search").write_text("")
    return root


def mail_bytes(n: int, body: str = "") -> bytes:
    return (
        f"From: Sender {n} <sender{n}@nhs.net>\r\nTo: Alice <alice@trust.nhs.uk>\r\nSubject: Message {n}\r\n"
        f"Message-ID: <m{n}@trust.nhs.uk>\r\nDate: Mon, 2 Mar 2026 09:00:00 +0000\r\n\r\n"
        f"{body or 'Ward round notes ' * (1 + n % 7)}\r\n"
    ).encode()


def event_bytes(n: int, summary: str = "") -> bytes:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\n"
        f"UID:event-{n}@trust.nhs.uk\r\nSUMMARY:{summary or f'Clinic {n}'}\r\nDTSTART:20260302T090000Z\r\n"
        "RRULE:FREQ=WEEKLY;COUNT=10\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    ).encode()


@pytest.fixture
def fake_ews(settings):
    server = FakeExchange().start()
    allow_fake(settings, server.url)
    yield server
    server.stop()


@pytest.fixture
def fake_graph(settings):
    server = FakeGraph()
    allow_fake(settings, server.base)
    yield server
    server.stop()


def exchange_endpoint(fake: FakeExchange, **options) -> EndpointSpec:
    return EndpointSpec(
        kind="exchange",
        host="127.0.0.1",
        port=fake.port,
        security="plain",
        username=fake.username,
        password=fake.password,
        options={"auth": "basic", **options},
    )


def graph_endpoint(fake: FakeGraph, **options) -> EndpointSpec:
    return EndpointSpec(
        kind="graph",
        host=fake.tenant_id,
        username=fake.client_id,
        password=fake.client_secret,
        options=options,
    )


class ExchangeBox:
    """A seeded Exchange 2013 mailbox and its licensed Exchange Online user."""

    def __init__(self, fake_ews: FakeExchange, fake_graph: FakeGraph, tmp_path: Path, **corpus):
        n = next(_n)
        self.address = f"user{n}@trust.nhs.uk"
        self.upn = f"user{n}@trust.onmicrosoft.com"
        write_corpus(tmp_path / f"seed{n}", self.address, **corpus)
        fake_ews.seed(tmp_path / f"seed{n}")
        self.exchange, self.graph = fake_ews, fake_graph
        self.store = fake_ews.stores[self.address]
        fake_graph.add_user(self.upn)

    def spec(self, source_options: dict | None = None, **target_options) -> MailboxSpec:
        return MailboxSpec(
            email=self.address,
            source=exchange_endpoint(self.exchange, **(source_options or {})),
            target=graph_endpoint(self.graph, **target_options),
            source_user=self.address,
            target_user=self.upn,
        )

    @property
    def target(self):
        return self.graph.import_mailbox(self.upn)

    def arrived(self) -> Counter:
        """(folder path, payload) -> how many times it is on the target."""
        mailbox = self.target
        return Counter((mailbox.path(folder), item.data) for folder, item in mailbox.items())

    def expected(self) -> Counter:
        """(folder path the engine maps it to, payload) for every item on the source outside search folders."""
        return Counter(
            (tuple(self.store.path(folder)), item.payload)
            for folder, item in self.store.items()
            if not folder.search
        )


@pytest.fixture
def exbox(fake_ews, fake_graph, tmp_path):
    return ExchangeBox(fake_ews, fake_graph, tmp_path)
