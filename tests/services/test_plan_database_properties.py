"""The planner end to end on the database, for random inventories: what the SQL aggregates, the saved
allocations and the membership selector say agrees with the promises (every ready mailbox in exactly one
wave or reported, capacity, affinity groups whole, blackouts and preferences), and it never places a mailbox
that is not ready nor one of an organisation whose required readiness gates are unmet (those are listed as
left out, with why)."""

import datetime as dt
from collections import defaultdict

import pytest
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrations_app.models import BlackoutPeriod, Mailbox, Organisation, ProgrammeSettings
from migrations_app.planning.calendar import LONDON
from migrations_app.planning.units import group_key
from migrations_app.selectors.waves import organisation_allowed_kinds, wave_members
from migrations_app.services.plans import plan_commit

MONDAY = dt.date(2026, 10, 19)  # the horizon crosses the October clock change


@st.composite
def inventories(draw):
    orgs = []
    for i in range(draw(st.integers(1, 6))):
        orgs.append(
            {
                "code": f"DB{i}",
                "priority": draw(st.integers(1, 3)),
                "preference": draw(st.sampled_from(["any", "any", "evening", "weekend"])),
                "blackout": draw(st.one_of(st.none(), st.integers(0, 12))),
                "gates": draw(
                    st.one_of(st.just((True,) * 4), st.tuples(*(st.booleans() for _ in Organisation.GATES)))
                ),
                "mailboxes": [
                    (
                        draw(st.integers(0, 500)),
                        # a trust's own names, reused across trusts, and a permissions import's spanning them
                        draw(st.sampled_from(["", "", "", "G1", "G2", "perm-shared"])),
                        draw(st.sampled_from(["ready"] * 4 + ["blocked", "inventoried"])),
                    )
                    for _ in range(draw(st.integers(0, 25)))
                ],
            }
        )
    required = sorted(draw(st.sets(st.sampled_from(Organisation.GATES))))
    return orgs, draw(st.integers(3, 30)), draw(st.integers(1, 20)), draw(st.integers(1, 6)), required


@pytest.mark.django_db
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(inventories())
def test_committed_plans_keep_their_promises(officer, inventory):
    orgs, evening_cap, single_max, chunk, required = inventory
    with transaction.atomic():
        settings_row = ProgrammeSettings.load()
        settings_row.evening_capacity_mailboxes = evening_cap
        settings_row.evening_capacity_bytes = evening_cap * 300
        settings_row.weekend_capacity_mailboxes = evening_cap * 3
        settings_row.weekend_capacity_bytes = evening_cap * 900
        settings_row.single_wave_organisation_max = single_max
        settings_row.large_organisation_chunk = chunk
        settings_row.planning_horizon_days = 21
        settings_row.required_gates = required
        settings_row.save()
        n = 0
        for spec in orgs:
            org = Organisation.objects.create(
                ods_code=spec["code"],
                name=spec["code"],
                region="london",
                priority=spec["priority"],
                preferred_window=spec["preference"],
                **dict(zip(Organisation.GATES, spec["gates"], strict=True)),
            )
            if spec["blackout"] is not None:
                start = MONDAY + dt.timedelta(days=spec["blackout"])
                BlackoutPeriod.objects.create(
                    organisation=org, starts_on=start, ends_on=start + dt.timedelta(days=3)
                )
            rows = []
            for size, group, state in spec["mailboxes"]:
                n += 1
                rows.append(
                    Mailbox(
                        organisation=org,
                        email=f"p{n}@x.nhs.uk",
                        size_bytes=size,
                        affinity_group=group,
                        state=state,
                        blocked_code="NOT_LICENSED" if state == "blocked" else "",
                    )
                )
            Mailbox.objects.bulk_create(rows)
        Mailbox.objects.create(organisation=org, email="not-ready@x.nhs.uk", state="inventoried")

        plan, waves = plan_commit(start=MONDAY, actor=officer)

        where: dict[int, int] = {}
        for wave in waves:
            members = list(wave_members(wave).select_related("organisation"))
            assert len(members) <= wave.capacity_mailboxes
            assert sum(m.size_bytes for m in members) <= wave.capacity_bytes
            first, last = wave.starts_at.astimezone(LONDON).date(), wave.ends_at.astimezone(LONDON).date()
            for m in members:
                assert m.pk not in where
                where[m.pk] = wave.pk
                assert wave.kind in organisation_allowed_kinds(m.organisation.preferred_window)
                assert not m.organisation.blackouts.filter(starts_on__lte=last, ends_on__gte=first).exists()
        gated_in = {o.pk for o in Organisation.objects.all() if all(getattr(o, gate) for gate in required)}
        ready = set(
            Mailbox.objects.filter(state="ready", organisation_id__in=gated_in).values_list("pk", flat=True)
        )
        placed = set(where)
        assert placed <= ready  # never a mailbox not ready, never an organisation missing a required gate
        assert len(ready - placed) == plan.unplaced_mailboxes
        groups = defaultdict(set)
        for m in Mailbox.objects.filter(state="ready", organisation_id__in=gated_in).exclude(
            affinity_group=""
        ):
            groups[group_key(m.organisation_id, m.affinity_group)].add(where.get(m.pk))
        assert all(len(v) == 1 for v in groups.values())
        # every organisation held back is said to be, with why
        left_out = {item.ods_code: {r.code.split(":")[0] for r in item.reasons} for item in plan.left_out}
        for org in Organisation.objects.all():
            mine = Mailbox.objects.filter(organisation=org)
            if org.pk not in gated_in and mine.filter(state="ready").exists():
                assert "GATES_MISSING" in left_out[org.ods_code]
            if mine.filter(state="inventoried").exists():
                assert "NOT_CHECKED" in left_out[org.ods_code]
            if mine.filter(state="blocked").exists():
                assert "BLOCKED" in left_out[org.ods_code]
        transaction.set_rollback(True)
