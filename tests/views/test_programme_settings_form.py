"""Windows and planning rules as a programme officer fills them in: weekday boxes, London times, capacity in
GB/TB; what is shown goes back unchanged, and bad input gets a clear error and changes nothing."""

import datetime as dt

import pytest

from migrations_app.forms_settings import ProgrammeSettingsForm, capacity_parts, next_windows
from migrations_app.models import ProgrammeSettings

TB, GB = 1024**4, 1024**3


def _posted(settings: ProgrammeSettings, **changes) -> dict:
    """What the page would send back for the settings as shown, with some answers changed."""
    form = ProgrammeSettingsForm(instance=settings, prefix="settings")
    data = {}
    for field in form:
        value = field.value()
        if isinstance(value, list):
            data[field.html_name] = [str(v) for v in value]
        elif isinstance(value, bool):
            if value:
                data[field.html_name] = "on"
        elif value is not None:
            data[field.html_name] = (
                field.field.prepare_value(value) if hasattr(field.field, "prepare_value") else value
            )
    for name, value in changes.items():
        if value is None:
            data.pop(f"settings-{name}", None)
        else:
            data[f"settings-{name}"] = value
    return data


def test_the_page_shows_ticked_days_london_times_and_sizes_in_tb(client_for, officer):
    page = client_for(officer).get("/waves/settings/").content.decode()
    for day, ticked in (("0", True), ("3", True), ("4", False), ("6", False)):
        box = page.split(f'name="settings-evening_days" type="checkbox" value="{day}"')[1].split(">")[0]
        assert ("checked" in box) is ticked, day
    assert 'value="18:00"' in page and "London time" in page
    assert 'id="settings-evening_capacity_amount"' in page and 'value="30"' in page and 'value="110"' in page
    assert '<option value="TB" selected>' in page
    assert "32985348833280" not in page and "0123" not in page


def test_saving_the_page_unchanged_changes_nothing(client_for, officer):
    settings = ProgrammeSettings.load()
    settings.evening_capacity_bytes = 12_345_678_901  # set through the admin: not a whole GB
    settings.save()
    client = client_for(officer)
    response = client.post("/waves/settings/", _posted(settings))
    assert response.status_code == 302
    again = ProgrammeSettings.load()
    assert again.evening_capacity_bytes == 12_345_678_901
    assert again.evening_days == "0123" and again.evening_starts == dt.time(18)


def test_days_times_and_capacity_are_stored_as_the_planner_reads_them(client_for, officer):
    settings = ProgrammeSettings.load()
    data = _posted(
        settings,
        evening_days=["4", "0", "2"],
        evening_starts="7pm",
        evening_ends="0530",
        evening_capacity_amount="2,500",
        evening_capacity_unit="GB",
        weekend_capacity_amount="1.5",
        weekend_capacity_unit="TB",
    )
    assert client_for(officer).post("/waves/settings/", data).status_code == 302
    saved = ProgrammeSettings.load()
    assert saved.evening_days == "024"
    assert saved.evening_starts == dt.time(19) and saved.evening_ends == dt.time(5, 30)
    assert saved.evening_capacity_bytes == 2500 * GB
    assert saved.weekend_capacity_bytes == int(1.5 * TB)
    page = client_for(officer).get("/waves/settings/").content.decode()
    assert 'value="2500"' in page and 'value="1536"' in page  # 1.5 TB is not a whole TB: shown in GB
    assert 'value="19:00"' in page and 'value="05:30"' in page


