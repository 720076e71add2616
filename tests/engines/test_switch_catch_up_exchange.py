"""Nothing lost in between, for the exchange engine: an item that reaches the fake Exchange 2013 mailbox while
PowerShell switches it arrives in the fake Exchange Online once, through the catch-up delta."""

from __future__ import annotations

import datetime as dt

from migrations_app.models import Endpoint, Mailbox
from migrations_app.services.execution import mailbox_run_sync, wave_tick
from migrations_app.switchers.powershell import ExchangePowerShellSwitcher
from tests.engines.exchange_fixtures import exbox, fake_ews, fake_graph, mail_bytes  # noqa: F401 - fixtures
from tests.execution_fixtures import approved_wave

M = Mailbox.State


def test_an_item_delivered_during_the_switch_arrives_once_through_the_catch_up(
    org_a,
    exbox,  # noqa: F811
    fake_ews,  # noqa: F811
    fake_graph,  # noqa: F811
    fake_exchange_ps,
    settings,
    monkeypatch,
):
    settings.MIGRATION_ENGINE_OPTIONS = {"exchange": {"http_client": fake_graph.session(), "max_wait": 20}}
    source = Endpoint.objects.create(
        name="trust-exchange-2013",
        kind=Endpoint.Kind.EXCHANGE,
        role=Endpoint.Role.SOURCE,
        address="127.0.0.1",
        port=fake_ews.port,
        security="plain",
        username=fake_ews.username,
        secret=fake_ews.password,
        options={"auth": "basic"},
        switch_method=Endpoint.SwitchMethod.EXCHANGE_POWERSHELL,
        switch_address="ex01.trust.nhs.uk",
        switch_username="svc-switch",
        switch_secret="s3cret",
        routing_domain="trust.mail.onmicrosoft.com",
    )
    target = Endpoint.objects.create(
        name="exchange-online",
        kind=Endpoint.Kind.GRAPH,
        role=Endpoint.Role.TARGET,
        address=fake_graph.tenant_id,
        username=fake_graph.client_id,
        secret=fake_graph.client_secret,
        options={"import_mode": "json"},
    )
    wave, [mailbox] = approved_wave(
        org_a, 1, starts_in=dt.timedelta(minutes=-5), source_endpoint=source, target_endpoint=target
    )
    Mailbox.objects.filter(pk=mailbox.pk).update(
        source_identity=exbox.address, target_upn=exbox.upn, size_bytes=0
    )
    fake_exchange_ps.add_mailbox(exbox.address)
    inbox = next(f for f in exbox.store.folders.values() if exbox.store.path(f) == ["Inbox"])
    real_switch = ExchangePowerShellSwitcher.switch

    def switch_while_mail_arrives(self, targets):
        exbox.store.add_item(inbox, "IPM.Note", "Arrived during the switch", mail_bytes(950))
        return real_switch(self, targets)

    monkeypatch.setattr(ExchangePowerShellSwitcher, "switch", switch_while_mail_arrives)

    wave_tick()
    mailbox_run_sync(mailbox_id=mailbox.pk)  # window open: pre-stage, final delta, switch, catch-up, verify
    mailbox.refresh_from_db()

    assert (mailbox.state, mailbox.switch_status, mailbox.last_error_code) == (M.MIGRATED, "switched", "")
    local = exbox.upn.split("@")[0]
    assert fake_exchange_ps.routed_to(exbox.address) == f"smtp:{local}@trust.mail.onmicrosoft.com"
    arrived = exbox.arrived()
    assert arrived == exbox.expected()
    during = [key for key, n in arrived.items() if b"Message 950" in key[1]]
    assert len(during) == 1 and arrived[during[0]] == 1
