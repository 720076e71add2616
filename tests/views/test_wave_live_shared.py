"""The live wave page and its htmx fragment for a wave two trusts share: every figure a trust admin sees is
their own organisation's share (counts, bytes, progress, moving now, states, cutover steps, failures by code),
with the live fragment's shared cache on and its ETag in use; the programme office sees the whole wave;
another trust's admin gets 404."""

import re

import pytest

from migrations_app.models import Mailbox, Wave
from tests.factories import OrganisationFactory, UserFactory
from tests.status_fixtures import wave_in_states
from tests.wave_fixtures import ready_mailboxes

M = Mailbox.State
STEP = Mailbox.CutoverStep
HTMX = {"HX-Request": "true"}


def _put(wave, organisation, state, count, *, code="", step=""):
    made = ready_mailboxes(organisation, count, size=1024**3)
    Mailbox.objects.filter(pk__in=[m.pk for m in made]).update(
        wave=wave, state=state, last_error_code=code, needed_attention=bool(code), cutover_step=step
    )


@pytest.fixture
def shared_wave(settings, org_a, org_b):
    """RJ1: 5 mailboxes, 1 moved, 3 moving (one at the final delta), 1 failed AUTH_FAILED.
    RRV: 12 mailboxes, 6 moved, 3 moving (two waiting for the switch, one verifying), 3 failed OVER_QUOTA."""
    settings.WAVE_LIVE_CACHE_SECONDS = 60  # long enough that a wrongly shared answer would be served
    wave = wave_in_states([org_a, org_b], {}, status=Wave.Status.RUNNING, name="Shared evening")
    _put(wave, org_a, M.MIGRATED, 1)
    _put(wave, org_a, M.SYNCING, 1)
    _put(wave, org_a, M.SYNCED, 1)
    _put(wave, org_a, M.CUTOVER, 1)
    _put(wave, org_a, M.FAILED, 1, code="AUTH_FAILED")
    _put(wave, org_b, M.MIGRATED, 6)
    _put(wave, org_b, M.SWITCHING, 2, step=STEP.SWITCH)
    _put(wave, org_b, M.VERIFYING, 1, step=STEP.VERIFY)
    _put(wave, org_b, M.FAILED, 3, code="OVER_QUOTA")
    return wave


def _live(html: str) -> str:
    start = html.index('<div id="wave-live"')
    return html[start : html.index("mailboxes (CSV)</a>", start)]


def _figures(live: str) -> dict:
    """Every figure of the live part, read from the HTML as a person reads it."""
    progress = re.search(r"<strong>([\d,]+)</strong> of ([\d,]+) mailboxes moved \((\d+)%\)", live)
    data = re.search(r"Data moved</dt>\s*<dd[^>]*>([^<]+)</dd>", live).group(1)
    moving = re.search(r"Moving now</dt>\s*<dd[^>]*>([^<]+)</dd>", live).group(1)
    states = dict(re.findall(r'data-state="(\w+)">.*?numeric">([\d,]+)</td>', live, flags=re.S))
    steps_table = re.search(r'id="wave-cutover-steps".*?</table>', live, flags=re.S)
    steps = (
        dict(
            re.findall(
                r'<td class="nhsuk-table__cell">([^<]+)</td>\s*<td[^>]*>([\d,]+)</td>', steps_table.group(0)
            )
        )
        if steps_table
        else {}
    )
    failures = dict(re.findall(r"\?code=(\w+)\">\w+</a></td>\s*<td[^>]*>([\d,]+)</td>", live))
    return {
        "progress": progress.groups(),
        "data": " ".join(data.split()),
        "moving": moving.strip(),
        "states": states,
        "steps": {k: v for k, v in steps.items() if v != "0"},
        "failures": failures,
    }


