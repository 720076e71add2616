"""The cutover's switch: final delta -> switch -> catch-up delta -> verify -> migrated, with each switcher; a crash
at each step resumes without switching twice; roll back switches back first."""

import datetime as dt

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from migrations_app.engines import get_engine
from migrations_app.models import Event, Mailbox
from migrations_app.services.execution import (
    mailbox_rollback,
    mailbox_run_cutover,
    mailbox_run_sync,
    mailbox_switch_confirm,
    reconcile_stale,
    wave_tick,
)
from migrations_app.switchers.powershell import ExchangePowerShellSwitcher
from tests.execution_fixtures import approved_wave
from tests.switch_fixtures import ROUTING_DOMAIN, switch_endpoint

M = Mailbox.State
S = Mailbox.SwitchStatus


@pytest.fixture(autouse=True)
def instant_engine(settings):
    settings.MIGRATION_ENGINE_OPTIONS = {"simulated": {"instant": True, "chunk_bytes": 100_000}}


def _wave(org, method, count=1, **endpoint):
    source = switch_endpoint(method, **endpoint)
    wave, mailboxes = approved_wave(org, count, starts_in=dt.timedelta(minutes=-5), source_endpoint=source)
    return wave, mailboxes


def _actions(mailbox):
    return list(Event.objects.filter(mailbox_id=mailbox.pk).order_by("id").values_list("action", flat=True))


def _run(mailbox):
    """Claim (the tick) and run its sync, which goes straight on to its cutover: the window is open."""
    wave_tick()
    mailbox_run_sync(mailbox_id=mailbox.pk)
    mailbox.refresh_from_db()
    return mailbox


def test_a_cutover_routes_the_mailbox_through_exchange_powershell_between_its_two_deltas(
    org_a, fake_exchange_ps
):
    wave, [mailbox] = _wave(org_a, "exchange-powershell")
    fake_exchange_ps.add_mailbox(mailbox.email)

    mailbox = _run(mailbox)

    assert (mailbox.state, mailbox.switch_status, mailbox.last_error_code) == (M.MIGRATED, S.SWITCHED, "")
    assert mailbox.switched_at is not None
    local = mailbox.email.split("@")[0]
    assert fake_exchange_ps.routed_to(mailbox.email) == f"smtp:{local}@{ROUTING_DOMAIN}"
    assert _actions(mailbox)[-6:] == [
        "mailbox.claimed",  # straight on to its cutover
        "mailbox.final_delta",
        "mailbox.switch_requested",
        "mailbox.switched",
        "mailbox.verifying",  # after the catch-up delta
        "mailbox.migrated",
    ]
    switched = Event.objects.get(mailbox_id=mailbox.pk, action="mailbox.switched")
    assert switched.data == {"method": "exchange-powershell", "routing_address": f"{local}@{ROUTING_DOMAIN}"}


def test_a_mailbox_exchange_does_not_know_fails_with_a_stable_code_and_is_not_migrated(
    org_a, fake_exchange_ps
):
    wave, [mailbox] = _wave(org_a, "exchange-powershell")  # not added to the fake Exchange

    mailbox = _run(mailbox)

    assert (mailbox.state, mailbox.last_error_code) == (M.FAILED, "MAILBOX_NOT_FOUND")
    assert mailbox.switch_status == S.REQUESTED  # asked, never confirmed: a retry reads back first


def test_a_busy_exchange_is_retried_later_and_the_mailbox_switched_once(org_a, fake_exchange_ps):
    wave, [mailbox] = _wave(org_a, "exchange-powershell", switch_sessions=1)
    fake_exchange_ps.add_mailbox(mailbox.email)
    fake_exchange_ps.busy_for(1)

    mailbox = _run(mailbox)
    assert (mailbox.state, mailbox.last_error_code) == (M.SYNCED, "SERVER_BUSY")
    assert mailbox.retry_at is not None

    wave_tick(now=mailbox.retry_at + dt.timedelta(seconds=1))
    mailbox_run_cutover(mailbox_id=mailbox.pk)
    mailbox.refresh_from_db()

    assert (mailbox.state, mailbox.switch_status) == (M.MIGRATED, S.SWITCHED)
    assert len(fake_exchange_ps.calls("Set-Mailbox")) == 1  # the refused attempt never reached a cmdlet


