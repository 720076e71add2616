"""Readiness checks: pre-flight for every mailbox of an organisation, through the (eager) tasks, each written
ready or blocked with a code and a reason; transient trouble retried, never blocked; permissions."""

import pytest
from django.core.exceptions import PermissionDenied, ValidationError

from migrations_app.engines import THROTTLED, Engine, PreflightResult, RetryableError, register_engine
from migrations_app.engines.simulated import SimulatedEngine
from migrations_app.models import Endpoint, Event, Mailbox, ProgrammeSettings, ReadinessCheck, Wave
from migrations_app.services.readiness import checks
from migrations_app.services.readiness.checks import (
    NoSlot,
    readiness_batch_run,
    readiness_check_dispatch,
    readiness_check_start,
    readiness_recheck_due,
)
from migrations_app.services.readiness.leavers import mailbox_retire
from tests.readiness_fixtures import inventoried

M = Mailbox.State


def test_it_writes_every_mailbox_ready_or_blocked_with_a_code_and_reason(
    org_a, admin_a, preflight_rates, run_check
):
    preflight_rates({"NOT_LICENSED": 0.3})
    boxes = inventoried(org_a, 40)
    check = run_check(actor=admin_a, organisation=org_a)
    assert check.status == ReadinessCheck.Status.SUCCEEDED
    assert (check.total, check.ready + check.blocked, check.unchecked) == (40, 40, 0)
    blocked = Mailbox.objects.filter(state=M.BLOCKED)
    assert blocked.count() == check.blocked > 0
    assert set(blocked.values_list("blocked_code", flat=True)) == {"NOT_LICENSED"}
    assert all("licence" in reason for reason in blocked.values_list("blocked_reason", flat=True))
    assert Mailbox.objects.filter(state=M.READY, blocked_code="").count() == check.ready
    assert not Mailbox.objects.filter(checked_at__isnull=True).exists()
    # the same mailboxes again: the same outcome (the simulated engine draws by seed)
    engine = SimulatedEngine(instant=True, preflight_rates={"NOT_LICENSED": 0.3})
    from migrations_app.engines import EndpointSpec, MailboxSpec

    expected_blocked = {
        b.pk
        for b in boxes
        if not engine.preflight(
            MailboxSpec(
                b.email, EndpointSpec("simulated"), EndpointSpec("simulated"), target_user=b.email, seed=b.pk
            )
        ).ok
    }
    assert set(blocked.values_list("pk", flat=True)) == expected_blocked


def test_each_state_change_is_an_event(org_a, admin_a, preflight_rates, run_check):
    preflight_rates({"TARGET_MISSING": 0.5})
    inventoried(org_a, 10)
    run_check(actor=admin_a, organisation=org_a)
    events = Event.objects.filter(action__in=["mailbox.ready", "mailbox.blocked"])
    assert events.count() == 10
    assert set(events.values_list("from_state", flat=True)) == {M.INVENTORIED}
    blocked_event = events.filter(action="mailbox.blocked").first()
    assert blocked_event.to_state == M.BLOCKED and blocked_event.message == "TARGET_MISSING"
    assert Event.objects.filter(action="readiness.check_finished", organisation=org_a).exists()


def test_checking_again_after_a_fix_makes_the_mailbox_ready(org_a, admin_a, preflight_rates, run_check):
    preflight_rates({"TARGET_MISSING": 0.5})
    inventoried(org_a, 20)
    run_check(actor=admin_a, organisation=org_a)
    box = Mailbox.objects.filter(state=M.BLOCKED).first()
    # the simulated target knows the mailbox under another UPN: correct it, as an inventory fix would
    for n in range(50):
        Mailbox.objects.filter(pk=box.pk).update(target_upn=f"fixed{n}@nhs.net")
        check = run_check(actor=admin_a, organisation=org_a)
        box.refresh_from_db()
        if box.state == M.READY:
            break
    assert box.state == M.READY and box.blocked_code == "" and box.blocked_reason == ""
    assert check.status == ReadinessCheck.Status.SUCCEEDED


