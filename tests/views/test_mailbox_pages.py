"""Mailbox search (address or display-name prefix) and a mailbox's page: timeline, skipped items, last error,
retry and roll-back; scoped."""

import re

from migrations_app.models import Event, Mailbox
from migrations_app.services.events import event_record
from tests.factories import MailboxFactory
from tests.status_fixtures import wave_in_states

M = Mailbox.State


def test_search_finds_by_address_prefix_and_by_display_name_prefix(client_for, officer, org_a):
    MailboxFactory(organisation=org_a, email="jane.doe@rj1.nhs.uk", display_name="Jane Doe")
    MailboxFactory(organisation=org_a, email="reception@rj1.nhs.uk", display_name="Front Desk")
    client = client_for(officer)
    html = client.get("/mailboxes/", {"q": "jane.d"}).content.decode()
    assert "jane.doe@rj1.nhs.uk" in html and "reception@rj1" not in html
    html = client.get("/mailboxes/", {"q": "front d"}).content.decode()  # case-insensitive name prefix
    assert "reception@rj1.nhs.uk" in html and "jane.doe@rj1" not in html
    html = client.get("/mailboxes/", {"q": "desk"}).content.decode()  # a prefix, not a substring
    assert "No mailbox address or display name starts with" in html


def test_search_is_scoped_for_a_trust_admin(client_for, admin_a, org_a, org_b):
    MailboxFactory(organisation=org_a, email="sam.a@rj1.nhs.uk", display_name="Sam A")
    MailboxFactory(organisation=org_b, email="sam.b@rrv.nhs.uk", display_name="Sam B")
    client = client_for(admin_a)
    html = client.get("/mailboxes/", {"q": "sam"}).content.decode()
    assert "sam.a@rj1.nhs.uk" in html and "sam.b@rrv.nhs.uk" not in html
    body = b"".join(client.get("/mailboxes/export.csv", {"q": "sam"}).streaming_content).decode()
    assert "sam.a@rj1.nhs.uk" in body and "sam.b@rrv.nhs.uk" not in body


def test_the_detail_shows_timeline_skipped_items_and_last_error(client_for, admin_a, org_a):
    mailbox = MailboxFactory(
        organisation=org_a,
        state=M.FAILED,
        last_error_code="OVER_QUOTA",
        last_error_message="the target mailbox is full",
        checkpoint={
            "skipped": [{"folder": "Inbox", "subject": "Scan 2019", "size": 200_000_000, "reason": "TOO_BIG"}]
        },
    )
    event_record(
        action="mailbox.failed",
        organisation=org_a,
        mailbox=mailbox,
        subject=mailbox.email,
        from_state="syncing",
        to_state="failed",
        message="OVER_QUOTA: full",
    )
    html = client_for(admin_a).get(f"/mailboxes/{mailbox.pk}/").content.decode()
    assert "Last error: OVER_QUOTA" in html and "the target mailbox is full" in html
    assert "Scan 2019" in html and "TOO_BIG" in html
    assert "mailbox.failed" in html and "syncing → failed" in html
    assert "Retry</button>" in html and "Roll back" in html


def test_a_trust_admin_retries_and_rolls_back_their_own_mailbox(client_for, admin_a, org_a):
    wave = wave_in_states([org_a], {"failed": 2})
    first, second = Mailbox.objects.filter(wave=wave).order_by("id")
    client = client_for(admin_a)
    assert client.post(f"/mailboxes/{first.pk}/retry/").status_code == 302
    assert client.post(f"/mailboxes/{second.pk}/roll-back/").status_code == 302
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.state, first.wave_id) == (M.SCHEDULED, wave.pk)
    assert (second.state, second.wave_id) == (M.READY, None)
    assert (
        Event.objects.filter(actor=admin_a, action__in=["mailbox.retried", "mailbox.rolled_back"]).count()
        == 2
    )


