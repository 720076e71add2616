"""The organisation page reads its counters once (selectors.progress.organisation_counters) and every section
computes from them what it read with its own query before: the same figures either way."""

from django.db.models import Q

from migrations_app.models import Mailbox
from migrations_app.selectors.progress import (
    organisation_counters,
    organisation_counts_in_waves,
    organisation_progress,
    organisation_wave_ids,
)
from migrations_app.selectors.support import organisation_support
from migrations_app.views.readiness import readiness_context
from tests.status_fixtures import wave_in_states
from tests.wave_fixtures import ready_mailboxes


def test_every_section_gets_the_same_figures_from_one_read(rf, officer, org_a, org_b):
    first = wave_in_states(
        [org_a, org_b], {"migrated": 3, "failed": 2, "syncing": 1}, name="First", hours_ago=30
    )
    second = wave_in_states([org_a], {"migrated": 2, "scheduled": 4}, name="Second")
    ready_mailboxes(org_a, 5)
    blocked = ready_mailboxes(org_a, 2)
    Mailbox.objects.filter(pk__in=[m.pk for m in blocked]).update(
        state="blocked", blocked_code="NOT_LICENSED"
    )
    counters = organisation_counters(org_a)

    assert organisation_progress(org_a, counters) == organisation_progress(org_a)
    assert organisation_progress(org_a, counters)["summary"]["mailboxes"] == 6 + 6 + 5 + 2
    assert (
        organisation_wave_ids(org_a, counters)
        == organisation_wave_ids(org_a)
        == sorted([first.pk, second.pk])
    )
    ids = [first.pk, second.pk]
    assert organisation_counts_in_waves(org_a, ids, counters) == organisation_counts_in_waves(org_a, ids)
    assert organisation_counts_in_waves(org_a, ids, counters) == {first.pk: (6, 3), second.pk: (6, 2)}
    assert organisation_support(organisation=org_a, counters=counters) == organisation_support(
        organisation=org_a
    )

    request = rf.get("/")
    request.user = officer
    with_counters = readiness_context(request, org_a, counters)
    assert with_counters == readiness_context(request, org_a)
    assert [(b.reason.code, b.mailboxes) for b in with_counters["blocked_by_reason"]] == [("NOT_LICENSED", 2)]


def test_another_organisations_counters_are_not_counted(org_a, org_b):
    wave_in_states([org_b], {"migrated": 4})
    counters = organisation_counters(org_a)
    assert counters.rows == [] and organisation_wave_ids(org_a, counters) == []
    assert not Mailbox.objects.filter(Q(organisation=org_a)).exists()
