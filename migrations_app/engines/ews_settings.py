"""A mailbox's settings on Exchange 2013, read over EWS through exchangelib (the reader's EwsMailbox: the same
service account, impersonation, back-off and error mapping). Plain Python: no Django.

- Automatic replies: GetUserOofSettings (OofState, ExternalAudience, Duration, the internal and external reply).
- Working hours and time zone: GetUserConfiguration of the Calendar folder's "WorkHours" configuration, whose
  XmlData is Outlook's working hours stream (WorkingHours.xsd: TimeZone with its Windows Name, TimeSlot, WorkDays;
  [MS-OXOCFG] 2.2.5.2.1). A mailbox whose owner never opened Outlook's calendar options has none.
- Inbox rules: GetInboxRules (server-side rules with their conditions, exceptions and actions; a rule Outlook
  marks IsNotSupported is kept as such, for the caller to list as skipped).
- Calendar permissions: GetFolder of the calendar with folder:PermissionSet (CalendarPermissions).
- Delegates: GetDelegate with their folder permissions, private items and meeting-message settings.

Every value is returned as plain data (str, bool, int, list, dict) so it can live in a checkpoint.
docs/adr/014-exchange-engine.md ("Mailbox settings") records the calls and the mapping to Graph.
"""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field

from migrations_app.engines.base import EngineError, PermanentError

WORK_HOURS_NS = "{WorkingHours.xsd}"


@dataclass
class SourceSettings:
    automatic_replies: dict | None = None  # state, audience, start, end (ISO, UTC), internal, external
    working_hours: dict | None = None  # time_zone (Windows name), start, end ("HH:MM:SS"), days
    rules: list[dict] = field(
        default_factory=list
    )  # id, name, priority, enabled, unsupported, conditions, ...
    calendar_permissions: list[dict] = field(
        default_factory=list
    )  # user (address|Default|Anonymous), name, level
    delegates: list[dict] = field(
        default_factory=list
    )  # user, name, permissions, view_private, meeting_copies

    def as_dict(self) -> dict:
        return asdict(self)


def _plain(value):
    """An exchangelib value as plain data: addresses as their SMTP address, folder actions as the folder id."""
    from exchangelib.properties import CopyToFolder, FolderId, ItemId, Mailbox

    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mailbox):
        return {"address": value.email_address or "", "name": value.name or ""}
    if isinstance(value, CopyToFolder):  # MoveToFolder too
        folder = value.folder_id or value.distinguished_folder_id
        return {
            "folder_id": getattr(folder, "id", "") or "",
            "distinguished": bool(value.distinguished_folder_id),
        }
    if isinstance(value, (FolderId, ItemId)):
        return {"id": value.id}
    if hasattr(value, "FIELDS"):
        return {
            f.name: _plain(getattr(value, f.name)) for f in value.FIELDS if getattr(value, f.name) is not None
        }
    return str(value)


def _fields(element) -> dict:
    """The fields of a Conditions / Exceptions / Actions element that are set (False and empty lists left out)."""
    if element is None:
        return {}
    out = {}
    for f in element.FIELDS:
        value = getattr(element, f.name)
        if value is None or value is False or (isinstance(value, (list, str)) and not value):
            continue
        out[f.name] = _plain(value)
    return out


