"""The fake Graph's mailbox settings, shaped like Microsoft's documented requests and responses (FakeGraph routes to
them; the state lives on each ImportMailbox):

- PATCH /users/{id}/mailboxSettings                  automaticRepliesSetting, workingHours, timeZone (PATCH merges
                                                     the properties sent, answers 200 with them)
- GET / POST  /users/{id}/mailFolders/inbox/messageRules, GET / PATCH / DELETE .../messageRules/{id}
                                                     (displayName, sequence and actions required; moveToFolder and
                                                     copyToFolder must name a folder of the mailbox)
- GET / POST  /users/{id}/calendar/calendarPermissions, PATCH / DELETE .../calendarPermissions/{id}
                                                     (every calendar starts with "My Organization", freeBusyRead, not
                                                     removable; a grantee not in the tenant is 404 ErrorInvalidUser)

With serve --dump DIR, each change is written to DIR/<user>/_settings.json.
"""

from __future__ import annotations

import copy
import json
import uuid
from urllib.parse import unquote

from tests.fakes.microsoft import GRAPH, _graph_error

OOF_STATUSES = {"disabled", "alwaysEnabled", "scheduled"}
AUDIENCES = {"none", "contactsOnly", "all"}
DAYS = {"sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"}
ROLES = {
    "none",
    "freeBusyRead",
    "limitedRead",
    "read",
    "write",
    "delegateWithoutPrivateEventAccess",
    "delegateWithPrivateEventAccess",
}
RULE_ACTIONS = {
    "assignCategories",
    "copyToFolder",
    "delete",
    "forwardAsAttachmentTo",
    "forwardTo",
    "markAsRead",
    "markImportance",
    "moveToFolder",
    "permanentDelete",
    "redirectTo",
    "stopProcessingRules",
}


def default_settings() -> dict:
    return {
        "automaticRepliesSetting": {
            "status": "disabled",
            "externalAudience": "all",
            "internalReplyMessage": "",
            "externalReplyMessage": "",
        },
        "timeZone": "UTC",
        "workingHours": {
            "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
            "startTime": "08:00:00.0000000",
            "endTime": "17:00:00.0000000",
            "timeZone": {"name": "UTC"},
        },
    }


def default_permissions() -> dict:
    entry = {
        "id": "RGVmYXVsdA==",
        "emailAddress": {"name": "My Organization"},
        "isRemovable": False,
        "isInsideOrganization": True,
        "role": "freeBusyRead",
        "allowedRoles": ["none", "freeBusyRead", "limitedRead", "read", "write"],
    }
    return {entry["id"]: entry}


def _bad(message: str, code: str = "ErrorInvalidRequest"):
    return 400, {}, _graph_error(code, message)


def _check_settings(data: dict):
    oof = data.get("automaticRepliesSetting")
    if oof is not None:
        if oof.get("status") not in OOF_STATUSES:
            return _bad(f"Invalid automatic replies status: {oof.get('status')!r}")
        if oof.get("externalAudience", "all") not in AUDIENCES:
            return _bad(f"Invalid external audience: {oof.get('externalAudience')!r}")
        if oof["status"] == "scheduled" and not (
            oof.get("scheduledStartDateTime") and oof.get("scheduledEndDateTime")
        ):
            return _bad("A scheduled automatic reply needs scheduledStartDateTime and scheduledEndDateTime.")
    hours = data.get("workingHours")
    if hours is not None and not set(hours.get("daysOfWeek", [])) <= DAYS:
        return _bad(f"Invalid daysOfWeek: {hours.get('daysOfWeek')!r}")
    zone = data.get("timeZone")
    if zone is not None and not zone:
        return _bad(f"The time zone {zone!r} is not valid.", "ErrorTimeZone")
    return None


def route(fake, version: str, method: str, mailbox, rest: list[str], body: bytes):
    """(status, headers, body) for a settings request, or None when `rest` is not one of ours."""
    answer = _route(fake, version, method, mailbox, rest, body)
    if answer is not None:
        with fake._lock:
            fake.settings_requests[(method, "/".join(p for p in rest if len(p) < 30))] += 1
        if fake.dump and method != "GET" and answer[0] < 300:
            dump(fake.dump, mailbox)
    return answer


