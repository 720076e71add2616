"""Exchange 2013 mailbox settings (ews_settings.SourceSettings) as Microsoft Graph requests, and what Graph cannot
take, each with a reason a tenant's Exchange admin can act on. Pure functions: no I/O. Plain Python: no Django.

- automaticRepliesSetting (mailboxSettings): OofState Enabled -> alwaysEnabled, Scheduled -> scheduled (with the
  UTC window), Disabled -> disabled; ExternalAudience None -> none, Known -> contactsOnly, All -> all.
- workingHours and timeZone (mailboxSettings): Outlook's working hours stream gives the days, the time slot and the
  Windows time zone name, which Graph takes as it is.
- messageRule (the Inbox's messageRules): EWS rule predicates and actions by name (ContainsSubjectStrings ->
  subjectContains, MoveToFolder -> moveToFolder with the folder's id on the target, ...). A rule with a predicate
  or action Graph has no field for, one Outlook marks unsupported, or one whose folder was not copied is skipped.
- calendarPermission: EWS CalendarPermissionLevel -> Graph role; the Default entry is Graph's "My Organization".
- What Graph has no API for: delegates (their meeting-request copies and folder rights other than the calendar),
  Send As and Full Access (Active Directory rights that EWS does not show): listed as skipped.
"""

from __future__ import annotations

from dataclasses import dataclass

APPLIED, SKIPPED = "applied", "skipped"

OOF_STATES = {"Enabled": "alwaysEnabled", "Scheduled": "scheduled", "Disabled": "disabled"}
OOF_AUDIENCES = {"None": "none", "Known": "contactsOnly", "All": "all"}

# EWS rule predicate (exchangelib field name) -> Graph messageRulePredicates property, and how the value converts.
PREDICATES = {
    "categories": ("categories", "list"),
    "contains_body_strings": ("bodyContains", "list"),
    "contains_header_strings": ("headerContains", "list"),
    "contains_recipient_strings": ("recipientContains", "list"),
    "contains_sender_strings": ("senderContains", "list"),
    "contains_subject_or_body_strings": ("bodyOrSubjectContains", "list"),
    "contains_subject_strings": ("subjectContains", "list"),
    "flagged_for_action": ("messageActionFlag", "lower"),
    "from_addresses": ("fromAddresses", "recipients"),
    "has_attachments": ("hasAttachments", "bool"),
    "importance": ("importance", "lower"),
    "is_approval_request": ("isApprovalRequest", "bool"),
    "is_automatic_forward": ("isAutomaticForward", "bool"),
    "is_automatic_reply": ("isAutomaticReply", "bool"),
    "is_encrypted": ("isEncrypted", "bool"),
    "is_meeting_request": ("isMeetingRequest", "bool"),
    "is_meeting_response": ("isMeetingResponse", "bool"),
    "is_ndr": ("isNonDeliveryReport", "bool"),
    "is_permission_controlled": ("isPermissionControlled", "bool"),
    "is_read_receipt": ("isReadReceipt", "bool"),
    "is_signed": ("isSigned", "bool"),
    "is_voicemail": ("isVoicemail", "bool"),
    "not_sent_to_me": ("notSentToMe", "bool"),
    "sent_cc_me": ("sentCcMe", "bool"),
    "sent_only_to_me": ("sentOnlyToMe", "bool"),
    "sent_to_addresses": ("sentToAddresses", "recipients"),
    "sent_to_me": ("sentToMe", "bool"),
    "sent_to_or_cc_me": ("sentToOrCcMe", "bool"),
    "sensitivity": ("sensitivity", "lower"),
    "within_size_range": ("withinSizeRange", "size"),
}
ACTIONS = {
    "assign_categories": ("assignCategories", "list"),
    "copy_to_folder": ("copyToFolder", "folder"),
    "delete": ("delete", "bool"),
    "forward_as_attachment_to_recipients": ("forwardAsAttachmentTo", "recipients"),
    "forward_to_recipients": ("forwardTo", "recipients"),
    "mark_as_read": ("markAsRead", "bool"),
    "mark_importance": ("markImportance", "lower"),
    "move_to_folder": ("moveToFolder", "folder"),
    "permanent_delete": ("permanentDelete", "bool"),
    "redirect_to_recipients": ("redirectTo", "recipients"),
    "stop_processing_rules": ("stopProcessingRules", "bool"),
}
# EWS CalendarPermissionLevel -> Graph calendarRoleType. Contributor (create without read) and Custom have none.
CALENDAR_ROLES = {
    "None": "none",
    "FreeBusyTimeOnly": "freeBusyRead",
    "FreeBusyTimeAndSubjectAndLocation": "limitedRead",
    "Reviewer": "read",
    "NoneditingAuthor": "write",
    "Author": "write",
    "PublishingAuthor": "write",
    "Editor": "write",
    "PublishingEditor": "write",
    "Owner": "write",
}
MY_ORGANIZATION = "My Organization"