def _iso(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        plain = dt.datetime.fromtimestamp(
            value.timestamp(), dt.UTC
        )  # exchangelib's EWSDateTime wants its own tz
        return plain.strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def parse_work_hours(xml: bytes) -> dict | None:
    """Outlook's working hours stream -> {"time_zone", "start", "end", "days"}; None when it cannot be read."""
    try:
        root = ET.fromstring(xml)  # noqa: S314 - Exchange's own configuration stream, no entities expanded
    except ET.ParseError:
        return None
    version = root.find(f"{WORK_HOURS_NS}WorkHoursVersion1")
    if version is None:
        return None
    slot = version.find(f"{WORK_HOURS_NS}TimeSlot")
    return {
        "time_zone": (version.findtext(f"{WORK_HOURS_NS}TimeZone/{WORK_HOURS_NS}Name") or "").strip(),
        "start": (slot.findtext(f"{WORK_HOURS_NS}Start") if slot is not None else "") or "",
        "end": (slot.findtext(f"{WORK_HOURS_NS}End") if slot is not None else "") or "",
        "days": (version.findtext(f"{WORK_HOURS_NS}WorkDays") or "").split(),
    }


class EwsSettingsReader:
    """The settings of the mailbox an EwsMailbox (ews_source) opened."""

    def __init__(self, mailbox):
        self.mailbox = mailbox
        self.account = mailbox.account

    PARTS = (
        ("automatic_replies", "automatic_replies"),
        ("working_hours", "working_hours"),
        ("rules", "inbox_rule"),
        ("calendar_permissions", "calendar_permission"),
        ("delegates", "delegate"),
    )

    def read(self) -> tuple[SourceSettings, list[dict]]:
        """The settings, and one skipped record per part Exchange refused to give (access denied, a damaged rule
        store): those parts are left alone on the target. Busy and network trouble are raised (the pass retries)."""
        settings, problems = SourceSettings(), []
        for attribute, setting in self.PARTS:
            try:
                setattr(settings, attribute, getattr(self, attribute)())
            except PermanentError as exc:
                problems.append(
                    {
                        "setting": setting,
                        "name": "",
                        "outcome": "skipped",
                        "detail": f"Exchange 2013 would not give it: {exc.message or exc}",
                    }
                )
        return settings, problems

    def automatic_replies(self) -> dict:
        from exchangelib.properties import Mailbox
        from exchangelib.services import GetUserOofSettings

        def get():
            return GetUserOofSettings(account=self.account).get(
                mailbox=Mailbox(email_address=self.mailbox.address)
            )

        oof = self.mailbox._call(get)
        return {
            "state": oof.state,
            "audience": oof.external_audience or "All",
            "start": _iso(oof.start),
            "end": _iso(oof.end),
            "internal": oof.internal_reply or "",
            "external": oof.external_reply or "",
        }

    def working_hours(self) -> dict | None:
        from exchangelib.errors import ErrorItemNotFound
        from exchangelib.properties import DistinguishedFolderId, Mailbox, UserConfigurationNameMNS
        from exchangelib.services import GetUserConfiguration

        calendar = DistinguishedFolderId(id="calendar", mailbox=Mailbox(email_address=self.mailbox.address))
        name = UserConfigurationNameMNS(name="WorkHours", folder=calendar)

        def get():
            results = list(
                GetUserConfiguration(account=self.account).call(
                    user_configuration_name=name, properties="XmlData"
                )
            )
            for result in results:
                if isinstance(result, ErrorItemNotFound):
                    return None
                if isinstance(result, Exception):
                    raise result
                return result
            return None

        try:
            configuration = self.mailbox._call(get)
        except EngineError as exc:
            if "ErrorItemNotFound" in str(exc):
                return None
            raise
        if configuration is None or not configuration.xml_data:
            return None
        return parse_work_hours(configuration.xml_data)

    def rules(self) -> list[dict]:
        from exchangelib.services import GetInboxRules

        def get():
            out = []
            for rule in GetInboxRules(account=self.account).call(mailbox=self.mailbox.address):
                if isinstance(rule, Exception):
                    raise rule
                if rule is not None:
                    out.append(rule)
            return out

        return [
            {
                "id": rule.id or "",
                "name": rule.display_name or "",
                "priority": int(rule.priority or 0),
                "enabled": bool(rule.is_enabled),
                "unsupported": bool(rule.is_not_supported),
                "in_error": bool(rule.is_in_error),
                "conditions": _fields(rule.conditions),
                "exceptions": _fields(rule.exceptions),
                "actions": _fields(rule.actions),
            }
            for rule in self.mailbox._call(get)
        ]

    def calendar_permissions(self) -> list[dict]:
        from exchangelib.fields import FieldPath
        from exchangelib.folders import Calendar
        from exchangelib.properties import DistinguishedFolderId, Mailbox
        from exchangelib.services import GetFolder

        # A Calendar instance (not the reader's Root): exchangelib parses the answer into the requested class.
        calendar = Calendar(
            root=self.mailbox._distinguished("msgfolderroot"),
            _distinguished_id=DistinguishedFolderId(
                id="calendar", mailbox=Mailbox(email_address=self.mailbox.address)
            ),
        )
        field_path = FieldPath(field=Calendar.get_field_by_fieldname("permission_set"))

        def get():
            for result in GetFolder(account=self.account).call(
                folders=[calendar], additional_fields=[field_path], shape="IdOnly"
            ):
                if isinstance(result, Exception):
                    raise result
                return result
            return None

        folder = self.mailbox._call(get)
        permission_set = getattr(folder, "permission_set", None)
        out = []
        for entry in getattr(permission_set, "calendar_permissions", None) or []:
            user = entry.user_id
            out.append(
                {
                    "user": user.distinguished_user or (user.primary_smtp_address or "").lower(),
                    "name": user.display_name or "",
                    "level": entry.calendar_permission_level or "Custom",
                }
            )
        return out

    def delegates(self) -> list[dict]:
        from exchangelib.services import GetDelegate

        def get():
            service = GetDelegate(account=self.account)
            return [d for d in service.call(user_ids=None, include_permissions=True) if d is not None]

        delegates = []
        for delegate in self.mailbox._call(get):
            if isinstance(delegate, Exception):
                continue  # a delegate Exchange cannot resolve (deleted account): nothing to list
            permissions = _plain(delegate.delegate_permissions) or {}
            delegates.append(
                {
                    "user": (delegate.user_id.primary_smtp_address or "").lower(),
                    "name": delegate.user_id.display_name or "",
                    "permissions": {
                        k.removesuffix("_folder_permission_level"): v
                        for k, v in permissions.items()
                        if v and v != "None"
                    },
                    "view_private": bool(delegate.view_private_items),
                    "meeting_copies": bool(delegate.receive_copies_of_meeting_messages),
                }
            )
        return delegates
