"""A wave of Exchange 2013 mailboxes with every item class moves through the orchestrator and a real Celery worker
from the fake Exchange (EWS) to the fake Graph (mailbox import): pre-stage days ahead, changes on the source, the
cutover inside the window, throttling storms on both sides all the while."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import OperationalError
from django.utils import timezone

from migrations_app.engines import IMPERSONATION_REFUSED
from migrations_app.engines.exchange import ExchangeEngine
from migrations_app.models import Endpoint, Mailbox, Wave
from migrations_app.services.execution import mailbox_run_sync, wave_engine, wave_tick
from tests.engines.exchange_fixtures import (  # noqa: F401 - fixtures
    ExchangeBox,
    event_bytes,
    fake_ews,
    fake_graph,
    mail_bytes,
)
from tests.execution_fixtures import approved_wave

M = Mailbox.State


@pytest.fixture
def endpoints(fake_ews, fake_graph, settings):  # noqa: F811
    settings.MIGRATION_ENGINE_OPTIONS = {"exchange": {"http_client": fake_graph.session(), "max_wait": 30}}
    source = Endpoint.objects.create(
        name="exchange-2013",
        kind=Endpoint.Kind.EXCHANGE,
        role="source",
        address="127.0.0.1",
        port=fake_ews.port,
        security="plain",
        username=fake_ews.username,
        secret=fake_ews.password,  # encrypted at rest
        options={"auth": "basic"},
        routing_domain="trust.mail.onmicrosoft.com",  # the switch at cutover (simulated switcher)
    )
    target = Endpoint.objects.create(
        name="exchange-online",
        kind=Endpoint.Kind.GRAPH,
        role="target",
        address=fake_graph.tenant_id,
        username=fake_graph.client_id,
        secret=fake_graph.client_secret,
    )
    return source, target


def _wave(org, endpoints, fake_ews, fake_graph, tmp_path, count, **wave):  # noqa: F811
    source, target = endpoints
    wave, mailboxes = approved_wave(org, count, source_endpoint=source, target_endpoint=target, **wave)
    boxes = []
    for mailbox in mailboxes:
        box = ExchangeBox(fake_ews, fake_graph, tmp_path, mail=8, calendar=3, contacts=2, tasks=2, notes=1)
        Mailbox.objects.filter(pk=mailbox.pk).update(
            source_identity=box.address, target_upn=box.upn, size_bytes=0
        )
        boxes.append(box)
    return wave, mailboxes, boxes


def _wait(predicate, seconds=240):  # generous: the machine is shared, and this is a real worker
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except OperationalError as exc:  # SQLite: the worker holds the lock for a moment
            if "locked" not in str(exc):
                raise
        time.sleep(0.2)
    return False


def _retry_locked(write, attempts=50):
    """On SQLite (the default with no services) the worker thread may hold the database's one write lock for a
    moment: the test's own writes wait for it, as a second process would."""
    for _ in range(attempts - 1):
        try:
            return write()
        except OperationalError as exc:
            if "locked" not in str(exc):
                raise
            time.sleep(0.2)
    return write()


def _change_every_class(box: ExchangeBox) -> None:
    store = box.store
    by_path = {tuple(store.path(f)): f for f in store.folders.values()}
    inbox, calendar, contacts = by_path[("Inbox",)], by_path[("Calendar",)], by_path[("Contacts",)]
    tasks, notes = by_path[("Tasks",)], by_path[("Notes",)]
    store.add_item(inbox, "IPM.Note", "Arrived after pre-stage", mail_bytes(700))
    store.add_item(calendar, "IPM.Appointment", "Booked after pre-stage", event_bytes(700))
    store.add_item(tasks, "IPM.Task", "New task", b'{"class": "IPM.Task", "subject": "New task"}')
    store.change(next(iter(calendar.items)), event_bytes(0, "Clinic moved"))
    store.change(
        next(iter(contacts.items)), b"BEGIN:VCARD\r\nFN:Dr Contact 0\r\nTEL:0113 000\r\nEND:VCARD\r\n"
    )
    store.move(next(iter(inbox.items)), by_path[("Inbox", "Projects")])
    store.delete(next(iter(notes.items)))
    store.delete(next(iter(contacts.items)))


@pytest.mark.django_db(transaction=True)
def test_a_wave_of_exchange_mailboxes_moves_every_item_class_through_a_worker(
    real_broker,
    org_a,
    endpoints,
    fake_ews,  # noqa: F811
    fake_graph,  # noqa: F811
    tmp_path,
):
    wave, mailboxes, boxes = _wave(
        org_a, endpoints, fake_ews, fake_graph, tmp_path, 3, starts_in=dt.timedelta(hours=2)
    )
    assert isinstance(wave_engine(wave), ExchangeEngine)
    fake_ews.busy(every=4, back_off_ms=20)  # storms on both sides for the whole wave
    fake_graph.throttle_imports(every=5, status=429, retry_after="0.02")
    ids = [m.pk for m in mailboxes]

    with start_worker(real_broker, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        assert wave_tick()["claimed"] == 3  # pre-stage: the window opens in two hours
        synced = _wait(lambda: Mailbox.objects.filter(pk__in=ids, state=M.SYNCED).count() == 3)
        assert synced, list(Mailbox.objects.filter(pk__in=ids).values_list("state", "last_error_message"))
        for box in boxes:
            assert box.arrived() == box.expected()
            _change_every_class(box)
        fake_graph.throttle_imports(every=3, status=503, retry_after="0.02")
        open_window = timezone.now() - dt.timedelta(minutes=1)
        _retry_locked(lambda: Wave.objects.filter(pk=wave.pk).update(starts_at=open_window))
        _retry_locked(wave_tick)  # the window is open: the cutover delta
        done = _wait(lambda: Wave.objects.get(pk=wave.pk).status == Wave.Status.COMPLETED)
        assert done, list(
            Mailbox.objects.filter(pk__in=ids).values_list(
                "state", "cutover_step", "switch_status", "last_error_code", "last_error_message"
            )
        )

    for mailbox, box in zip(Mailbox.objects.filter(pk__in=ids).order_by("id"), boxes, strict=True):
        assert mailbox.state == M.MIGRATED, mailbox.last_error_message
        assert box.arrived() == box.expected()  # every item once, in its folder, byte for byte
        classes = mailbox.checkpoint["classes"]
        assert classes["calendar"] == {"copied": 4, "total": 4} and classes["notes"] == {
            "copied": 0,
            "total": 0,
        }
    assert fake_ews.requests["ExportItems"] and fake_graph.import_requests["throttled"] > 0


def test_a_mailbox_the_service_account_may_not_impersonate_fails_with_a_clear_reason(
    db,
    org_a,
    endpoints,
    fake_ews,  # noqa: F811
    fake_graph,  # noqa: F811
    tmp_path,
):
    wave, [mailbox], [box] = _wave(org_a, endpoints, fake_ews, fake_graph, tmp_path, 1)
    fake_ews.refuse_impersonation(box.address)

    wave_tick(now=timezone.now())
    mailbox_run_sync(mailbox_id=mailbox.pk)

    mailbox.refresh_from_db()
    assert mailbox.state == M.FAILED and mailbox.last_error_code == IMPERSONATION_REFUSED
    assert "ApplicationImpersonation" in mailbox.last_error_message
