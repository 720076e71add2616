"""A mailbox's settings written to Exchange Online through Microsoft Graph, idempotently: running it again (the
cutover after the pre-stage, a retry after a crash) updates in place and never adds a second rule or grant.
Plain Python: no Django.

- PATCH /users/{id}/mailboxSettings                {"automaticRepliesSetting": ...} and {"workingHours", "timeZone"}
- GET/POST /users/{id}/mailFolders/inbox/messageRules, PATCH .../messageRules/{id}   (by display name)
- GET/POST /users/{id}/calendar/calendarPermissions, PATCH .../calendarPermissions/{id}   (by address; the
  "My Organization" entry, which every calendar has, is updated for Exchange 2013's Default level)

Permissions: MailboxSettings.ReadWrite (automatic replies, working hours, time zone, rules) and Calendars.ReadWrite
(calendar permissions), application, admin consented. A refusal of one setting (Graph's 400 for a value it does not
take, 403, 404 for a grantee that is not in the tenant) is recorded as skipped with Graph's words; throttling and
outages are raised as RetryableError, so the pass is retried and the settings with it.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

from migrations_app.engines.base import PermanentError
from migrations_app.engines.graph_client import GraphClient
from migrations_app.engines.settings_map import (
    APPLIED,
    MY_ORGANIZATION,
    SKIPPED,
    Change,
    automatic_replies_change,
    cannot_move,
    permission_changes,
    record,
    rule_changes,
    working_hours_change,
)

log = logging.getLogger(__name__)


class GraphSettingsWriter:
    def __init__(self, graph: GraphClient, user: str):
        self.graph = graph
        self.user_path = f"users/{quote(user, safe='@')}"

    def apply(self, settings: dict, folders: dict[str, str]) -> list[dict]:
        """Every setting, applied or skipped with a reason; `folders` maps source folder ids to target ones."""
        records: list[dict] = []
        oof = automatic_replies_change(settings.get("automatic_replies"))
        hours = working_hours_change(settings.get("working_hours"))
        for change in (oof, hours):
            if change is not None:
                records.append(self._patch_settings(change))
        rules, skipped = rule_changes(settings.get("rules", []), folders)
        records += skipped
        if rules:
            records += self._upsert(
                rules, f"{self.user_path}/mailFolders/inbox/messageRules", lambda e: e.get("displayName", "")
            )
        grants, skipped = permission_changes(
            settings.get("calendar_permissions", []), settings.get("delegates", [])
        )
        records += skipped
        if grants:
            records += self._upsert(grants, f"{self.user_path}/calendar/calendarPermissions", _grantee)
        records += cannot_move(settings.get("delegates", []))
        return records

    def _patch_settings(self, change: Change) -> dict:
        try:
            self.graph.request("PATCH", f"{self.user_path}/mailboxSettings", json=change.body)
        except PermanentError as exc:
            return record(change.setting, change.name, SKIPPED, f"Exchange Online refused it: {exc.message}")
        return record(change.setting, change.name, APPLIED, change.summary)

    def _upsert(self, changes: list[Change], collection: str, key_of) -> list[dict]:
        """Update the entries the target already has (matched by key), create the others."""
        try:
            existing = {key_of(entry): entry for entry in self.graph.pages(collection)}
        except PermanentError as exc:
            return [
                record(c.setting, c.name, SKIPPED, f"Exchange Online refused the listing: {exc.message}")
                for c in changes
            ]
        out = []
        for change in changes:
            found = existing.get(change.key)
            try:
                if found is None and change.key == "" and change.name == MY_ORGANIZATION:
                    raise PermanentError("PROTOCOL", "the calendar has no 'My Organization' entry")
                if found is None:
                    self.graph.request("POST", collection, json=change.body)
                else:
                    body = {k: v for k, v in change.body.items() if k not in ("emailAddress",)}
                    if any(found.get(k) != v for k, v in body.items()):
                        self.graph.request("PATCH", f"{collection}/{quote(found['id'], safe='')}", json=body)
            except PermanentError as exc:
                out.append(
                    record(change.setting, change.name, SKIPPED, f"Exchange Online refused it: {exc.message}")
                )
                continue
            out.append(record(change.setting, change.name, APPLIED, change.summary))
        return out


def _grantee(entry: dict) -> str:
    """A calendarPermission's match key: its address, or "" for the organisation-wide entry."""
    address = ((entry.get("emailAddress") or {}).get("address") or "").lower()
    return address
