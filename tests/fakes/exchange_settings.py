"""The fake Exchange 2013's mailbox settings, answered as EWS SOAP bodies (tests/fakes/exchange.py routes to them):

- GetUserOofSettings   -> OofSettings (OofState, ExternalAudience, Duration, InternalReply, ExternalReply)
- GetInboxRules        -> InboxRules of Rule (RuleId, DisplayName, Priority, IsEnabled, Conditions, Actions)
- GetUserConfiguration -> the Calendar folder's "WorkHours" configuration: XmlData holding Outlook's
                          WorkingHours.xsd document (TimeZone with its Name, TimeSlot, WorkDays) [MS-OXOCFG 2.2.5.2.1]
- GetDelegate          -> DelegateUser with DelegatePermissions, and DeliverMeetingRequests
- GetFolder            -> the calendar's PermissionSet/CalendarPermissions when the request asks for folder:PermissionSet
- FindItem             -> items whose item:Size is greater than a constant (the pre-flight's search for items over
                          Exchange Online's 150 MB)

Seeded from DIR/<mailbox>/_settings.json (any key may be left out):

    {"oof": {"state": "Enabled" | "Scheduled" | "Disabled", "audience": "None" | "Known" | "All",
             "start": "2026-12-01T00:00:00Z", "end": "...", "internal": "text", "external": "text"},
     "rules": [{"name": "Projects", "priority": 1, "enabled": true, "subject_contains": ["project"],
                "from": ["x@nhs.net"], "move_to": "Inbox/Projects", "copy_to": "...", "mark_as_read": true,
                "forward_to": ["y@nhs.net"], "delete": false, "stop": true, "categories": ["Red"],
                "importance": "High", "unsupported": false}],
     "working_hours": {"time_zone": "GMT Standard Time", "start": "08:00:00", "end": "17:00:00",
                       "days": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]},
     "calendar_permissions": [{"user": "bob@trust.nhs.uk", "name": "Bob", "level": "Reviewer"},
                              {"user": "Default", "level": "FreeBusyTimeOnly"}],
     "delegates": [{"user": "pa@trust.nhs.uk", "name": "PA", "calendar": "Editor", "inbox": "Reviewer",
                    "view_private": true, "meeting_copies": true}],
     "deliver_meeting_requests": "DelegatesAndMe"}
"""

from __future__ import annotations

import base64
from xml.sax.saxutils import escape

T = "http://schemas.microsoft.com/exchange/services/2006/types"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"


def _strings(tag: str, values) -> str:
    if not values:
        return ""
    return f"<t:{tag}>" + "".join(f"<t:String>{escape(v)}</t:String>" for v in values) + f"</t:{tag}>"


def _addresses(tag: str, values) -> str:
    if not values:
        return ""
    return (
        f"<t:{tag}>"
        + "".join(
            f"<t:Address><t:EmailAddress>{escape(v)}</t:EmailAddress><t:RoutingType>SMTP</t:RoutingType>"
            "</t:Address>"
            for v in values
        )
        + f"</t:{tag}>"
    )


def oof_response(store) -> str:
    oof = store.settings.get("oof") or {"state": "Disabled", "audience": "All"}
    duration = ""
    if oof.get("start") and oof.get("end"):
        duration = (
            f"<Duration><StartTime>{oof['start']}</StartTime><EndTime>{oof['end']}</EndTime></Duration>"
        )
    return (
        f'<GetUserOofSettingsResponse xmlns="{M}"><ResponseMessage ResponseClass="Success">'
        "<ResponseCode>NoError</ResponseCode></ResponseMessage>"
        f'<OofSettings xmlns="{T}"><OofState>{oof.get("state", "Disabled")}</OofState>'
        f"<ExternalAudience>{oof.get('audience', 'All')}</ExternalAudience>{duration}"
        f"<InternalReply><Message>{escape(oof.get('internal', ''))}</Message></InternalReply>"
        f"<ExternalReply><Message>{escape(oof.get('external', ''))}</Message></ExternalReply>"
        "</OofSettings><AllowExternalOof>All</AllowExternalOof></GetUserOofSettingsResponse>"
    )


