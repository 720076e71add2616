"""Nothing lost in between: mail delivered to the source (an IMAP APPEND to the Dovecot source) while a mailbox is
being switched arrives on the target through the catch-up delta, exactly once."""

import datetime as dt

import pytest

from migrations_app.models import Endpoint, Mailbox
from migrations_app.services.execution import mailbox_switch_confirm, wave_tick
from migrations_app.switchers.powershell import ExchangePowerShellSwitcher
from tests.engines import mailgen
from tests.engines.dovecot import MASTER_USER, PASSWORD
from tests.execution_fixtures import approved_wave

M = Mailbox.State


def _endpoint(server, name, role, security, **switch):
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
        **switch,
    )


def _wave(dovecots, org, **switch):
    source, target = dovecots
    wave, [mailbox] = approved_wave(
        org,
        1,
        starts_in=dt.timedelta(minutes=-1),
        source_endpoint=_endpoint(source, "Trust IMAP", Endpoint.Role.SOURCE, "tls", **switch),
        target_endpoint=_endpoint(target, "New IMAP", Endpoint.Role.TARGET, "starttls"),
    )
    src_user, tgt_user = source.new_user(), target.new_user()
    c = mailgen.client(source, src_user)
    mailgen.append(c, "INBOX", [mailgen.message(n) for n in range(4)])
    c.logout()
    Mailbox.objects.filter(pk=mailbox.pk).update(source_identity=src_user, target_upn=tgt_user, item_count=4)
    return wave, mailbox, src_user, tgt_user


def _deliver(server, user, n):
    """New mail reaches the source: the message a sender's server delivers while the routing changes."""
    c = mailgen.client(server, user)
    c.append("INBOX", mailgen.message(n, subject=f"Arrived during the switch {n}"))
    c.logout()


def _subjects(server, user):
    c = mailgen.client(server, user)
    subjects = sorted(mailgen.header(body, "Subject") for body, _, _ in mailgen.folder_contents(c, "INBOX"))
    c.logout()
    return subjects


@pytest.mark.django_db(transaction=True)
def test_mail_delivered_while_a_manual_switch_waits_arrives_once_through_the_catch_up(
    dovecots, org_a, admin_a
):
    source, target = dovecots
    wave, mailbox, src_user, tgt_user = _wave(
        dovecots, org_a, switch_method="manual", routing_domain="nhs.mail.onmicrosoft.com"
    )

    wave_tick()  # eager tasks: pre-stage, straight on to the final delta, then it waits for the person
    mailbox.refresh_from_db()
    assert mailbox.state == M.SWITCHING
    assert len(_subjects(target, tgt_user)) == 4

    _deliver(source, src_user, 100)
    _deliver(source, src_user, 101)
    mailbox_switch_confirm(mailbox=mailbox, actor=admin_a, reason="forwarding set")  # the catch-up follows
    mailbox.refresh_from_db()

    assert (mailbox.state, mailbox.items_copied) == (M.MIGRATED, 6)
    arrived = _subjects(target, tgt_user)
    assert arrived.count("Arrived during the switch 100") == 1
    assert arrived.count("Arrived during the switch 101") == 1
    assert len(arrived) == 6 and arrived == _subjects(source, src_user)


@pytest.mark.django_db(transaction=True)
def test_mail_delivered_during_the_powershell_switch_arrives_once_through_the_catch_up(
    dovecots, org_a, fake_exchange_ps, monkeypatch
):
    source, target = dovecots
    wave, mailbox, src_user, tgt_user = _wave(
        dovecots,
        org_a,
        switch_method="exchange-powershell",
        switch_address="ex01.trust.nhs.uk",
        switch_username="svc-switch",
        switch_secret="s3cret",
        routing_domain="nhs.mail.onmicrosoft.com",
    )
    fake_exchange_ps.add_mailbox(src_user)
    real_switch = ExchangePowerShellSwitcher.switch

    def switch_while_mail_arrives(self, targets):
        _deliver(source, src_user, 200)  # the last message the old routing delivers to the source
        outcome = real_switch(self, targets)
        return outcome

    monkeypatch.setattr(ExchangePowerShellSwitcher, "switch", switch_while_mail_arrives)

    wave_tick()
    mailbox.refresh_from_db()

    assert (mailbox.state, mailbox.switch_status, mailbox.items_copied) == (M.MIGRATED, "switched", 5)
    assert fake_exchange_ps.routed_to(src_user) == f"smtp:{tgt_user.split('@')[0]}@nhs.mail.onmicrosoft.com"
    arrived = _subjects(target, tgt_user)
    assert arrived.count("Arrived during the switch 200") == 1
    assert arrived == _subjects(source, src_user)