RJ1 = {
    "progress": ("1", "5", "20"),
    "data": "1.0 GB of 5.0 GB (2.0 GB more copied ahead, waiting for the switch)",
    "moving": "3",
    "states": {"syncing": "1", "synced": "1", "cutover": "1", "migrated": "1", "failed": "1"},
    "steps": {"Final delta": "1"},
    "failures": {"AUTH_FAILED": "1"},
}
RRV = {
    "progress": ("6", "12", "50"),
    "data": "6.0 GB of 12.0 GB (1.0 GB more copied ahead, waiting for the switch)",
    "moving": "3",
    "states": {"switching": "2", "verifying": "1", "migrated": "6", "failed": "3"},
    "steps": {"Waiting for the switch to be confirmed": "2", "Verify": "1"},
    "failures": {"OVER_QUOTA": "3"},
}
WHOLE = {
    "progress": ("7", "17", "41"),
    "data": "7.0 GB of 17.0 GB (3.0 GB more copied ahead, waiting for the switch)",
    "moving": "6",
    "states": {
        "syncing": "1",
        "synced": "1",
        "cutover": "1",
        "switching": "2",
        "verifying": "1",
        "migrated": "7",
        "failed": "4",
    },
    "steps": {"Final delta": "1", "Waiting for the switch to be confirmed": "2", "Verify": "1"},
    "failures": {"OVER_QUOTA": "3", "AUTH_FAILED": "1"},
}


def test_each_trust_sees_only_its_share_of_every_live_figure(
    client_for, officer, admin_a, admin_b, shared_wave
):
    url = f"/waves/{shared_wave.pk}/live/"
    # the programme office first, so the shared cache holds the whole wave's figures when the trusts ask
    assert _figures(client_for(officer).get(url, headers=HTMX).content.decode()) == WHOLE
    assert _figures(client_for(admin_b).get(url, headers=HTMX).content.decode()) == RRV
    fragment = client_for(admin_a).get(url, headers=HTMX).content.decode()
    assert _figures(fragment) == RJ1
    assert "OVER_QUOTA" not in fragment and "RRV" not in fragment
    # and the full page, whose live part is rendered without the shared cache
    for user, expected in ((admin_a, RJ1), (admin_b, RRV), (officer, WHOLE)):
        page = client_for(user).get(f"/waves/{shared_wave.pk}/").content.decode()
        assert _figures(_live(page)) == expected
    page = client_for(admin_a).get(f"/waves/{shared_wave.pk}/").content.decode()
    assert "RRV" not in page and "University College" not in page and "OVER_QUOTA" not in page


def test_the_etag_is_the_trusts_own_and_answers_only_its_own_figures(
    client_for, admin_a, admin_b, shared_wave
):
    url = f"/waves/{shared_wave.pk}/live/"
    first_a = client_for(admin_a).get(url, headers=HTMX)
    etag_a = first_a["ETag"]
    assert client_for(admin_a).get(url, headers={**HTMX, "If-None-Match": etag_a}).status_code == 304
    # another trust presenting that validator is not told "unchanged": it gets its own figures
    answer_b = client_for(admin_b).get(url, headers={**HTMX, "If-None-Match": etag_a})
    assert answer_b.status_code == 200 and answer_b["ETag"] != etag_a
    assert _figures(answer_b.content.decode()) == RRV


def test_a_trust_admin_with_both_organisations_sees_both_shares(client_for, admin_a, org_b, shared_wave):
    admin_a.organisations.add(org_b)
    html = client_for(admin_a).get(f"/waves/{shared_wave.pk}/live/", headers=HTMX).content.decode()
    assert _figures(html) == WHOLE  # the scope changed, so the shared cache answers with another key


def test_an_admin_of_an_organisation_outside_the_wave_gets_404(client, shared_wave):
    outsider = UserFactory(username="admin_c", role="trust_admin")
    outsider.organisations.add(OrganisationFactory(ods_code="RAL", name="Royal Free London"))
    client.force_login(outsider)
    assert client.get(f"/waves/{shared_wave.pk}/").status_code == 404
    assert client.get(f"/waves/{shared_wave.pk}/live/", headers=HTMX).status_code == 404


def test_a_proposed_shared_waves_allocated_mailboxes_are_counted_per_trust(
    settings, client_for, officer, admin_a, admin_b, org_a, org_b
):
    """Before it runs, a wave's mailboxes are allocations, not stamped rows: still only the trust's own."""
    from tests.wave_fixtures import wave_with

    settings.WAVE_LIVE_CACHE_SECONDS = 60
    ready_mailboxes(org_a, 3, size=1024**3)
    ready_mailboxes(org_b, 7, size=1024**3)
    wave = wave_with(org_a, org_b, status="proposed", name="Shared proposal")
    url = f"/waves/{wave.pk}/live/"
    for user, total in ((officer, "10"), (admin_b, "7"), (admin_a, "3")):
        figures = _figures(client_for(user).get(url, headers=HTMX).content.decode())
        assert figures["progress"] == ("0", total, "0") and figures["states"] == {"ready": total}
        assert figures["data"] == f"0 bytes of {total}.0 GB"