def test_a_trust_admin_pauses_resumes_and_cancels_from_the_mailbox_page(client_for, admin_a, org_a):
    wave = wave_in_states([org_a], {"syncing": 1, "scheduled": 1})
    running, waiting = Mailbox.objects.filter(wave=wave).order_by("-state")
    client = client_for(admin_a)
    html = client.get(f"/mailboxes/{running.pk}/").content.decode()
    assert "Pause</button>" in html and "Cancel: take it out" not in html  # not while it is copied

    page = client.post(f"/mailboxes/{running.pk}/pause/", follow=True).content.decode()
    assert "is paused" in page and "Resume</button>" in page and "Pause</button>" not in page
    running.refresh_from_db()
    assert running.paused
    client.post(f"/mailboxes/{running.pk}/resume/")
    running.refresh_from_db()
    assert not running.paused

    assert client.post(f"/mailboxes/{waiting.pk}/cancel/").status_code == 302
    waiting.refresh_from_db()
    assert (waiting.state, waiting.wave_id) == (M.READY, None)
    refused = client.post(f"/mailboxes/{running.pk}/cancel/", follow=True).content.decode()
    assert "pause it first" in refused


def test_rolling_back_a_migrated_mailbox_asks_for_the_reason(client_for, admin_a, org_a):
    wave = wave_in_states([org_a], {"migrated": 1})
    mailbox = Mailbox.objects.get(wave=wave)
    client = client_for(admin_a)
    assert "mail goes to the old system again" in client.get(f"/mailboxes/{mailbox.pk}/").content.decode()
    page = client.post(f"/mailboxes/{mailbox.pk}/roll-back/", follow=True).content.decode()
    assert "Give the reason" in page
    client.post(f"/mailboxes/{mailbox.pk}/roll-back/", {"reason": "shared calendar broken"})
    mailbox.refresh_from_db()
    assert (mailbox.state, mailbox.wave_id) == (M.READY, None)


def test_another_organisations_admin_cannot_pause_resume_or_cancel(client_for, admin_b, org_a):
    wave = wave_in_states([org_a], {"scheduled": 1})
    mailbox = Mailbox.objects.get(wave=wave)
    client = client_for(admin_b)
    for action in ("pause", "resume", "cancel"):
        assert client.post(f"/mailboxes/{mailbox.pk}/{action}/").status_code == 404
    mailbox.refresh_from_db()
    assert (mailbox.paused, mailbox.wave_id) == (False, wave.pk)


def test_retrying_a_mailbox_that_is_not_failed_says_why(client_for, admin_a, org_a):
    mailbox = MailboxFactory(organisation=org_a, state=M.MIGRATED)
    response = client_for(admin_a).post(f"/mailboxes/{mailbox.pk}/retry/", follow=True)
    assert "is migrated now" in response.content.decode()
    mailbox.refresh_from_db()
    assert mailbox.state == M.MIGRATED


def test_another_organisations_mailbox_is_404_to_see_and_to_touch(client_for, admin_a, org_b):
    mailbox = MailboxFactory(organisation=org_b, state=M.FAILED)
    client = client_for(admin_a)
    assert client.get(f"/mailboxes/{mailbox.pk}/").status_code == 404
    assert client.post(f"/mailboxes/{mailbox.pk}/retry/").status_code == 404
    assert client.post(f"/mailboxes/{mailbox.pk}/roll-back/").status_code == 404
    mailbox.refresh_from_db()
    assert mailbox.state == M.FAILED


def test_a_viewer_sees_a_mailbox_but_cannot_act(client_for, viewer, org_a):
    mailbox = MailboxFactory(organisation=org_a, state=M.FAILED)
    client = client_for(viewer)
    html = client.get(f"/mailboxes/{mailbox.pk}/").content.decode()
    assert mailbox.email in html and "Retry</button>" not in html
    assert client.post(f"/mailboxes/{mailbox.pk}/retry/").status_code == 403