class FlakyEngine(Engine):
    """Busy for the first `busy` calls per mailbox, then ready."""

    kind = "flaky"
    calls: dict = {}
    busy = 1

    def preflight(self, spec):
        n = FlakyEngine.calls[spec.email] = FlakyEngine.calls.get(spec.email, 0) + 1
        if n <= FlakyEngine.busy:
            raise RetryableError(THROTTLED, "slow down", retry_after=1)
        return PreflightResult(ok=True)

    def sync(self, spec, checkpoint=None, progress=None):
        raise NotImplementedError

    def verify(self, spec):
        raise NotImplementedError


@pytest.fixture
def flaky(settings):
    register_engine("flaky", "tests.services.readiness.test_checks:FlakyEngine")
    FlakyEngine.calls = {}
    source = Endpoint.objects.create(name="flaky source", kind="imap", role="source", max_concurrency=5)
    programme = ProgrammeSettings.load()
    programme.readiness_source_endpoint = source
    programme.save()
    settings.MIGRATION_ENGINE_OPTIONS = {**settings.MIGRATION_ENGINE_OPTIONS, "imap": {}}
    return source


def _use_flaky(monkeypatch):
    monkeypatch.setattr(checks._Sides, "engine", lambda self: FlakyEngine())


def test_transient_trouble_is_retried_not_blocked(org_a, admin_a, flaky, monkeypatch, run_check):
    _use_flaky(monkeypatch)
    FlakyEngine.busy = 2
    inventoried(org_a, 5)
    check = run_check(actor=admin_a, organisation=org_a)
    assert (check.status, check.ready, check.blocked) == (ReadinessCheck.Status.SUCCEEDED, 5, 0)
    assert set(FlakyEngine.calls.values()) == {3}
    assert not Mailbox.objects.filter(state=M.BLOCKED).exists()


def test_past_the_retry_limit_a_mailbox_is_left_as_it_was_and_counted_not_checked(
    org_a, admin_a, flaky, monkeypatch, run_check, settings
):
    _use_flaky(monkeypatch)
    FlakyEngine.busy = 100
    settings.READINESS_RETRY_LIMIT = 3
    inventoried(org_a, 4)
    check = run_check(actor=admin_a, organisation=org_a)
    assert (check.status, check.ready, check.blocked, check.unchecked) == ("succeeded", 0, 0, 4)
    assert set(Mailbox.objects.values_list("state", flat=True)) == {M.INVENTORIED}
    assert set(FlakyEngine.calls.values()) == {3}


def test_a_full_endpoint_holds_the_batch_back_and_writes_nothing(org_a, admin_a, flaky, monkeypatch):
    _use_flaky(monkeypatch)
    FlakyEngine.busy = 0
    boxes = inventoried(org_a, 3)
    # the endpoint's five slots are taken by copies running on it
    wave = Wave.objects.create(
        name="w",
        kind="evening",
        starts_at="2026-06-01T17:00Z",
        ends_at="2026-06-02T05:00Z",
        capacity_mailboxes=10,
        capacity_bytes=10**12,
        status="running",
        source_endpoint=flaky,
    )
    inventoried(org_a, 5)
    Mailbox.objects.exclude(pk__in=[b.pk for b in boxes]).update(wave=wave, state=M.SYNCING)
    check = ReadinessCheck.objects.create(organisation=org_a, status="running", total=3)
    with pytest.raises(NoSlot):
        readiness_batch_run(check_id=check.pk, mailbox_ids=[b.pk for b in boxes])
    assert set(Mailbox.objects.filter(pk__in=[b.pk for b in boxes]).values_list("state", flat=True)) == {
        M.INVENTORIED
    }
    # one copy finishes: a slot is free, the batch runs
    Mailbox.objects.filter(pk=Mailbox.objects.filter(state=M.SYNCING).first().pk).update(state=M.MIGRATED)
    assert readiness_batch_run(check_id=check.pk, mailbox_ids=[b.pk for b in boxes])["ready"] == 3


def test_a_mailbox_retired_meanwhile_is_left_retired(org_a, admin_a, preflight_rates):
    boxes = inventoried(org_a, 3)
    check = ReadinessCheck.objects.create(organisation=org_a, status="running", total=3)
    mailbox_retire(mailbox=boxes[0], actor=admin_a, reason="left the trust")
    written = readiness_batch_run(check_id=check.pk, mailbox_ids=[b.pk for b in boxes])
    assert (written["ready"], written["unchecked"]) == (2, 1)
    boxes[0].refresh_from_db()
    assert boxes[0].state == M.RETIRED
    check.refresh_from_db()
    assert check.status == "succeeded"