def _rule_xml(store, n: int, rule: dict) -> str:
    conditions = (
        _strings("ContainsSubjectStrings", rule.get("subject_contains"))
        + _strings("ContainsSenderStrings", rule.get("sender_contains"))
        + _strings("ContainsBodyStrings", rule.get("body_contains"))
        + _addresses("FromAddresses", rule.get("from"))
        + _addresses("SentToAddresses", rule.get("sent_to"))
    )
    actions = _strings("AssignCategories", rule.get("categories"))
    for key, tag in (("copy_to", "CopyToFolder"), ("move_to", "MoveToFolder")):
        if rule.get(key):
            folder = store.folder(*rule[key].split("/"))
            actions += f'<t:{tag}><t:FolderId Id="{folder.id}" ChangeKey="AQAAAA=="/></t:{tag}>'
    if rule.get("delete"):
        actions += "<t:Delete>true</t:Delete>"
    actions += _addresses("ForwardToRecipients", rule.get("forward_to"))
    if rule.get("importance"):
        actions += f"<t:MarkImportance>{rule['importance']}</t:MarkImportance>"
    if rule.get("mark_as_read"):
        actions += "<t:MarkAsRead>true</t:MarkAsRead>"
    actions += _addresses("RedirectToRecipients", rule.get("redirect_to"))
    if rule.get("stop"):
        actions += "<t:StopProcessingRules>true</t:StopProcessingRules>"
    flags = "<t:IsNotSupported>true</t:IsNotSupported>" if rule.get("unsupported") else ""
    return (
        f"<t:Rule><t:RuleId>{rule.get('id') or f'AQAAAAAAAA{n:02d}='}</t:RuleId>"
        f"<t:DisplayName>{escape(rule['name'])}</t:DisplayName>"
        f"<t:Priority>{rule.get('priority', n)}</t:Priority>"
        f"<t:IsEnabled>{'true' if rule.get('enabled', True) else 'false'}</t:IsEnabled>{flags}"
        f"<t:Conditions>{conditions}</t:Conditions><t:Exceptions/><t:Actions>{actions}</t:Actions></t:Rule>"
    )


def rules_response(store) -> str:
    rules = store.settings.get("rules") or []
    body = "".join(_rule_xml(store, n, rule) for n, rule in enumerate(rules, 1))
    inbox_rules = f"<m:InboxRules>{body}</m:InboxRules>" if rules else ""
    return (
        '<m:GetInboxRulesResponse ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
        f"<m:OutlookRuleBlobExists>{'true' if rules else 'false'}</m:OutlookRuleBlobExists>{inbox_rules}"
        "</m:GetInboxRulesResponse>"
    )


