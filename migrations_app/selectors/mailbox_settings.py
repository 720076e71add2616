"""Mailbox settings the exchange engine moved or could not move (Mailbox.settings_report), for the mailbox page
and the CSV the tenant's Exchange admin works from. The rows are read by an index (organisation or wave, then id,
over the mailboxes that have a report) and expanded as they stream."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import QuerySet

from migrations_app.models import Mailbox
from migrations_app.views._csv import CHUNK_SIZE

SETTING_LABELS = {
    "automatic_replies": "Automatic replies",
    "working_hours": "Working hours and time zone",
    "inbox_rule": "Inbox rule",
    "calendar_permission": "Calendar permission",
    "delegate": "Delegate",
    "send_as_full_access": "Send As and Full Access",
}
OUTCOMES = ("skipped", "applied", "all")
SETTINGS_CSV_HEADER = [
    "organisation",
    "mailbox",
    "target_upn",
    "wave",
    "setting",
    "name",
    "outcome",
    "detail",
    "phase",
    "recorded_at",
]


def setting_label(setting: str) -> str:
    return SETTING_LABELS.get(setting, setting.replace("_", " ").capitalize())


def mailbox_settings(mailbox: Mailbox) -> dict | None:
    """The page's view of the report: when, which pass, and each setting with its label (skipped first)."""
    report = mailbox.settings_report
    if not report:
        return None
    records = sorted(
        report.get("records", []), key=lambda r: (r.get("outcome") != "skipped", r.get("setting", ""))
    )
    return {
        "at": report.get("at", ""),
        "phase": report.get("phase", ""),
        "records": [{**r, "label": setting_label(r.get("setting", ""))} for r in records],
        "skipped": sum(1 for r in records if r.get("outcome") == "skipped"),
        "applied": sum(1 for r in records if r.get("outcome") == "applied"),
    }


def settings_csv_rows(mailboxes: QuerySet[Mailbox], outcome: str = "skipped") -> Iterator[list]:
    """One row per setting of each mailbox with a report (`outcome`: skipped, applied or all)."""
    rows = (
        mailboxes.filter(settings_report__isnull=False)
        .order_by("id")
        .values_list("organisation__ods_code", "email", "target_upn", "wave__name", "settings_report")
    )
    for ods, email, upn, wave, report in rows.iterator(chunk_size=CHUNK_SIZE):
        for record in (report or {}).get("records", []):
            if outcome != "all" and record.get("outcome") != outcome:
                continue
            yield [
                ods,
                email,
                upn,
                wave or "",
                setting_label(record.get("setting", "")),
                record.get("name", ""),
                record.get("outcome", ""),
                record.get("detail", ""),
                (report or {}).get("phase", ""),
                (report or {}).get("at", ""),
            ]