def test_no_days_ticked_means_no_evening_windows(client_for, officer):
    data = _posted(ProgrammeSettings.load(), evening_days=None)
    assert client_for(officer).post("/waves/settings/", data).status_code == 302
    assert ProgrammeSettings.load().evening_days == ""


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("evening_starts", "25:00", "Enter the time on the 24-hour clock, like 18:00 or 06:30"),
        ("evening_starts", "evening", "Enter the time on the 24-hour clock, like 18:00 or 06:30"),
        ("weekend_ends", "", "Enter the time on the 24-hour clock, like 18:00 or 06:30"),
        (
            "evening_capacity_amount",
            "lots",
            "The data an evening window can move must be a number, like 30 or 2.5",
        ),
        ("evening_capacity_amount", "0", "The data an evening window can move must be more than 0"),
        ("evening_capacity_amount", "-3", "The data an evening window can move must be more than 0"),
        ("weekend_capacity_amount", "", "Enter the data a weekend window can move, like 30 TB or 500 GB"),
        ("weekend_capacity_amount", "0.5", "The data a weekend window can move must be at least 1 GB"),
        (
            "evening_capacity_amount",
            "9999999",
            "The data an evening window can move must be at most 1,048,576 TB",
        ),
        ("evening_capacity_mailboxes", "0", "The mailboxes an evening window can move must be at least 1"),
        ("planning_horizon_days", "soon", "The planning horizon (days ahead) must be a whole number"),
        ("evening_days", ["7"], "Select a valid choice. 7 is not one of the available choices."),
    ],
)
def test_bad_answers_get_a_clear_error_and_change_nothing(client_for, officer, field, value, message):
    data = _posted(ProgrammeSettings.load(), **{field: value})
    if field == "weekend_capacity_amount" and value == "0.5":
        data["settings-weekend_capacity_unit"] = "GB"
    response = client_for(officer).post("/waves/settings/", data)
    assert response.status_code == 400
    page = response.content.decode()
    assert "There is a problem" in page and message in page
    assert f'href="#settings-{field}"' in page  # the error summary leads to the box to fix
    saved = ProgrammeSettings.load()
    assert saved.evening_days == "0123" and saved.evening_capacity_bytes == 30 * TB
    assert saved.weekend_capacity_bytes == 110 * TB and saved.evening_starts == dt.time(18)


def test_a_weekend_window_closing_before_it_opens_on_one_day_is_refused(client_for, officer):
    data = _posted(
        ProgrammeSettings.load(),
        weekend_start_day="5",
        weekend_end_day="5",
        weekend_starts="18:00",
        weekend_ends="06:00",
    )
    response = client_for(officer).post("/waves/settings/", data)
    assert response.status_code == 400
    assert "must close after it opens" in response.content.decode()


def test_capacity_is_shown_in_whole_tb_or_gb():
    assert capacity_parts(30 * TB) == ("30", "TB")
    assert capacity_parts(500 * GB) == ("500", "GB")
    assert capacity_parts(int(2.25 * GB)) == ("2.25", "GB")


def test_the_next_windows_keep_their_london_hours_across_the_clock_change(db):
    """18:00 stays 18:00 on both sides of the change; the night the clocks go back is an hour longer."""
    settings = ProgrammeSettings.load()
    settings.evening_days = "0123456"
    windows = next_windows(settings, today=dt.date(2026, 10, 24), count=3)
    evenings = [w for w in windows if w["kind"] == "Weekday evening"]
    assert [w["starts"].strftime("%a %d %H:%M %Z") for w in evenings] == [
        "Sat 24 18:00 BST",
        "Sun 25 18:00 GMT",
        "Mon 26 18:00 GMT",
    ]
    assert [w["hours"] for w in evenings] == ["13", "12", "12"]  # 18:00 BST -> 06:00 GMT on the 25th is 13 h
    assert evenings[0]["clock_change"] and not evenings[1]["clock_change"]
    weekend = next(w for w in windows if w["kind"] == "Weekend")
    assert weekend["starts"].strftime("%a %d %H:%M %Z") == "Fri 30 18:00 GMT"


def test_the_page_lists_the_next_windows_in_london_time(client_for, officer):
    page = client_for(officer).get("/waves/settings/").content.decode()
    assert 'id="next-windows"' in page and ("GMT" in page or "BST" in page)


def test_only_the_programme_office_sees_or_changes_the_rules(client_for, admin_a, viewer):
    data = _posted(ProgrammeSettings.load(), evening_capacity_mailboxes="5")
    for user in (admin_a, viewer):
        assert client_for(user).post("/waves/settings/", data).status_code == 403
    assert ProgrammeSettings.load().evening_capacity_mailboxes == 22_000


def test_the_audit_trail_says_what_changed_in_words(client_for, officer):
    from migrations_app.models import Event

    data = _posted(
        ProgrammeSettings.load(),
        evening_days=["0", "1"],
        evening_starts="19:00",
        evening_capacity_amount="20",
        weekend_start_day="3",
    )
    assert client_for(officer).post("/waves/settings/", data).status_code == 302
    event = Event.objects.get(action="programme.settings_changed")
    assert event.data == {
        "evening_days": ["Monday, Tuesday, Wednesday, Thursday", "Monday, Tuesday"],
        "evening_starts": ["18:00", "19:00"],
        "evening_capacity_bytes": ["30.0 TB", "20.0 TB"],
        "weekend_start_day": ["Friday", "Thursday"],
    }
    assert event.actor == officer and "evening days" in event.subject