def work_hours_xml(hours: dict) -> bytes:
    """Outlook's working hours stream (WorkingHours.xsd), as Exchange stores it in the Calendar's FAI message."""
    days = " ".join(hours.get("days") or ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"])
    transition = (
        "<Bias>{bias}</Bias><ChangeDate><Time>{time}</Time><Date>0000/{month:02d}/05</Date>"
        "<DayOfWeek>0</DayOfWeek></ChangeDate>"
    )
    return (
        '<?xml version="1.0"?><Root xmlns="WorkingHours.xsd"><WorkHoursVersion1><TimeZone><Bias>0</Bias>'
        f"<Standard>{transition.format(bias=0, time='02:00:00', month=10)}</Standard>"
        f"<DaylightSavings>{transition.format(bias=-60, time='01:00:00', month=3)}</DaylightSavings>"
        f"<Name>{escape(hours.get('time_zone', 'GMT Standard Time'))}</Name></TimeZone>"
        f"<TimeSlot><Start>{hours.get('start', '09:00:00')}</Start><End>{hours.get('end', '17:00:00')}</End>"
        f"</TimeSlot><WorkDays>{days}</WorkDays></WorkHoursVersion1></Root>"
    ).encode()


def user_configuration_response(store, request) -> str:
    name_elem = request.find(f"{{{M}}}UserConfigurationName")
    name = name_elem.get("Name") if name_elem is not None else ""
    folder = name_elem.find(f"{{{T}}}DistinguishedFolderId") if name_elem is not None else None
    hours = store.settings.get("working_hours")
    wrap = (
        "<m:GetUserConfigurationResponse><m:ResponseMessages>{}</m:ResponseMessages>"
        "</m:GetUserConfigurationResponse>"
    )
    if name != "WorkHours" or folder is None or folder.get("Id") != "calendar" or not hours:
        return wrap.format(
            '<m:GetUserConfigurationResponseMessage ResponseClass="Error">'
            "<m:MessageText>The specified object was not found in the store.</m:MessageText>"
            "<m:ResponseCode>ErrorItemNotFound</m:ResponseCode><m:DescriptiveLinkKey>0</m:DescriptiveLinkKey>"
            "</m:GetUserConfigurationResponseMessage>"
        )
    data = base64.b64encode(work_hours_xml(hours)).decode()
    return wrap.format(
        '<m:GetUserConfigurationResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
        '<m:UserConfiguration><t:UserConfigurationName Name="WorkHours"><t:DistinguishedFolderId Id="calendar"/>'
        f'</t:UserConfigurationName><t:ItemId Id="WH{store.root_id}" ChangeKey="AQAAAA=="/>'
        f"<t:XmlData>{data}</t:XmlData></m:UserConfiguration></m:GetUserConfigurationResponseMessage>"
    )


def _user_id(entry: dict) -> str:
    if entry["user"] in ("Default", "Anonymous"):
        return f"<t:UserId><t:DistinguishedUser>{entry['user']}</t:DistinguishedUser></t:UserId>"
    return (
        f"<t:UserId><t:PrimarySmtpAddress>{escape(entry['user'])}</t:PrimarySmtpAddress>"
        f"<t:DisplayName>{escape(entry.get('name') or entry['user'])}</t:DisplayName></t:UserId>"
    )


def permission_set_xml(store) -> str:
    entries = store.settings.get("calendar_permissions") or [{"user": "Default", "level": "FreeBusyTimeOnly"}]
    body = "".join(
        f"<t:CalendarPermission>{_user_id(e)}<t:CanCreateItems>false</t:CanCreateItems>"
        "<t:CanCreateSubFolders>false</t:CanCreateSubFolders><t:IsFolderOwner>false</t:IsFolderOwner>"
        "<t:IsFolderVisible>false</t:IsFolderVisible><t:IsFolderContact>false</t:IsFolderContact>"
        "<t:EditItems>None</t:EditItems><t:DeleteItems>None</t:DeleteItems><t:ReadItems>TimeOnly</t:ReadItems>"
        f"<t:CalendarPermissionLevel>{e['level']}</t:CalendarPermissionLevel></t:CalendarPermission>"
        for e in entries
    )
    return f"<t:PermissionSet><t:CalendarPermissions>{body}</t:CalendarPermissions></t:PermissionSet>"


def delegate_response(store) -> str:
    delegates = store.settings.get("delegates") or []
    levels = ("calendar", "tasks", "inbox", "contacts", "notes", "journal")
    users = "".join(
        '<m:DelegateUserResponseMessageType ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
        f"<m:DelegateUser>{_user_id(d)}<t:DelegatePermissions>"
        + "".join(
            f"<t:{name.capitalize()}FolderPermissionLevel>{d.get(name, 'None')}"
            f"</t:{name.capitalize()}FolderPermissionLevel>"
            for name in levels
        )
        + "</t:DelegatePermissions>"
        f"<t:ReceiveCopiesOfMeetingMessages>{str(bool(d.get('meeting_copies'))).lower()}"
        f"</t:ReceiveCopiesOfMeetingMessages><t:ViewPrivateItems>{str(bool(d.get('view_private'))).lower()}"
        "</t:ViewPrivateItems></m:DelegateUser></m:DelegateUserResponseMessageType>"
        for d in delegates
    )
    deliver = store.settings.get("deliver_meeting_requests", "DelegatesAndSendInformationToMe")
    return (
        '<m:GetDelegateResponse ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
        f"<m:ResponseMessages>{users}</m:ResponseMessages>"
        f"<m:DeliverMeetingRequests>{deliver}</m:DeliverMeetingRequests></m:GetDelegateResponse>"
    )


def find_items_response(store, request, item_xml) -> str:
    """FindItem over the named folders with an IsGreaterThan restriction on item:Size (the only restriction the
    engine sends): every item larger than the constant, with its class, subject and size."""
    folders = []
    for ref in request.find(f"{{{M}}}ParentFolderIds"):
        folder = store.folders.get(ref.get("Id"))
        if folder is not None:
            folders.append(folder)
    greater = request.find(f".//{{{T}}}IsGreaterThan")
    limit = -1
    if greater is not None and greater.find(f"{{{T}}}FieldURI").get("FieldURI") == "item:Size":
        limit = int(greater.find(f".//{{{T}}}Constant").get("Value"))
    messages = []
    for folder in folders:
        found = [item for item in folder.items.values() if item.size > limit]
        parent = f'<t:ParentFolderId Id="{folder.id}" ChangeKey="AQAAAA=="/>'
        messages.append(
            '<m:FindItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode>'
            f'<m:RootFolder TotalItemsInView="{len(found)}" IncludesLastItemInRange="true"><t:Items>'
            + "".join(item_xml(item).replace("<t:ItemClass>", parent + "<t:ItemClass>", 1) for item in found)
            + "</t:Items></m:RootFolder></m:FindItemResponseMessage>"
        )
    return f"<m:FindItemResponse><m:ResponseMessages>{''.join(messages)}</m:ResponseMessages></m:FindItemResponse>"


def wants_permissions(request) -> bool:
    return any(elem.get("FieldURI") == "folder:PermissionSet" for elem in request.iter(f"{{{T}}}FieldURI"))


__all__ = [
    "delegate_response",
    "find_items_response",
    "oof_response",
    "permission_set_xml",
    "rules_response",
    "user_configuration_response",
    "wants_permissions",
    "work_hours_xml",
]
