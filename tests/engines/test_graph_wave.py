"""A wave with an IMAP source endpoint and a Graph (Exchange Online) target endpoint runs through the execution
services to migrated: the endpoint's tenant, client id and secret come from the Endpoint row (secret encrypted)."""

from __future__ import annotations

import time

import pytest
from celery.contrib.testing.worker import start_worker
from django.utils import timezone

from migrations_app.engines.base import NOT_LICENSED
from migrations_app.engines.graph import GraphEngine
from migrations_app.models import Endpoint, Event, Mailbox
from migrations_app.services.execution import mailbox_run_sync, wave_engine, wave_tick
from tests.engines import mailgen
from tests.engines.graph_fixtures import fake, when  # noqa: F401 - fixture
from tests.execution_fixtures import approved_wave

M = Mailbox.State


@pytest.fixture
def endpoints(dovecots, fake, settings):  # noqa: F811
    source_server = dovecots[0]
    settings.MIGRATION_ENGINE_OPTIONS = {"graph": {"http_client": fake.session(), "max_wait": 30}}
    source = Endpoint.objects.create(
        name="nhsmail-imap",
        kind="imap",
        role="source",
        address=source_server.host,
        port=source_server.tls_port,
        security="tls",
        secret=next(iter(source_server.users.values()), "") or "secret",
        options={"ca_file": str(source_server.ca_file)},
        routing_domain="trust.mail.onmicrosoft.com",  # the switch at cutover routes mail there (simulated)
    )
    target = Endpoint.objects.create(
        name="exchange-online",
        kind="graph",
        role="target",
        address=fake.tenant_id,  # tenant ID
        username=fake.client_id,  # application (client) ID
        secret=fake.client_secret,  # encrypted at rest
        options={"import_mode": "json"},
    )
    return source_server, source, target


def _mailbox_for(org, endpoints, fake, *, licensed=True):  # noqa: F811
    source_server, source, target = endpoints
    user = source_server.new_user()
    source.secret = source_server.users[user]
    source.save()
    client = mailgen.client(source_server, user)
    mailgen.append(
        client,
        "INBOX",
        [{"msg": mailgen.message(n), "flags": (b"\\Seen",), "date": when(n)} for n in range(8)],
    )
    client.logout()
    upn = f"{user}@trust.onmicrosoft.com"
    fake.add_user(upn, licensed=licensed)
    wave, [mailbox] = approved_wave(org, 1, source_endpoint=source, target_endpoint=target)
    Mailbox.objects.filter(pk=mailbox.pk).update(source_identity=user, target_upn=upn, size_bytes=0)
    return wave, mailbox, upn


def test_a_wave_moves_an_imap_mailbox_into_exchange_online(db, org_a, endpoints, fake):  # noqa: F811
    wave, mailbox, upn = _mailbox_for(org_a, endpoints, fake)
    assert isinstance(wave_engine(wave), GraphEngine)
    now = timezone.now()

    wave_tick(now=now)
    mailbox_run_sync(mailbox_id=mailbox.pk)  # its window is open: synced, then straight on to its cutover
    mailbox.refresh_from_db()
    assert mailbox.state == M.MIGRATED, mailbox.last_error_message
    assert mailbox.checkpoint["engine"] == "graph" and mailbox.items_copied == 8
    assert Event.objects.filter(mailbox_id=mailbox.pk, action="mailbox.synced").exists()
    inbox = fake.folder_by_path(upn, "inbox").messages.values()
    assert len(inbox) == 8 and all(not m["isDraft"] and m["isRead"] for m in inbox)


def test_an_unlicensed_target_fails_the_mailbox_with_a_clear_reason(db, org_a, endpoints, fake):  # noqa: F811
    wave, mailbox, upn = _mailbox_for(org_a, endpoints, fake, licensed=False)

    wave_tick(now=timezone.now())
    mailbox_run_sync(mailbox_id=mailbox.pk)

    mailbox.refresh_from_db()
    assert mailbox.state == M.FAILED
    assert mailbox.last_error_code == NOT_LICENSED
    assert "Exchange Online licence" in mailbox.last_error_message


@pytest.mark.django_db(transaction=True)
def test_a_mailbox_ten_times_the_upload_budget_is_paced_to_migrated_through_a_worker(
    real_broker,
    org_a,
    endpoints,
    fake,  # noqa: F811
    settings,
):
    budget, window = 30_000, 0.5  # Graph's 150 MB in 300 s, time scaled down: the same arithmetic
    settings.MIGRATION_ENGINE_OPTIONS = {
        "graph": {
            "http_client": fake.session(),
            "max_wait": 0.2,  # Graph's 120 s of Retry-After we wait in-line, scaled like the window
            "batch_messages": 5,
            "upload_budget_bytes": budget,
            "upload_window": window,
        }
    }
    fake.limit_uploads(budget, window_seconds=window)  # the fake refuses (429) what goes over it
    source_server, source, target = endpoints
    target.options = {"import_mode": "mime"}
    target.save()
    user = source_server.new_user()
    source.secret = source_server.users[user]
    source.save()
    client = mailgen.client(source_server, user)
    messages = [mailgen.message(n, size=3_000) for n in range(100)]
    mailgen.append(
        client, "INBOX", [{"msg": m, "flags": (), "date": when(n)} for n, m in enumerate(messages)]
    )
    client.logout()
    assert sum(len(m) for m in messages) >= 10 * budget
    upn = f"{user}@trust.onmicrosoft.com"
    fake.add_user(upn)
    wave, [mailbox] = approved_wave(org_a, 1, source_endpoint=source, target_endpoint=target)
    Mailbox.objects.filter(pk=mailbox.pk).update(source_identity=user, target_upn=upn, size_bytes=0)

    with start_worker(real_broker, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        wave_tick()
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            mailbox.refresh_from_db()
            if mailbox.state in (M.MIGRATED, M.FAILED):
                break
            time.sleep(0.2)

    assert mailbox.state == M.MIGRATED, mailbox.last_error_message
    assert mailbox.attempts == 0 and not mailbox.needed_attention
    assert len(fake.folder_by_path(upn, "inbox").messages) == 100
    assert fake.upload_over_budget == 0
    assert 0 < fake.upload_peak[fake.mailbox(upn).user_id] <= budget
