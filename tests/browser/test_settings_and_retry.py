"""In Chromium: a programme officer sets the windows and rules with the form's own controls (weekday boxes,
London times, capacity in GB/TB), sees a mistake explained and the page keep what they typed; and presses
"Retry these" on a finished wave, which shows them queued at once and the wave running again."""

import re

import pytest

from migrations_app.models import Mailbox, ProgrammeSettings, Wave
from tests.browser.conftest import assert_accessible
from tests.factories import UserFactory
from tests.status_fixtures import wave_in_states

TB, GB = 1024**4, 1024**3


@pytest.mark.django_db(transaction=True)
def test_a_programme_officer_sets_windows_and_capacity_in_words(browser_pages):
    page = browser_pages(UserFactory(username="officer", role="programme_office"))
    page.goto("/waves/")
    page.get_by_text("Windows and rules").click()
    page.wait_for_url(re.compile(r"/waves/settings/$"))
    assert_accessible(page)
    assert page.get_by_label("Monday").is_checked() and not page.get_by_label("Friday").first.is_checked()
    assert page.get_by_label("Evening window opens at (London time)").input_value() == "18:00"
    # the next windows, in London time, named GMT or BST
    assert re.search(r"\d\d:\d\d (GMT|BST)", page.locator("#next-windows").inner_text())

    page.get_by_label("Thursday").uncheck()
    page.get_by_label("Sunday").first.check()
    page.get_by_label("Evening window opens at (London time)").fill("7pm")
    evening = page.locator("fieldset", has_text="Data an evening window can move")
    evening.get_by_label("Amount").fill("2.5")
    evening.get_by_label("Unit").select_option("TB")
    weekend = page.locator("fieldset", has_text="Data a weekend window can move")
    weekend.get_by_label("Amount").fill("lots")
    page.get_by_role("button", name="Save settings").click()

    # a clear error, linked from the summary, and nothing typed is lost
    summary = page.locator(".nhsuk-error-summary")
    assert "The data a weekend window can move must be a number" in summary.inner_text()
    summary.get_by_role("link", name=re.compile("weekend window can move")).click()
    assert page.evaluate("document.activeElement.id") == "settings-weekend_capacity_amount"
    assert page.get_by_label("Evening window opens at (London time)").input_value() == "7pm"
    assert evening.get_by_label("Amount").input_value() == "2.5"
    assert not page.get_by_label("Thursday").is_checked() and page.get_by_label("Sunday").first.is_checked()
    assert ProgrammeSettings.load().evening_days == "0123"

    weekend.get_by_label("Amount").fill("800")
    weekend.get_by_label("Unit").select_option("GB")
    page.get_by_role("button", name="Save settings").click()
    page.wait_for_url(re.compile(r"/waves/settings/$"))
    assert "Programme settings saved" in page.content()

    saved = ProgrammeSettings.load()
    assert saved.evening_days == "0126"
    assert saved.evening_starts.strftime("%H:%M") == "19:00"
    assert saved.evening_capacity_bytes == int(2.5 * TB) and saved.weekend_capacity_bytes == 800 * GB
    # shown again as entered, in human units
    assert page.get_by_label("Evening window opens at (London time)").input_value() == "19:00"
    assert (
        evening.get_by_label("Amount").input_value() == "2560"
        and evening.get_by_label("Unit").input_value() == "GB"
    )
    assert weekend.get_by_label("Amount").input_value() == "800"


@pytest.mark.django_db(transaction=True)
def test_retry_these_on_a_finished_wave_shows_them_queued_at_once(browser_pages, org_a, monkeypatch):
    pumped = []  # the worker's part is tested elsewhere: here, that the wave is queued at once
    monkeypatch.setattr("migrations_app.services.failures.wave_pump_later", pumped.append)
    officer = UserFactory(username="officer", role="programme_office")
    wave = wave_in_states([org_a], {"migrated": 2, ("failed", "AUTH_FAILED"): 3})
    from migrations_app.services.execution import wave_tick

    wave_tick()  # nothing left to do: completed, not "Running, moving now 0"
    wave.refresh_from_db()
    assert wave.status == Wave.Status.COMPLETED

    page = browser_pages(officer)
    page.goto(f"/waves/{wave.pk}/")
    assert "Completed" in page.locator("#wave-live-status").inner_text()
    page.get_by_role("button", name=re.compile("Retry these")).click()

    notice = page.locator("#wave-retried")
    notice.wait_for()
    assert "3 mailbox(es) with AUTH_FAILED queued to be retried now" in notice.inner_text()
    assert "3 queued to start" in page.locator("#wave-moving-now").inner_text()
    assert "Running" in page.locator("#wave-live-status").inner_text()
    assert page.locator("#wave-live").get_attribute("data-live") == "yes"
    assert Mailbox.objects.filter(wave=wave, state=Mailbox.State.SCHEDULED).count() == 3
    assert pumped == [wave.pk]