def test_a_check_of_nothing_finishes_at_once(org_a, admin_a, run_check):
    check = run_check(actor=admin_a, organisation=org_a)
    assert (check.status, check.total) == ("succeeded", 0)


def test_a_second_start_while_one_runs_returns_the_running_one(org_a, admin_a):
    first = readiness_check_start(actor=admin_a, organisation=org_a)
    assert readiness_check_start(actor=admin_a, organisation=org_a) == first


def test_dispatch_is_idempotent(org_a, admin_a, preflight_rates, run_check):
    inventoried(org_a, 3)
    check = run_check(actor=admin_a, organisation=org_a)
    assert readiness_check_dispatch(check_id=check.pk).status == "succeeded"
    check.refresh_from_db()
    assert check.ready == 3


def test_a_trust_admin_cannot_check_another_organisation(org_a, org_b, admin_b):
    with pytest.raises(PermissionDenied):
        readiness_check_start(actor=admin_b, organisation=org_a)


def test_a_trust_admin_cannot_check_another_organisations_mailboxes(org_a, org_b, admin_b):
    theirs = inventoried(org_a, 1) + inventoried(org_b, 1)
    with pytest.raises(PermissionDenied):
        readiness_check_start(actor=admin_b, mailbox_ids=[b.pk for b in theirs])


def test_a_viewer_cannot_check(org_a, viewer):
    with pytest.raises(PermissionDenied):
        readiness_check_start(actor=viewer, organisation=org_a)


def test_only_the_programme_office_checks_a_wave(org_a, admin_a, officer):
    wave = Wave.objects.create(
        name="w",
        kind="evening",
        starts_at="2026-06-01T17:00Z",
        ends_at="2026-06-02T05:00Z",
        capacity_mailboxes=10,
        capacity_bytes=10**12,
    )
    with pytest.raises(PermissionDenied):
        readiness_check_start(actor=admin_a, wave=wave)
    assert readiness_check_start(actor=officer, wave=wave).wave == wave


def test_it_refuses_an_empty_choice(admin_a):
    with pytest.raises(ValidationError):
        readiness_check_start(actor=admin_a, mailbox_ids=[])


def test_the_beat_rechecks_stale_and_changed_mailboxes_only(
    org_a, admin_a, preflight_rates, run_check, django_capture_on_commit_callbacks
):
    import datetime as dt

    from django.utils import timezone

    boxes = inventoried(org_a, 6)
    run_check(actor=admin_a, organisation=org_a)
    now = timezone.now()
    old = now - dt.timedelta(hours=ProgrammeSettings.load().readiness_recheck_hours + 1)
    Mailbox.objects.filter(pk=boxes[0].pk).update(checked_at=old)  # stale
    Mailbox.objects.filter(pk=boxes[1].pk).update(checked_at=None)  # its inventory row changed
    inventoried(org_a, 1)  # never checked: the trust admin runs that one
    with django_capture_on_commit_callbacks(execute=True):
        check = readiness_recheck_due(now=now)
    check.refresh_from_db()
    assert sorted(check.mailbox_ids) == sorted([boxes[0].pk, boxes[1].pk])
    assert (check.status, check.ready) == ("succeeded", 2)
    assert readiness_recheck_due(now=now) is None  # nothing due any more


def test_the_programme_office_checks_every_mailbox_never_checked(
    org_a, org_b, admin_a, officer, preflight_rates, run_check
):
    inventoried(org_a, 3)
    run_check(actor=admin_a, organisation=org_a)
    inventoried(org_b, 4)
    with pytest.raises(PermissionDenied):
        readiness_check_start(actor=admin_a, unchecked=True)
    check = run_check(actor=officer, unchecked=True)
    assert (check.total, check.ready, check.status) == (
        4,
        4,
        "succeeded",
    )  # org_a's three were checked already
    assert not Mailbox.objects.filter(checked_at__isnull=True).exists()


def test_a_check_larger_than_a_batch_runs_in_several(org_a, admin_a, preflight_rates, run_check, settings):
    settings.READINESS_BATCH_MAILBOXES = 4
    inventoried(org_a, 10)
    check = run_check(actor=admin_a, organisation=org_a)
    assert (check.total, check.ready, check.status) == (10, 10, "succeeded")
    assert Event.objects.filter(action="readiness.check_finished").count() == 1
