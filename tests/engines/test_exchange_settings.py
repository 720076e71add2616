"""The exchange engine moves a mailbox's settings: automatic replies, working hours and time zone, inbox rules (their
folders mapped to the copied ones) and calendar permissions arrive on the fake Graph as Microsoft documents them;
a rerun updates in place and adds nothing; what Graph cannot take is listed with a reason."""

from __future__ import annotations

import pytest

from migrations_app.engines import RetryableError, get_engine
from tests.engines.exchange_fixtures import (  # noqa: F401 - fixtures
    ExchangeBox,
    exbox,
    fake_ews,
    fake_graph,
)

SETTINGS = {
    "oof": {
        "state": "Scheduled",
        "audience": "Known",
        "start": "2030-01-06T08:00:00Z",
        "end": "2030-01-10T17:00:00Z",
        "internal": "<p>On leave until Friday; ring the ward on 2204.</p>",
        "external": "I am away until 10 January.",
    },
    "working_hours": {
        "time_zone": "GMT Standard Time",
        "start": "07:30:00",
        "end": "15:30:00",
        "days": ["Monday", "Tuesday", "Wednesday", "Thursday"],
    },
    "rules": [
        {
            "name": "Project mail",
            "priority": 1,
            "subject_contains": ["project"],
            "from": ["pm@nhs.net"],
            "move_to": "Inbox/Projects",
            "mark_as_read": True,
            "stop": True,
        },
        {"name": "Copy the rota", "priority": 2, "subject_contains": ["rota"], "forward_to": ["me@nhs.net"]},
        {"name": "Outlook only", "priority": 3, "unsupported": True},
        {"name": "To the unread search", "priority": 4, "subject_contains": ["x"], "move_to": "Unread Mail"},
    ],
    "calendar_permissions": [
        {"user": "Default", "level": "FreeBusyTimeAndSubjectAndLocation"},
        {"user": "bob@trust.nhs.uk", "name": "Bob Smith", "level": "Reviewer"},
        {"user": "pa@trust.nhs.uk", "name": "Pat Assistant", "level": "Editor"},
        {"user": "odd@trust.nhs.uk", "name": "Odd One", "level": "Contributor"},
        {"user": "Anonymous", "level": "None"},
    ],
    "delegates": [
        {
            "user": "pa@trust.nhs.uk",
            "name": "Pat Assistant",
            "calendar": "Editor",
            "inbox": "Reviewer",
            "view_private": True,
            "meeting_copies": True,
        }
    ],
}


def engine(fake_graph):  # noqa: F811
    return get_engine("exchange", http_client=fake_graph.session(), max_wait=20)


@pytest.fixture
def box(exbox):  # noqa: F811
    exbox.store.settings = {k: (list(v) if isinstance(v, list) else dict(v)) for k, v in SETTINGS.items()}
    return exbox


def outcomes(checkpoint) -> dict:
    return {(r["setting"], r["name"]): r["outcome"] for r in checkpoint["settings"]["records"]}


def test_a_mailbox_arrives_with_its_automatic_replies_hours_rules_and_calendar_permissions(box, fake_graph):  # noqa: F811
    result = engine(fake_graph).sync(box.spec())

    target = box.target
    assert target.mailbox_settings["automaticRepliesSetting"] == {
        "status": "scheduled",
        "externalAudience": "contactsOnly",
        "internalReplyMessage": "<p>On leave until Friday; ring the ward on 2204.</p>",
        "externalReplyMessage": "I am away until 10 January.",
        "scheduledStartDateTime": {"dateTime": "2030-01-06T08:00:00", "timeZone": "UTC"},
        "scheduledEndDateTime": {"dateTime": "2030-01-10T17:00:00", "timeZone": "UTC"},
    }
    assert target.mailbox_settings["timeZone"] == "GMT Standard Time"
    assert target.mailbox_settings["workingHours"] == {
        "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday"],
        "startTime": "07:30:00.0000000",
        "endTime": "15:30:00.0000000",
        "timeZone": {"name": "GMT Standard Time"},
    }
    rules = {r["displayName"]: r for r in target.rules.values()}
    assert set(rules) == {"Project mail", "Copy the rota"}
    projects = target.by_path("Inbox", "Projects")
    assert rules["Project mail"]["actions"] == {
        "markAsRead": True,
        "moveToFolder": projects.id,  # the copied folder on the target, not the Exchange 2013 id
        "stopProcessingRules": True,
    }
    assert rules["Project mail"]["conditions"] == {
        "subjectContains": ["project"],
        "fromAddresses": [{"emailAddress": {"address": "pm@nhs.net"}}],
    }
    assert rules["Copy the rota"]["actions"] == {"forwardTo": [{"emailAddress": {"address": "me@nhs.net"}}]}
    roles = {
        (p["emailAddress"].get("address") or p["emailAddress"]["name"]): p["role"]
        for p in target.calendar_permissions.values()
    }
    assert roles == {
        "My Organization": "limitedRead",
        "bob@trust.nhs.uk": "read",
        "pa@trust.nhs.uk": "delegateWithPrivateEventAccess",
    }
    got = outcomes(result.checkpoint)
    assert got[("automatic_replies", "")] == got[("working_hours", "")] == "applied"
    assert got[("inbox_rule", "Project mail")] == "applied"
    assert got[("inbox_rule", "Outlook only")] == got[("inbox_rule", "To the unread search")] == "skipped"
    assert got[("calendar_permission", "Odd One")] == "skipped"  # Contributor has no Graph role
    assert got[("delegate", "pa@trust.nhs.uk")] == got[("send_as_full_access", "")] == "skipped"
    reasons = {
        r["name"]: r["detail"] for r in result.checkpoint["settings"]["records"] if r["outcome"] == "skipped"
    }
    assert "folder was not copied" in reasons["To the unread search"]
    assert "meeting messages" in reasons["pa@trust.nhs.uk"]
    assert result.checkpoint["settings"]["phase"] == "pre-stage"


