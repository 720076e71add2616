"""Fencing, with real Dovecot servers and the real runner: a run whose engine stays silent past the staleness
limit keeps its lease (the heartbeat is the run's, not the engine's); once the reconciler hands the mailbox
to another run anyway, the first run stops before its next write. The target gets no duplicate and the
mailbox exactly one `migrated` event."""

import datetime as dt
import threading

import pytest
from django.db import connections
from django.utils import timezone

from migrations_app.engines.imap import ImapEngine, ImapReader
from migrations_app.models import Endpoint, Event, Mailbox, Wave
from migrations_app.services.execution import SYNC, mailbox_claim, mailbox_run_sync, reconcile_stale
from tests.engines import mailgen
from tests.engines.dovecot import MASTER_USER, PASSWORD
from tests.execution_fixtures import approved_wave

M = Mailbox.State


def _endpoint(server, name, role, security):
    return Endpoint.objects.create(
        name=name,
        kind=Endpoint.Kind.IMAP,
        role=role,
        address=server.host,
        port=server.tls_port if security == "tls" else server.port,
        security=security,
        username=MASTER_USER,
        secret=PASSWORD,
        options={"ca_file": str(server.ca_file), "master_user_separator": "*"},
        max_concurrency=4,
        routing_domain="trust.mail.onmicrosoft.com",  # the cutover's switch (simulated) routes mail there
    )


class _Stall:
    """The engine goes silent before fetching its second batch, until released."""

    def __init__(self):
        self.batches = 0
        self.stalled = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()


class _StallingReader(ImapReader):
    stall: _Stall

    def clone(self):
        clone = _StallingReader(self.endpoint, self.user, timeout=self.timeout)
        clone.stall = self.stall
        return clone

    def fetch(self, folder, items, large_item_bytes):
        with self.stall.lock:
            self.stall.batches += 1
            second = self.stall.batches == 2
        if second:
            self.stall.stalled.set()
            self.stall.release.wait(timeout=60)
        yield from super().fetch(folder, items, large_item_bytes)


class _StallingEngine(ImapEngine):
    def __init__(self, stall: _Stall):
        super().__init__(connections=1, batch_messages=10)
        self.stall = stall

    def reader(self, spec):
        reader = _StallingReader(spec.source, spec.source_user or spec.email, timeout=self.timeout)
        reader.stall = self.stall
        return reader


@pytest.mark.django_db(transaction=True)
def test_a_run_that_lost_its_lease_stops_writing_and_the_target_gets_no_duplicate(
    dovecots, org_a, settings, monkeypatch
):
    settings.MIGRATION_HEARTBEAT_STALE_SECONDS = 1
    settings.MIGRATION_HEARTBEAT_SECONDS = 0.1
    monkeypatch.setattr("migrations_app.services.execution.claims._queue", lambda batches, phase: None)
    monkeypatch.setattr("migrations_app.services.execution.clock._queue", lambda batches, phase: None)
    source, target = dovecots
    wave, [mailbox] = approved_wave(
        org_a,
        1,
        starts_in=dt.timedelta(minutes=-1),
        source_endpoint=_endpoint(source, "Trust IMAP", Endpoint.Role.SOURCE, "tls"),
        target_endpoint=_endpoint(target, "New IMAP", Endpoint.Role.TARGET, "starttls"),
    )
    src_user, tgt_user = source.new_user(), target.new_user()
    client = mailgen.client(source, src_user)
    mailgen.append(client, "INBOX", [mailgen.message(n, size=2_000 + n) for n in range(60)])
    Mailbox.objects.filter(pk=mailbox.pk).update(source_identity=src_user, target_upn=tgt_user, item_count=60)
    Wave.objects.filter(pk=wave.pk).update(status=Wave.Status.RUNNING)
    assert mailbox_claim(wave=wave, phase=SYNC) == [mailbox.pk]

    stall = _Stall()
    first: dict = {}

    def run_first():
        try:
            first["ran"] = mailbox_run_sync(mailbox_id=mailbox.pk, engine=_StallingEngine(stall))
        finally:
            connections.close_all()

    thread = threading.Thread(target=run_first)
    thread.start()
    assert stall.stalled.wait(timeout=30)
    # Silent for longer than the staleness limit: the run's own heartbeat keeps the mailbox.
    threading.Event().wait(2.5)
    assert reconcile_stale() == []
    # The reconciler hands it over anyway (as it would to a worker frozen for ten minutes).
    later = timezone.now() + dt.timedelta(seconds=settings.MIGRATION_HEARTBEAT_STALE_SECONDS + 1)
    assert reconcile_stale(now=later) == [mailbox.pk]

    second = mailbox_run_sync(mailbox_id=mailbox.pk, engine=ImapEngine(connections=2, batch_messages=10))
    assert second is not None and second.state == M.MIGRATED
    stall.release.set()  # the first run wakes up, about to write its second batch
    thread.join(timeout=60)
    assert not thread.is_alive()

    tgt = mailgen.client(target, tgt_user)
    assert mailgen.folder_contents(tgt, "INBOX") == mailgen.folder_contents(client, "INBOX")  # 60, once each
    assert len(mailgen.folder_contents(tgt, "INBOX")) == 60
    events = list(Event.objects.filter(mailbox_id=mailbox.pk).values_list("action", flat=True))
    assert events.count("mailbox.migrated") == 1
    assert events.count("mailbox.lease_lost") == 1
    assert Mailbox.objects.get(pk=mailbox.pk).state == M.MIGRATED
    tgt.logout()
    client.logout()