def test_a_manual_switch_waits_in_switching_until_a_person_confirms(
    org_a, admin_a, admin_b, django_capture_on_commit_callbacks
):
    wave, [mailbox] = _wave(org_a, "manual")

    mailbox = _run(mailbox)
    assert (mailbox.state, mailbox.switch_status, mailbox.cutover_step) == (
        M.SWITCHING,
        S.REQUESTED,
        "switch",
    )
    assert mailbox.lease == ""  # no worker waits for a person
    assert mailbox.switch_deadline is None  # nor does a clock: it waits until the person confirms

    with pytest.raises(PermissionDenied):
        mailbox_switch_confirm(mailbox=mailbox, actor=admin_b, reason="not theirs")
    with django_capture_on_commit_callbacks(execute=True):
        mailbox_switch_confirm(mailbox=mailbox, actor=admin_a, reason="forwarding set in EMC")
    mailbox.refresh_from_db()

    assert (mailbox.state, mailbox.switch_status) == (M.MIGRATED, S.SWITCHED)
    confirmed = Event.objects.get(mailbox_id=mailbox.pk, action="mailbox.switched")
    assert (confirmed.actor, confirmed.message) == (admin_a, "forwarding set in EMC")


def test_a_webhook_switch_not_confirmed_in_time_fails_with_switch_timeout(org_a, settings, monkeypatch):
    from migrations_app.switchers import Routing
    from migrations_app.switchers.webhook import WebhookSwitcher

    asked = []
    monkeypatch.setattr(
        WebhookSwitcher,
        "switch",
        lambda self, targets: asked.extend(targets) or {t.mailbox_id: Routing.PENDING for t in targets},
    )  # fmt: skip  (the HTTP side is tested in tests/switchers/test_webhook.py)
    wave, [mailbox] = _wave(
        org_a, "webhook", switch_address="https://switch.trust.example/", switch_timeout_seconds=600
    )

    mailbox = _run(mailbox)
    assert mailbox.state == M.SWITCHING
    assert mailbox.switch_deadline > timezone.now() + dt.timedelta(seconds=590)
    assert asked[0].request_id == f"switch-{mailbox.pk}-{int(mailbox.switch_deadline.timestamp())}"

    assert "switch_timeouts" not in wave_tick(now=mailbox.switch_deadline - dt.timedelta(seconds=1))
    assert wave_tick(now=mailbox.switch_deadline + dt.timedelta(seconds=1))["switch_timeouts"] == 1
    mailbox.refresh_from_db()
    assert (mailbox.state, mailbox.last_error_code) == (M.FAILED, "SWITCH_TIMEOUT")


# --- a crash at each step ----------------------------------------------------------------------------------


class Crash(BaseException):
    """The worker dies here (not an error the runner handles)."""


class CrashingEngine:
    """The simulated engine, dying on the n-th call of `method` (once)."""

    def __init__(self, method, n):
        self.engine = get_engine("simulated", instant=True, chunk_bytes=100_000)
        self.method, self.n, self.calls = method, n, 0

    def __getattr__(self, name):
        attr = getattr(self.engine, name)
        if name != self.method:
            return attr

        def call(*args, **kwargs):
            self.calls += 1
            if self.calls == self.n:
                raise Crash(name)
            return attr(*args, **kwargs)

        return call


def _crash_switch(monkeypatch, *, after_switching):
    real = ExchangePowerShellSwitcher.switch
    state = {"crashed": False}

    def switch(self, targets):
        if state["crashed"]:
            return real(self, targets)
        state["crashed"] = True
        if after_switching:
            real(self, targets)
        raise Crash("switch")

    monkeypatch.setattr(ExchangePowerShellSwitcher, "switch", switch)


