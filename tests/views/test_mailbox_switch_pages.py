"""The switch on the pages: a manual switch's checklist and its Confirm button, the programme office's Switch back,
and the wave page's count of mailboxes at each cutover step."""

import datetime as dt

import pytest

from migrations_app.models import Mailbox
from migrations_app.services.execution import mailbox_run_sync, wave_tick
from tests.execution_fixtures import approved_wave
from tests.switch_fixtures import switch_endpoint

M = Mailbox.State


@pytest.fixture(autouse=True)
def instant_engine(settings):
    settings.MIGRATION_ENGINE_OPTIONS = {"simulated": {"instant": True}}


def _cut_over(org, method, count=1):
    wave, mailboxes = approved_wave(
        org, count, starts_in=dt.timedelta(minutes=-5), source_endpoint=switch_endpoint(method)
    )
    wave_tick()
    for mailbox in mailboxes:
        mailbox_run_sync(mailbox_id=mailbox.pk)
        mailbox.refresh_from_db()
    return wave, mailboxes


def test_a_manual_switch_shows_its_checklist_and_a_person_confirms_it(
    client_for, admin_a, org_a, django_capture_on_commit_callbacks
):
    wave, [mailbox] = _cut_over(org_a, "manual")
    client = client_for(admin_a)
    html = client.get(f"/mailboxes/{mailbox.pk}/").content.decode()
    assert 'id="switch-checklist"' in html and "Set-Mailbox -Identity" in html
    local = mailbox.email.split("@")[0]
    assert f"{local}@nhs.mail.onmicrosoft.com" in html  # the routing address to forward to
    assert "Confirm: its mail goes to Exchange Online" in html

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/mailboxes/{mailbox.pk}/switch-confirm/", {"reason": "done in EAC"})
    assert response.status_code == 302
    mailbox.refresh_from_db()
    assert (mailbox.state, mailbox.switch_status) == (M.MIGRATED, "switched")
    page = client.get(f"/mailboxes/{mailbox.pk}/").content.decode()
    assert "Switched: mail goes to Exchange Online" in page and 'id="switch-checklist"' not in page


def test_another_organisations_admin_cannot_confirm_a_switch(client_for, admin_b, org_a):
    wave, [mailbox] = _cut_over(org_a, "manual")
    assert client_for(admin_b).post(f"/mailboxes/{mailbox.pk}/switch-confirm/").status_code == 404
    mailbox.refresh_from_db()
    assert mailbox.state == M.SWITCHING


def test_the_programme_office_switches_a_mailbox_back_from_its_page(
    client_for, officer, admin_a, org_a, fake_exchange_ps, django_capture_on_commit_callbacks
):
    wave, mailboxes = approved_wave(
        org_a, 1, starts_in=dt.timedelta(minutes=-5), source_endpoint=switch_endpoint("exchange-powershell")
    )
    [mailbox] = mailboxes
    fake_exchange_ps.add_mailbox(mailbox.email)
    wave_tick()
    mailbox_run_sync(mailbox_id=mailbox.pk)
    assert 'id="unswitch"' not in client_for(admin_a).get(f"/mailboxes/{mailbox.pk}/").content.decode()
    client = client_for(officer)
    assert 'id="unswitch"' in client.get(f"/mailboxes/{mailbox.pk}/").content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/mailboxes/{mailbox.pk}/unswitch/", {"reason": "pharmacy system fails"})
    mailbox.refresh_from_db()
    assert (mailbox.state, mailbox.switch_status) == (M.READY, "unswitched")
    assert fake_exchange_ps.routed_to(mailbox.email) is None


def test_the_wave_page_counts_mailboxes_at_each_cutover_step(client_for, officer, org_a):
    wave, mailboxes = _cut_over(org_a, "manual", count=2)
    Mailbox.objects.filter(pk=mailboxes[0].pk).update(state=M.CUTOVER, cutover_step="catch_up")

    html = client_for(officer).get(f"/waves/{wave.pk}/").content.decode()
    assert "By hand (a person confirms)" in html  # the wave's switch method

    table = html[html.index('id="wave-cutover-steps"') :]
    table = table[: table.index("</table>")]
    assert (
        'Waiting for the switch to be confirmed</td>\n            <td class="nhsuk-table__cell nhsuk-table__cell--numeric">1<'
        in table
    )
    assert (
        'Catch-up delta</td>\n            <td class="nhsuk-table__cell nhsuk-table__cell--numeric">1<'
        in table
    )