def test_the_inventory_on_the_organisation_page_filters_and_pages(client_for, admin_a, org_a):
    MailboxFactory.create_batch(55, organisation=org_a, kind="user")
    MailboxFactory(organisation=org_a, kind="room", email="board.room@rj1.nhs.uk", display_name="Board room")
    client = client_for(admin_a)
    html = client.get("/organisations/RJ1/").content.decode()
    assert html.count("/mailboxes/") >= 50 and "Next page" in html
    html = client.get(
        "/organisations/RJ1/mailboxes/", {"kind": "room"}, HTTP_HX_REQUEST="true"
    ).content.decode()
    assert "board.room@rj1.nhs.uk" in html and "Next page" not in html
    html = client.get(
        "/organisations/RJ1/mailboxes/", {"q": "board"}, HTTP_HX_REQUEST="true"
    ).content.decode()
    assert "board.room@rj1.nhs.uk" in html
    after = re.search(r"after=(\w+%3A\d+)", client.get("/organisations/RJ1/").content.decode()).group(1)
    after = after.replace("%3A", ":")
    html = client.get("/organisations/RJ1/", {"after": after}).content.decode()
    assert "First page" in html and "(continued)" in html


def test_another_organisations_inventory_progress_and_exports_are_404(client_for, admin_a, org_b):
    MailboxFactory(organisation=org_b)
    client = client_for(admin_a)
    for url in [
        "/organisations/RRV/mailboxes/",
        "/organisations/RRV/progress/",
        "/organisations/RRV/mailboxes.csv",
    ]:
        assert client.get(url).status_code == 404, url


def test_the_organisation_progress_polls_only_while_mailboxes_move(client_for, admin_a, org_a):
    wave = wave_in_states([org_a], {"syncing": 1, "migrated": 1})
    client = client_for(admin_a)
    response = client.get("/organisations/RJ1/progress/")
    assert response.status_code == 200 and "every 5s" in response.content.decode()
    Mailbox.objects.filter(wave=wave).update(state=M.MIGRATED)
    response = client.get("/organisations/RJ1/progress/")
    assert (
        response.status_code == 286 and "<strong>2</strong> of 2 mailboxes moved" in response.content.decode()
    )


def test_the_detail_shows_what_is_copied_of_each_item_class(client_for, admin_a, org_a):
    classes = {
        "mail": {"copied": 12031, "total": 12400},
        "calendar": {"copied": 812, "total": 812},
        "contacts": {"copied": 0, "total": 40},
        "journal": {"copied": 0, "total": 0},
    }
    # taken out of its wave after a pre-stage (a state that needs no wave): what was copied is still shown
    mailbox = MailboxFactory(
        organisation=org_a, state=M.READY, checkpoint={"engine": "exchange", "classes": classes}
    )

    html = client_for(admin_a).get(f"/mailboxes/{mailbox.pk}/").content.decode()

    rows = re.findall(r'<li data-class="(\w+)">([^<]*)</li>', html)
    assert rows == [
        ("mail", "Mail: 12,031 of 12,400"),
        ("calendar", "Calendar: 812 of 812 (all copied)"),
        ("contacts", "Contacts: 0 of 40"),
    ]


def test_an_imap_mailbox_page_has_no_class_breakdown(client_for, admin_a, org_a):
    mailbox = MailboxFactory(organisation=org_a, state=M.READY, checkpoint={"engine": "imap", "items": 5})
    html = client_for(admin_a).get(f"/mailboxes/{mailbox.pk}/").content.decode()
    assert "Copied by item class" not in html


def test_the_attempt_count_counts_up_across_a_retry(client_for, officer, org_a):
    from migrations_app.services.events import event_record

    mailbox = MailboxFactory(organisation=org_a, attempts=3)
    for _ in range(3):
        event_record(action="mailbox.claimed", organisation=org_a, mailbox=mailbox, subject=mailbox.email)
    client = client_for(officer)
    assert re.search(
        r"Attempts\s*</dt>\s*<dd[^>]*>\s*3\s*<", client.get(f"/mailboxes/{mailbox.pk}/").content.decode()
    )
    Mailbox.objects.filter(pk=mailbox.pk).update(attempts=0)  # what a person's retry does to the retry budget
    event_record(action="mailbox.claimed", organisation=org_a, mailbox=mailbox, subject=mailbox.email)
    assert re.search(
        r"Attempts\s*</dt>\s*<dd[^>]*>\s*4\s*<", client.get(f"/mailboxes/{mailbox.pk}/").content.decode()
    )