@dataclass
class Change:
    """One request to make on the target: `key` finds an existing entry to update in place (a rerun changes
    nothing twice): a rule's display name, a grantee's address, or "" for mailboxSettings."""

    setting: str
    name: str
    body: dict
    key: str = ""
    summary: str = ""


def record(setting: str, name: str, outcome: str, detail: str) -> dict:
    return {"setting": setting, "name": name, "outcome": outcome, "detail": detail}


def _recipients(values) -> list[dict]:
    out = []
    for value in values or []:
        address = value.get("address") if isinstance(value, dict) else str(value)
        entry = {"address": address}
        if isinstance(value, dict) and value.get("name"):
            entry["name"] = value["name"]
        out.append({"emailAddress": entry})
    return out


def _convert(kind: str, value, folders: dict[str, str]):
    """The Graph value, or raise KeyError/ValueError with the reason it cannot be converted."""
    if kind == "list":
        return list(value)
    if kind == "bool":
        return bool(value)
    if kind == "lower":
        text = str(value)
        return text[:1].lower() + text[1:]
    if kind == "recipients":
        return _recipients(value)
    if kind == "size":
        return {
            "minimumSize": int(value.get("minimum_size", 0)),
            "maximumSize": int(value.get("maximum_size", 0)),
        }
    if kind == "folder":
        folder_id = value.get("folder_id", "")
        if folder_id not in folders:
            raise KeyError(
                "its folder was not copied to Exchange Online (a search, public or archive folder)"
            )
        return folders[folder_id]
    raise ValueError(kind)


def _predicates(source: dict, folders: dict[str, str], where: str) -> dict:
    out = {}
    for name, value in source.items():
        if name not in PREDICATES:
            raise ValueError(f"the {where} '{name}' has no Graph equivalent")
        prop, kind = PREDICATES[name]
        out[prop] = _convert(kind, value, folders)
    return out


def rule_changes(rules: list[dict], folders: dict[str, str]) -> tuple[list[Change], list[dict]]:
    """Graph messageRules for the source's inbox rules (`folders`: source folder id -> target folder id)."""
    changes, skipped, seen = [], [], set()
    for rule in sorted(rules, key=lambda r: r.get("priority", 0)):
        name = rule.get("name") or "(unnamed rule)"
        if name in seen:  # rules are matched on the target by name: two of one name stay two
            name = f"{name} ({rule.get('priority', len(seen) + 1)})"
        seen.add(name)
        if rule.get("unsupported"):
            skipped.append(
                record(
                    "inbox_rule",
                    name,
                    SKIPPED,
                    "Outlook marks it unsupported on the server (a client-only rule): recreate it in Outlook",
                )
            )
            continue
        try:
            conditions = _predicates(rule.get("conditions", {}), folders, "condition")
            exceptions = _predicates(rule.get("exceptions", {}), folders, "exception")
            actions = {}
            for action, value in rule.get("actions", {}).items():
                if action not in ACTIONS:
                    raise ValueError(f"the action '{action}' has no Graph equivalent")
                prop, kind = ACTIONS[action]
                actions[prop] = _convert(kind, value, folders)
        except (KeyError, ValueError) as exc:
            reason = exc.args[0] if exc.args else str(exc)
            skipped.append(record("inbox_rule", name, SKIPPED, f"{reason}: recreate it by hand"))
            continue
        if not actions:
            skipped.append(record("inbox_rule", name, SKIPPED, "it has no action Graph can carry"))
            continue
        body = {
            "displayName": name,
            "sequence": max(int(rule.get("priority") or 1), 1),
            "isEnabled": bool(rule.get("enabled", True)),
            "conditions": conditions,
            "actions": actions,
        }
        if exceptions:
            body["exceptions"] = exceptions
        summary = ", ".join(sorted(actions))
        changes.append(Change("inbox_rule", name, body, key=name, summary=summary))
    return changes, skipped


