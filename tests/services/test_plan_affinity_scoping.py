"""Affinity groups a trust names are its own: another trust reusing the name (with a year-long blackout) does
not drag its mailboxes along. Groups spanning organisations come only from a permissions import."""

import datetime as dt

from migrations_app.models import BlackoutPeriod
from migrations_app.services.plans import plan_preview
from tests.factories import OrganisationFactory
from tests.services.test_plan import MONDAY, small_windows
from tests.wave_fixtures import ready_mailboxes


def _first_days(plan) -> dict[int, dt.date]:
    return {p.organisation_id: w.window.first_day for w in plan.waves for p in w.pieces}


def test_a_trust_reusing_another_trusts_group_name_delays_only_itself(db, officer):
    small_windows(planning_horizon_days=400)
    victim = OrganisationFactory(ods_code="VIC1")
    copycat = OrganisationFactory(ods_code="CPY1")
    ready_mailboxes(victim, 3, group="Finance delegates")
    ready_mailboxes(copycat, 3, group="Finance delegates")
    BlackoutPeriod.objects.create(
        organisation=copycat, starts_on=MONDAY - dt.timedelta(days=1), ends_on=MONDAY + dt.timedelta(days=365)
    )
    plan = plan_preview(start=MONDAY, actor=officer)
    assert _first_days(plan)[victim.pk] < MONDAY + dt.timedelta(days=7)
    assert _first_days(plan)[copycat.pk] > MONDAY + dt.timedelta(days=365)


def test_a_group_from_a_permissions_import_still_moves_organisations_together(db, officer):
    small_windows(planning_horizon_days=60)
    a, b = OrganisationFactory(ods_code="PA1"), OrganisationFactory(ods_code="PB1")
    ready_mailboxes(a, 2, group="perm-0123456789ab")
    ready_mailboxes(b, 2, group="perm-0123456789ab")
    BlackoutPeriod.objects.create(
        organisation=b, starts_on=MONDAY - dt.timedelta(days=1), ends_on=MONDAY + dt.timedelta(days=20)
    )
    days = _first_days(plan_preview(start=MONDAY, actor=officer))
    assert days[a.pk] == days[b.pk] > MONDAY + dt.timedelta(days=20)


def test_an_inventory_cannot_name_a_group_like_a_permissions_import(db, org_a, admin_a):
    import io

    from migrations_app.services.imports import inventory_import

    csv = "email,display_name,kind,size_bytes,item_count,affinity_group\nann@rj1.nhs.uk,Ann,user,10,1,perm-0123456789ab\n"
    result = inventory_import(source=io.BytesIO(csv.encode()), organisation=org_a, actor=admin_a)
    assert result.status == "rejected"
    assert "permissions import" in result.errors[0].message