@pytest.mark.parametrize(
    "step",
    ["final_delta", "before_the_switch", "after_the_switch_before_it_is_recorded", "catch_up", "verify"],
)
def test_a_crash_at_each_step_resumes_without_switching_twice(org_a, fake_exchange_ps, monkeypatch, step):
    wave, [mailbox] = _wave(org_a, "exchange-powershell")
    fake_exchange_ps.add_mailbox(mailbox.email)
    wave_tick()
    mailbox_run_sync(mailbox_id=mailbox.pk)  # window open: synced and straight on; switched and migrated ...
    mailbox.refresh_from_db()
    assert mailbox.state == M.MIGRATED  # ... so use a second mailbox for the crash
    [second] = approved_wave(
        org_a, 1, starts_in=dt.timedelta(minutes=-5), source_endpoint=wave.source_endpoint
    )[1]
    fake_exchange_ps.add_mailbox(second.email)
    Mailbox.objects.filter(pk=second.pk).update(state=M.CUTOVER)  # claimed for its cutover
    engine = None
    if step == "final_delta":
        engine = CrashingEngine("cutover", 1)  # the deltas are engine.cutover (pipeline)
    elif step == "catch_up":
        engine = CrashingEngine("cutover", 2)
    elif step == "verify":
        engine = CrashingEngine("verify", 1)
    else:
        _crash_switch(monkeypatch, after_switching=step.startswith("after"))

    with pytest.raises(Crash):
        mailbox_run_cutover(mailbox_id=second.pk, engine=engine)
    second.refresh_from_db()
    assert second.state in (M.CUTOVER, M.VERIFYING) and second.lease  # its worker is gone, its lease held
    recorded = {"final_delta": "", "catch_up": S.SWITCHED, "verify": S.SWITCHED}.get(step, S.REQUESTED)
    assert second.switch_status == recorded
    assert bool(fake_exchange_ps.routed_to(second.email)) == (
        step.startswith("after") or recorded == S.SWITCHED
    )

    # The reconciler finds its heartbeat stale and hands it to a new run, which resumes it.
    stale = timezone.now() + dt.timedelta(hours=1)
    assert reconcile_stale(now=stale) == [second.pk]
    mailbox_run_cutover(mailbox_id=second.pk)
    second.refresh_from_db()

    assert (second.state, second.switch_status) == (M.MIGRATED, S.SWITCHED)
    assert [c["identity"] for c in fake_exchange_ps.calls("Set-Mailbox")].count(second.email) == 1
    assert _actions(second).count("mailbox.switched") == 1


# --- roll back ---------------------------------------------------------------------------------------------


def test_rolling_back_a_migrated_mailbox_switches_its_mail_back_to_the_source_first(
    org_a, officer, fake_exchange_ps, django_capture_on_commit_callbacks
):
    wave, [mailbox] = _wave(org_a, "exchange-powershell")
    fake_exchange_ps.add_mailbox(mailbox.email)
    mailbox = _run(mailbox)
    assert fake_exchange_ps.routed_to(mailbox.email)

    with django_capture_on_commit_callbacks(execute=True):
        mailbox_rollback(mailbox=mailbox, actor=officer, reason="clinic system cannot reach Exchange Online")
    mailbox.refresh_from_db()

    assert fake_exchange_ps.routed_to(mailbox.email) is None  # the source receives its mail again
    assert (mailbox.state, mailbox.wave_id, mailbox.switch_status) == (M.READY, None, S.UNSWITCHED)
    assert _actions(mailbox)[-3:] == [
        "mailbox.unswitch_requested",
        "mailbox.unswitched",
        "mailbox.rolled_back",
    ]
    rolled_back = Event.objects.get(mailbox_id=mailbox.pk, action="mailbox.rolled_back")
    assert rolled_back.actor == officer
    assert "switched back first: mail is delivered to the source again" in rolled_back.message


def test_a_failed_switch_back_leaves_the_mailbox_switched_and_says_why(
    org_a, officer, fake_exchange_ps, django_capture_on_commit_callbacks
):
    wave, [mailbox] = _wave(org_a, "exchange-powershell")
    fake_exchange_ps.add_mailbox(mailbox.email)
    mailbox = _run(mailbox)
    fake_exchange_ps.remove_role()

    with django_capture_on_commit_callbacks(execute=True):
        mailbox_rollback(mailbox=mailbox, actor=officer, reason="wrong wave")
    mailbox.refresh_from_db()

    assert (mailbox.state, mailbox.switch_status) == (M.MIGRATED, S.SWITCHED)
    failed = Event.objects.get(mailbox_id=mailbox.pk, action="mailbox.unswitch_failed")
    assert failed.data == {"code": "ACCESS_DENIED"}


def test_rolling_back_a_manually_switched_mailbox_waits_for_the_switch_back_to_be_confirmed(
    org_a, officer, admin_a, django_capture_on_commit_callbacks
):
    wave, [mailbox] = _wave(org_a, "manual")
    mailbox = _run(mailbox)
    with django_capture_on_commit_callbacks(execute=True):
        mailbox_switch_confirm(mailbox=mailbox, actor=admin_a)
    mailbox.refresh_from_db()
    assert mailbox.state == M.MIGRATED

    with django_capture_on_commit_callbacks(execute=True):
        mailbox_rollback(mailbox=mailbox, actor=officer, reason="pilot user asked to go back")
    mailbox.refresh_from_db()
    assert (mailbox.state, mailbox.switch_status) == (M.MIGRATED, S.UNSWITCHING)
    assert _actions(mailbox)[-1] == "mailbox.unswitch_waiting"

    mailbox_switch_confirm(mailbox=mailbox, actor=admin_a, reason="forwarding removed")
    mailbox.refresh_from_db()
    assert (mailbox.state, mailbox.switch_status, mailbox.wave_id) == (M.READY, S.UNSWITCHED, None)
