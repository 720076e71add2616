"""Concurrency caps (overall and per endpoint) and exclusive claims, counted in the database."""

import threading

import pytest
from django.db import connection

from migrations_app.models import Endpoint, Mailbox, Wave
from migrations_app.services.execution import SYNC, mailbox_claim, mailbox_run_sync
from tests.execution_fixtures import approved_wave

M = Mailbox.State


def _running(wave: Wave) -> Wave:
    Wave.objects.filter(pk=wave.pk).update(status=Wave.Status.RUNNING)
    wave.refresh_from_db()
    return wave


def test_the_overall_cap_holds_and_a_finished_mailbox_frees_its_slot(db, org_a, settings):
    settings.MIGRATION_MAX_CONCURRENCY = 3
    settings.MIGRATION_ENGINE_OPTIONS = {"simulated": {"instant": True}}
    wave, _ = approved_wave(org_a, 10)
    wave = _running(wave)
    first = mailbox_claim(wave=wave, phase=SYNC)
    assert len(first) == 3
    assert mailbox_claim(wave=wave, phase=SYNC) == []
    mailbox_run_sync(mailbox_id=first[0])
    assert len(mailbox_claim(wave=wave, phase=SYNC)) == 1
    assert Mailbox.objects.filter(state=M.SYNCING).count() == 3


def test_an_endpoint_cap_holds_across_waves(db, org_a, org_b):
    source = Endpoint.objects.create(name="nhsmail", kind="simulated", role="source", max_concurrency=2)
    target = Endpoint.objects.create(name="exo", kind="simulated", role="target", max_concurrency=50)
    one, _ = approved_wave(org_a, 5, name="one", source_endpoint=source, target_endpoint=target)
    two, _ = approved_wave(org_b, 5, name="two", source_endpoint=source)
    one, two = _running(one), _running(two)
    assert len(mailbox_claim(wave=one, phase=SYNC)) == 2
    assert mailbox_claim(wave=two, phase=SYNC) == []
    Endpoint.objects.filter(pk=source.pk).update(max_concurrency=3)
    assert len(mailbox_claim(wave=two, phase=SYNC)) == 1


def test_a_claimed_mailbox_is_never_claimed_again(db, org_a):
    # On SQLite each row is claimed by its own UPDATE ... WHERE state = 'scheduled': a second claimer that
    # read the same candidates updates none of them.
    wave, mailboxes = approved_wave(org_a, 4)
    wave = _running(wave)
    first = mailbox_claim(wave=wave, phase=SYNC, limit=2)
    second = mailbox_claim(wave=wave, phase=SYNC)
    assert set(first).isdisjoint(second) and sorted(first + second) == [m.pk for m in mailboxes]
    assert mailbox_claim(wave=wave, phase=SYNC) == []


@pytest.mark.django_db(transaction=True)
def test_two_claimers_at_the_same_moment_never_share_a_mailbox(postgres, org_a, settings, monkeypatch):
    settings.MIGRATION_MAX_CONCURRENCY = 1000
    # Claim only: with eager tasks the queued work would run (and claim more) inside the claimer's thread.
    monkeypatch.setattr("migrations_app.services.execution.claims._queue", lambda ids, phase: None)
    wave, mailboxes = approved_wave(org_a, 60)
    wave = _running(wave)
    barrier = threading.Barrier(4)
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def claim():
        try:
            barrier.wait(timeout=10)
            for _ in range(5):
                results.append(mailbox_claim(wave=wave, phase=SYNC, limit=4))
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    claimed = [pk for batch in results for pk in batch]
    assert len(claimed) == len(set(claimed)) == 60
    assert Mailbox.objects.filter(wave=wave, state=M.SYNCING).count() == 60
