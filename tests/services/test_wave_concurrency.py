"""Two programme officers approving the same wave at the same moment, on PostgreSQL: two threads, each with
its own connection, released together by a barrier. Exactly one approval counts."""

import threading

import pytest
from django.db import connection

from migrations_app.models import Decision, Mailbox, Wave
from migrations_app.services.waves import WaveConflict, wave_approve, wave_go, wave_propose
from tests.factories import UserFactory
from tests.wave_fixtures import ready_mailboxes, wave_with


@pytest.mark.django_db(transaction=True)
def test_two_approvers_at_the_same_moment_one_wins(postgres, org_a, officer, admin_a):
    ready_mailboxes(org_a, 50)
    wave = wave_with(org_a)
    wave_propose(wave=wave, actor=officer)
    wave_go(wave=wave, organisation=org_a, actor=admin_a)
    approvers = [UserFactory(username=f"approver{i}", role="programme_office") for i in range(2)]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def approve(user):
        try:
            stale = Wave.objects.get(pk=wave.pk)  # both read "proposed"
            barrier.wait(timeout=10)
            wave_approve(wave=stale, actor=user)
            outcomes.append("approved")
        except WaveConflict:
            outcomes.append("conflict")
        finally:
            connection.close()

    threads = [threading.Thread(target=approve, args=(user,)) for user in approvers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(outcomes) == ["approved", "conflict"]
    assert Decision.objects.filter(wave=wave, kind="approve").count() == 1
    assert Mailbox.objects.filter(wave=wave, state="scheduled").count() == 50
    assert Wave.objects.get(pk=wave.pk).approved_by_id in {u.pk for u in approvers}
