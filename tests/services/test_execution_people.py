"""Retry, roll back and retry-by-code: who may, and what each does."""

import pytest
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from migrations_app.models import Event, Mailbox
from migrations_app.services.execution import (
    MailboxConflict,
    mailbox_retry,
    mailbox_rollback,
    wave_retry_failures,
)
from tests.execution_fixtures import approved_wave

M = Mailbox.State


@pytest.fixture
def failed(db, org_a):
    wave, mailboxes = approved_wave(org_a, 3, now=timezone.now())
    codes = ["AUTH_FAILED", "AUTH_FAILED", "OVER_QUOTA"]
    for mailbox, code in zip(mailboxes, codes, strict=True):
        Mailbox.objects.filter(pk=mailbox.pk).update(
            state=M.FAILED, last_error_code=code, last_error_message="no", attempts=3
        )
        mailbox.refresh_from_db()
    return wave, mailboxes


def test_a_trust_admin_retries_a_failed_mailbox_of_their_own_organisation(failed, admin_a):
    wave, [mailbox, *_] = failed
    mailbox_retry(mailbox=mailbox, actor=admin_a)
    mailbox.refresh_from_db()
    assert (mailbox.state, mailbox.attempts, mailbox.last_error_code) == (M.SCHEDULED, 0, "")
    event = Event.objects.get(mailbox_id=mailbox.pk, action="mailbox.retried")
    assert (event.actor_id, event.from_state, event.to_state) == (admin_a.pk, M.FAILED, M.SCHEDULED)


def test_the_programme_office_retries_any_mailbox(failed, officer):
    wave, [mailbox, *_] = failed
    assert mailbox_retry(mailbox=mailbox, actor=officer).state == M.SCHEDULED


@pytest.mark.parametrize("who", ["admin_b", "viewer"])
def test_it_refuses_others(failed, who, request):
    wave, [mailbox, *_] = failed
    actor = request.getfixturevalue(who)
    with pytest.raises(PermissionDenied):
        mailbox_retry(mailbox=mailbox, actor=actor)
    with pytest.raises(PermissionDenied):
        mailbox_rollback(mailbox=mailbox, actor=actor)
    mailbox.refresh_from_db()
    assert mailbox.state == M.FAILED


def test_rollback_returns_the_mailbox_to_ready_out_of_its_wave(failed, admin_a):
    wave, [mailbox, *_] = failed
    mailbox_rollback(mailbox=mailbox, actor=admin_a, reason="not ready after all")
    mailbox.refresh_from_db()
    assert (mailbox.state, mailbox.wave_id, mailbox.carried_over) == (M.READY, None, False)
    event = Event.objects.get(mailbox_id=mailbox.pk, action="mailbox.rolled_back")
    assert event.wave_id == wave.pk and event.message == "not ready after all"


def test_rollback_is_refused_while_a_worker_runs_the_mailbox(failed, officer):
    wave, [mailbox, *_] = failed
    Mailbox.objects.filter(pk=mailbox.pk).update(state=M.SYNCING)
    with pytest.raises(MailboxConflict):
        mailbox_rollback(mailbox=mailbox, actor=officer)
    mailbox.refresh_from_db()
    assert mailbox.state == M.SYNCING and mailbox.wave_id == wave.pk


def test_retry_failures_of_one_code_leaves_the_others(failed, officer):
    wave, [one, two, quota] = failed
    assert wave_retry_failures(wave=wave, actor=officer, code="AUTH_FAILED") == 2
    states = dict(Mailbox.objects.filter(wave=wave).values_list("pk", "state"))
    assert states == {one.pk: M.SCHEDULED, two.pk: M.SCHEDULED, quota.pk: M.FAILED}
    assert Event.objects.filter(wave_id=wave.pk, action="mailbox.retried").count() == 2


@pytest.mark.parametrize("who", ["admin_a", "viewer"])
def test_retry_failures_is_for_the_programme_office(failed, who, request):
    wave, _ = failed
    with pytest.raises(PermissionDenied):
        wave_retry_failures(wave=wave, actor=request.getfixturevalue(who), code="AUTH_FAILED")