def test_a_rerun_updates_in_place_and_the_cutover_carries_a_change_made_since(box, fake_graph):  # noqa: F811
    eng = engine(fake_graph)
    first = eng.sync(box.spec())
    posts = {k: v for k, v in fake_graph.settings_requests.items() if k[0] == "POST"}
    rule_ids = set(box.target.rules)

    again = eng.sync(box.spec(), first.checkpoint)  # a retry of the same pass changes nothing
    assert {k: v for k, v in fake_graph.settings_requests.items() if k[0] == "POST"} == posts
    assert set(box.target.rules) == rule_ids and len(box.target.calendar_permissions) == 3
    assert outcomes(again.checkpoint) == outcomes(first.checkpoint)

    box.store.settings["oof"] = {
        "state": "Enabled",
        "audience": "All",
        "internal": "Off sick",
        "external": "Off",
    }
    box.store.settings["rules"][1] = {**box.store.settings["rules"][1], "enabled": False}
    cutover = eng.cutover(box.spec(), again.checkpoint)

    assert box.target.mailbox_settings["automaticRepliesSetting"]["status"] == "alwaysEnabled"
    assert box.target.mailbox_settings["automaticRepliesSetting"]["internalReplyMessage"] == "Off sick"
    rota = next(r for r in box.target.rules.values() if r["displayName"] == "Copy the rota")
    assert rota["isEnabled"] is False and set(box.target.rules) == rule_ids
    assert cutover.checkpoint["settings"]["phase"] == "cutover"


def test_a_grantee_missing_from_the_tenant_is_skipped_with_graphs_words_and_the_rest_applied(box, fake_graph):  # noqa: F811
    fake_graph.unknown_grantees.add("bob@trust.nhs.uk")

    result = engine(fake_graph).sync(box.spec())

    records = {(r["setting"], r["name"]): r for r in result.checkpoint["settings"]["records"]}
    bob = records[("calendar_permission", "bob@trust.nhs.uk")]
    assert bob["outcome"] == "skipped" and "ErrorInvalidUser" in bob["detail"]
    assert records[("calendar_permission", "pa@trust.nhs.uk")]["outcome"] == "applied"
    assert box.target.mailbox_settings["automaticRepliesSetting"]["status"] == "scheduled"


def test_a_mailbox_without_settings_keeps_the_targets_defaults(exbox, fake_graph):  # noqa: F811
    result = engine(fake_graph).sync(exbox.spec())

    assert exbox.target.rules == {} and len(exbox.target.calendar_permissions) == 1
    got = outcomes(result.checkpoint)
    assert got[("automatic_replies", "")] == "applied"  # disabled on the source: disabled on the target
    assert exbox.target.mailbox_settings["automaticRepliesSetting"]["status"] == "disabled"
    assert ("working_hours", "") not in got  # never set in Outlook: the target's own stay


def test_a_part_exchange_refuses_is_listed_and_the_rest_still_moves(
    box,
    fake_ews,  # noqa: F811
    fake_graph,  # noqa: F811
):
    fake_ews.fail("GetInboxRules", "ErrorAccessDenied")

    result = engine(fake_graph).sync(box.spec())

    records = {(r["setting"], r["name"]): r for r in result.checkpoint["settings"]["records"]}
    refused = records[("inbox_rule", "")]
    assert refused["outcome"] == "skipped" and "ErrorAccessDenied" in refused["detail"]
    assert box.target.rules == {}  # nothing half-written
    assert box.target.mailbox_settings["automaticRepliesSetting"]["status"] == "scheduled"
    assert records[("calendar_permission", "bob@trust.nhs.uk")]["outcome"] == "applied"


def test_exchange_busy_past_the_wait_retries_the_settings_from_the_copied_checkpoint(
    box,
    fake_ews,  # noqa: F811
    fake_graph,  # noqa: F811
):
    fake_ews.fail("GetUserOofSettingsRequest", "ErrorServerBusy", back_off_ms=5000)
    eng = get_engine("exchange", http_client=fake_graph.session(), max_wait=1)

    with pytest.raises(RetryableError) as raised:
        eng.sync(box.spec())

    assert raised.value.checkpoint["items"] == 12  # the copy is kept: the retry does not copy again
    fake_ews.faults.clear()
    again = eng.sync(box.spec(), raised.value.checkpoint)
    assert again.items_copied == 0 and box.arrived() == box.expected()
    assert box.target.mailbox_settings["automaticRepliesSetting"]["status"] == "scheduled"
