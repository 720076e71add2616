"""The exchange-powershell switcher against the fake Exchange endpoint (pypsrp's classes, Exchange's answers)."""

import threading
import time

from migrations_app.engines import PermanentError, RetryableError
from migrations_app.switchers import ACCESS_DENIED, MAILBOX_NOT_FOUND, Routing, SwitchTarget, get_switcher
from migrations_app.switchers.base import SERVER_BUSY
from tests.fakes import exchange_powershell
from tests.switch_fixtures import FAKE_CLIENT

DOMAIN = "nhs.mail.onmicrosoft.com"


def _switcher(**overrides):
    config = dict(
        address="ex01.trust.nhs.uk",
        username="svc-switch",
        secret="s3cret",
        sessions=4,
        client_name=FAKE_CLIENT,
    )
    return get_switcher("exchange-powershell", **{**config, **overrides})


def _targets(n, start=1):
    return [
        SwitchTarget(mailbox_id=i, email=f"user{i}@trust.nhs.uk", identity=f"user{i}@trust.nhs.uk",
                     routing_address=f"user{i}@{DOMAIN}")
        for i in range(start, start + n)
    ]  # fmt: skip


def test_it_routes_mail_to_the_tenant_address_and_reads_it_back(fake_exchange_ps):
    targets = _targets(3)
    fake_exchange_ps.add_mailboxes(t.identity for t in targets)
    switcher = _switcher()

    assert switcher.read_back(targets) == {1: Routing.SOURCE, 2: Routing.SOURCE, 3: Routing.SOURCE}
    assert switcher.switch(targets) == {1: Routing.TARGET, 2: Routing.TARGET, 3: Routing.TARGET}

    assert fake_exchange_ps.routed_to("user2@trust.nhs.uk") == f"smtp:user2@{DOMAIN}"
    assert fake_exchange_ps.mailbox("user2@trust.nhs.uk")["DeliverToMailboxAndForward"] is False
    assert switcher.read_back(targets) == {1: Routing.TARGET, 2: Routing.TARGET, 3: Routing.TARGET}
    sets = fake_exchange_ps.calls("Set-Mailbox")
    assert sorted(c["identity"] for c in sets) == sorted(t.identity for t in targets)


def test_it_routes_mail_back_to_the_source_on_unswitch(fake_exchange_ps):
    targets = _targets(2)
    fake_exchange_ps.add_mailboxes(t.identity for t in targets)
    switcher = _switcher()
    switcher.switch(targets)

    assert switcher.unswitch(targets) == {1: Routing.SOURCE, 2: Routing.SOURCE}
    assert fake_exchange_ps.routed_to("user1@trust.nhs.uk") is None
    assert switcher.read_back(targets) == {1: Routing.SOURCE, 2: Routing.SOURCE}


def test_it_reports_a_mailbox_exchange_does_not_know_as_not_found_and_switches_the_rest(fake_exchange_ps):
    targets = _targets(3)
    fake_exchange_ps.add_mailboxes([targets[0].identity, targets[2].identity])

    outcome = _switcher().switch(targets)

    assert outcome[1] == Routing.TARGET and outcome[3] == Routing.TARGET
    assert isinstance(outcome[2], PermanentError) and outcome[2].code == MAILBOX_NOT_FOUND
    assert "couldn't be found" in outcome[2].message


def test_it_reports_an_account_without_the_mail_recipients_role_as_access_denied(fake_exchange_ps):
    targets = _targets(1)
    fake_exchange_ps.add_mailboxes(t.identity for t in targets)
    fake_exchange_ps.remove_role()

    outcome = _switcher().switch(targets)[1]

    assert isinstance(outcome, PermanentError) and outcome.code == ACCESS_DENIED


def test_it_reports_refused_credentials_as_access_denied(fake_exchange_ps):
    targets = _targets(2)
    fake_exchange_ps.add_mailboxes(t.identity for t in targets)
    fake_exchange_ps.set_credentials("svc-switch", "the-right-one")

    outcome = _switcher(secret="wrong", sessions=1).switch(targets)

    assert {type(o) for o in outcome.values()} == {PermanentError}
    assert {o.code for o in outcome.values()} == {ACCESS_DENIED}
    assert fake_exchange_ps.calls() == []


def test_it_reports_a_runspace_over_the_throttling_policy_as_server_busy_to_retry(fake_exchange_ps):
    targets = _targets(2)
    fake_exchange_ps.add_mailboxes(t.identity for t in targets)
    fake_exchange_ps.busy_for(1)

    first = _switcher(sessions=1).switch(targets)
    assert {type(o) for o in first.values()} == {RetryableError}
    assert {o.code for o in first.values()} == {SERVER_BUSY}

    assert _switcher(sessions=1).switch(targets) == {
        1: Routing.TARGET,
        2: Routing.TARGET,
    }  # next time it opens


def test_it_keeps_to_its_cap_of_sessions_and_reuses_them_for_many_mailboxes(fake_exchange_ps, monkeypatch):
    targets = _targets(40)
    fake_exchange_ps.add_mailboxes(t.identity for t in targets)
    monkeypatch.setenv("FAKE_EXCHANGE_CMDLET_SECONDS", "0.01")
    peak = 0
    stop = threading.Event()

    def watch():
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, exchange_powershell.open_runspaces())
            time.sleep(0.001)

    watcher = threading.Thread(target=watch)
    watcher.start()
    switcher = _switcher(sessions=4)
    try:
        assert set(switcher.switch(targets).values()) == {Routing.TARGET}
        assert set(switcher.read_back(targets).values()) == {Routing.TARGET}  # the same sessions again
    finally:
        stop.set()
        watcher.join()

    assert peak == 4  # four sessions, each switching ten mailboxes, then reading ten back
    assert exchange_powershell.open_runspaces() == 4  # kept open for the next batch, not reopened per call