def automatic_replies_change(oof: dict | None) -> Change | None:
    if not oof:
        return None
    status = OOF_STATES.get(oof.get("state", "Disabled"), "disabled")
    setting = {
        "status": status,
        "externalAudience": OOF_AUDIENCES.get(oof.get("audience", "All"), "all"),
        "internalReplyMessage": oof.get("internal", ""),
        "externalReplyMessage": oof.get("external", ""),
    }
    if status == "scheduled" and oof.get("start") and oof.get("end"):
        setting["scheduledStartDateTime"] = {"dateTime": oof["start"].rstrip("Z"), "timeZone": "UTC"}
        setting["scheduledEndDateTime"] = {"dateTime": oof["end"].rstrip("Z"), "timeZone": "UTC"}
    summary = status if status != "scheduled" else f"scheduled {oof.get('start')} to {oof.get('end')}"
    return Change("automatic_replies", "", {"automaticRepliesSetting": setting}, summary=summary)


def _graph_time(value: str) -> str:
    hh, mm, *rest = (value or "00:00:00").split(":")
    ss = rest[0] if rest else "00"
    return f"{int(hh):02d}:{int(mm):02d}:{int(float(ss)):02d}.0000000"


def working_hours_change(hours: dict | None) -> Change | None:
    if not hours:
        return None
    days = [d.lower() for d in hours.get("days", [])]
    working = {
        "daysOfWeek": days,
        "startTime": _graph_time(hours.get("start")),
        "endTime": _graph_time(hours.get("end")),
    }
    body: dict = {"workingHours": working}
    zone = hours.get("time_zone")
    if zone:
        working["timeZone"] = {"name": zone}
        body["timeZone"] = zone
    summary = f"{' '.join(d[:3] for d in days)} {hours.get('start')}-{hours.get('end')}" + (
        f" {zone}" if zone else ""
    )
    return Change("working_hours", "", body, summary=summary)


def permission_changes(permissions: list[dict], delegates: list[dict]) -> tuple[list[Change], list[dict]]:
    """Graph calendarPermissions for the calendar's permission set; delegates of the calendar get Graph's delegate
    roles (with or without private events)."""
    delegate_by_user = {d["user"]: d for d in delegates if d.get("user")}
    changes, skipped = [], []
    for entry in permissions:
        user, level = entry.get("user", ""), entry.get("level", "")
        if user == "Anonymous":
            if level != "None":
                skipped.append(
                    record(
                        "calendar_permission",
                        "Anonymous",
                        SKIPPED,
                        f"anonymous access ({level}) is calendar publishing in Exchange Online: publish it again",
                    )
                )
            continue
        role = CALENDAR_ROLES.get(level)
        delegate = delegate_by_user.get(user)
        if delegate and delegate.get("permissions", {}).get("calendar") == "Editor":
            role = (
                "delegateWithPrivateEventAccess"
                if delegate.get("view_private")
                else "delegateWithoutPrivateEventAccess"
            )
        if role is None:
            skipped.append(
                record(
                    "calendar_permission",
                    entry.get("name") or user,
                    SKIPPED,
                    f"the level {level} has no Graph calendar role: grant it with Add-MailboxFolderPermission",
                )
            )
            continue
        if user == "Default":
            changes.append(
                Change("calendar_permission", MY_ORGANIZATION, {"role": role}, key="", summary=role)
            )
            continue
        body = {
            "emailAddress": {"name": entry.get("name") or user, "address": user},
            "isInsideOrganization": True,
            "isRemovable": True,
            "role": role,
        }
        summary = f"{role} (Owner on Exchange 2013: Graph has no owner role)" if level == "Owner" else role
        changes.append(Change("calendar_permission", user, body, key=user.lower(), summary=summary))
    return changes, skipped


def cannot_move(delegates: list[dict]) -> list[dict]:
    """Rights Graph cannot set: listed for the tenant's Exchange admin, each with what to do."""
    out = []
    for delegate in delegates:
        rights = ", ".join(
            f"{folder} {level}" for folder, level in sorted(delegate.get("permissions", {}).items())
        )
        extras = []
        if delegate.get("view_private"):
            extras.append("sees private items")
        if delegate.get("meeting_copies"):
            extras.append("receives copies of meeting messages")
        detail = "; ".join(filter(None, [rights, ", ".join(extras)]))
        out.append(
            record(
                "delegate",
                delegate.get("user") or delegate.get("name", ""),
                SKIPPED,
                f"delegate ({detail}): Graph has no delegate API; re-add in Outlook or with "
                "Add-MailboxFolderPermission -SharingPermissionFlags Delegate",
            )
        )
    out.append(
        record(
            "send_as_full_access",
            "",
            SKIPPED,
            "Send As and Full Access are Active Directory rights EWS does not show: list them on Exchange 2013 "
            "with Get-MailboxPermission and Get-ADPermission, grant them in Exchange Online with "
            "Add-MailboxPermission and Add-RecipientPermission",
        )
    )
    return out