def dump(directory, mailbox) -> None:
    """DIR/<user>/_settings.json: the mailbox's settings as they stand (serve --dump)."""
    path = directory / mailbox.upn / "_settings.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "mailboxSettings": mailbox.mailbox_settings,
        "messageRules": sorted(mailbox.rules.values(), key=lambda r: r.get("sequence", 0)),
        "calendarPermissions": list(mailbox.calendar_permissions.values()),
    }
    path.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")


def _route(fake, version: str, method: str, mailbox, rest: list[str], body: bytes):
    data = json.loads(body or b"{}") if method in ("POST", "PATCH") else {}
    base = f"https://{GRAPH}/{version}/users('{mailbox.upn}')"
    # GET mailboxSettings is the fake cloud's own (tests/fakes/microsoft.py: userPurpose, language, ...); a test
    # reads what was written from mailbox.mailbox_settings
    if rest == ["mailboxSettings"] and method == "PATCH":
        refused = _check_settings(data)
        if refused:
            return refused
        mailbox.mailbox_settings.update(copy.deepcopy(data))
        return 200, {}, {"@odata.context": f"{base}/mailboxSettings", **copy.deepcopy(data)}
    if rest[:3] == ["mailFolders", "inbox", "messageRules"]:
        return _collection(mailbox, mailbox.rules, rest[3:], method, data, _check_rule, "messageRules")
    if rest[:2] == ["calendar", "calendarPermissions"]:
        return _collection(
            mailbox,
            mailbox.calendar_permissions,
            rest[2:],
            method,
            data,
            lambda m, d, creating: _check_permission(fake, d, creating),
            "calendarPermissions",
        )
    return None


def _collection(mailbox, entries: dict, tail: list[str], method: str, data: dict, check, name: str):
    if not tail:
        if method == "GET":
            return 200, {}, {"value": [copy.deepcopy(e) for e in entries.values()]}
        if method == "POST":
            refused = check(mailbox, data, True)
            if refused:
                return refused
            entry = {"id": uuid.uuid4().hex, **copy.deepcopy(data)}
            entries[entry["id"]] = entry
            return 201, {}, copy.deepcopy(entry)
        return None
    entry = entries.get(unquote(tail[0]))
    if entry is None:
        return 404, {}, _graph_error("ErrorItemNotFound", f"The {name} entry was not found.")
    if method == "GET":
        return 200, {}, copy.deepcopy(entry)
    if method == "PATCH":
        refused = check(mailbox, {**entry, **data}, False)
        if refused:
            return refused
        entry.update(copy.deepcopy(data))
        return 200, {}, copy.deepcopy(entry)
    if method == "DELETE":
        if entry.get("isRemovable") is False:
            return 403, {}, _graph_error("ErrorAccessDenied", "This permission cannot be removed.")
        del entries[unquote(tail[0])]
        return 204, {}, None
    return None


def _check_rule(mailbox, data: dict, creating: bool):
    if not data.get("displayName"):
        return _bad("displayName is required.")
    if not isinstance(data.get("sequence"), int) or data["sequence"] < 1:
        return _bad("sequence must be a positive integer.")
    actions = data.get("actions") or {}
    if not actions or not set(actions) <= RULE_ACTIONS:
        return _bad(f"Invalid rule actions: {sorted(actions)}")
    for key in ("moveToFolder", "copyToFolder"):
        if key in actions and mailbox.folder(actions[key]) is None:
            return _bad(f"The folder {actions[key]!r} was not found.", "ErrorInvalidFolderId")
    return None  # Exchange Online allows two rules with one name: the engine must not make them


def _check_permission(fake, data: dict, creating: bool):
    if data.get("role") not in ROLES:
        return _bad(f"Invalid role: {data.get('role')!r}")
    if creating:
        address = ((data.get("emailAddress") or {}).get("address") or "").lower()
        if not address or address in fake.unknown_grantees:
            return 404, {}, _graph_error("ErrorInvalidUser", f"The user {address!r} was not found.")
    return None
