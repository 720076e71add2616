"""One thread per worker process keeps every run's lease: many runs' heartbeats in one statement, a fence
answered now, a lost or paused lease told apart, and no connection held once the runs are gone."""

import datetime as dt
import threading
import time

import pytest
from django.db import connection, connections
from django.utils import timezone

from migrations_app.models import Mailbox
from migrations_app.services.execution.lease import LOST, OURS, PAUSED, LeaseHub, LeaseKeeper, leases_renew
from migrations_app.services.execution.states import LeaseLost, PauseRequested
from tests.conftest import skip_or_fail
from tests.execution_fixtures import approved_wave

LONG_AGO = timezone.now() - dt.timedelta(minutes=5)


def _leased(org, count):
    _, mailboxes = approved_wave(org, count)
    for i, mailbox in enumerate(mailboxes):
        Mailbox.objects.filter(pk=mailbox.pk).update(
            state=Mailbox.State.SYNCING, lease=f"lease-{i}", heartbeat_at=LONG_AGO
        )
    return [(m.pk, f"lease-{i}") for i, m in enumerate(mailboxes)]


@pytest.mark.django_db
def test_many_leases_are_renewed_in_one_go_and_a_loss_is_told_from_a_pause(org_a):
    leases = dict(_leased(org_a, 6))
    (lost_id, _), (paused_id, _) = list(leases.items())[:2]
    Mailbox.objects.filter(pk=lost_id).update(lease="another-run")
    Mailbox.objects.filter(pk=paused_id).update(paused=True)

    states = leases_renew(leases)

    assert states.pop(lost_id) == LOST
    assert states.pop(paused_id) == PAUSED
    assert set(states.values()) == {OURS}
    renewed = Mailbox.objects.filter(pk__in=list(states)).values_list("heartbeat_at", flat=True)
    assert all(at > LONG_AGO for at in renewed)
    # neither the lost nor the paused one got a heartbeat
    assert set(
        Mailbox.objects.filter(pk__in=[lost_id, paused_id]).values_list("heartbeat_at", flat=True)
    ) == {LONG_AGO}


def _hub_threads():
    return [t for t in threading.enumerate() if t.name == "lease-hub" and t.is_alive()]


@pytest.mark.django_db(transaction=True)
def test_one_thread_keeps_every_run_of_a_process_alive_and_fences_answer_at_once(org_a, settings):
    settings.MIGRATION_HEARTBEAT_SECONDS = 0.3
    settings.MIGRATION_HEARTBEAT_STALE_SECONDS = 60
    leases = _leased(org_a, 40)
    keepers = [LeaseKeeper(pk, lease).start() for pk, lease in leases]
    try:
        assert len(_hub_threads()) == 1  # forty runs, one thread (and one connection) for their leases
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if not Mailbox.objects.filter(heartbeat_at__lte=LONG_AGO).exists():
                break
            time.sleep(0.1)
        assert not Mailbox.objects.filter(heartbeat_at__lte=LONG_AGO).exists(), "a lease was not renewed"

        # Another run takes one mailbox and a person pauses another: their runs' next fence stops them.
        Mailbox.objects.filter(pk=leases[0][0]).update(lease="another-run")
        Mailbox.objects.filter(pk=leases[1][0]).update(paused=True)
        started = time.monotonic()
        with pytest.raises(LeaseLost):
            keepers[0].fence()
        with pytest.raises(PauseRequested):
            keepers[1].fence()
        keepers[2].fence()  # still ours: no error
        assert time.monotonic() - started < 5  # answered now, not at the next beat
    finally:
        for keeper in keepers:
            keeper.stop()
        connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_the_hub_lets_its_connection_go_when_no_run_is_left(org_a):
    if connection.vendor != "postgresql":
        skip_or_fail("counts PostgreSQL sessions (pg_stat_activity): set DATABASE_URL=postgres://...")
    ((pk, lease),) = _leased(org_a, 1)
    keeper = LeaseKeeper(pk, lease).start()
    keeper.fence()  # the hub has used its connection
    keeper.stop()

    def others():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
            )
            return cursor.fetchone()[0]

    deadline = time.monotonic() + 5
    while others() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert others() == 0
    assert LeaseHub.for_this_process().alive()  # idle, ready for the next run
