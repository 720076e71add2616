"""A MIME message as Graph JSON for a create: headers, body, recipients, dates and read state as received mail
(not a draft), file attachments inline up to the request limit and the rest for upload sessions, and a
forwarded message (a message/rfc822 part) as an item attachment, never an empty file."""

from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
import email.utils
from contextlib import suppress
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

PR_MESSAGE_FLAGS = "Integer 0x0E07"
PR_MESSAGE_DELIVERY_TIME = "SystemTime 0x0E06"
PR_CLIENT_SUBMIT_TIME = "SystemTime 0x0039"
PR_LAST_VERB_EXECUTED = "Integer 0x1081"
MSGFLAG_READ, MSGFLAG_UNSENT = 0x1, 0x8
# Our marker: which source message a target item came from. A named property in our own property set.
MARKER = "String {5b1a6f42-9c3e-4d0b-8f7e-2a9d64c1e7b3} Name MigrationPortalSource"
PENDING = "pending:"
# Graph takes at most 4 MB per request (a $batch included); base64 adds a third, so about 2.5 MB of raw
# message or attachments per request. A bigger message is created alone, its large attachments uploaded.
INLINE_BYTES = 2_500_000
BATCH_MESSAGES = 20
EXCHANGE_MAX_MESSAGE_BYTES = 150 * 1024 * 1024
UPLOAD_CHUNK = 10 * 320 * 1024  # upload session chunks: multiples of 320 KiB, under 4 MB
SIMPLE_ATTACHMENT_BYTES = 3 * 1024 * 1024  # a file under 3 MB is POSTed whole; larger: an upload session


def marker_value(key: str, message_id: str) -> str:
    """The marker a target item carries: its Message-ID (for people reading it) and the source key the
    pipeline pairs it by (engines.pipeline.protocols: "m:<Message-ID>:<size>" or a header hash)."""
    return f"{message_id}|{key}"


def marker_key(value: str | None) -> str | None:
    """The source key in a marker; None for none, or for a half-made item ("pending:" prefix)."""
    if not value or value.startswith(PENDING) or "|" not in value:
        return None
    return value.split("|", 1)[1]


def _graph_time(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _recipients(parsed: EmailMessage, header: str) -> list[dict]:
    values = parsed.get_all(header) or []
    return [
        {"emailAddress": {"name": name, "address": address}}
        for name, address in email.utils.getaddresses([str(v) for v in values])
        if address
    ]


@dataclass
class Attachment:
    name: str
    content_type: str
    data: bytes
    inline: bool
    content_id: str | None

    def as_json(self) -> dict:
        out = {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": self.name,
            "contentType": self.content_type,
            "contentBytes": base64.b64encode(self.data).decode(),
            "isInline": self.inline,
        }
        if self.content_id:
            out["contentId"] = self.content_id
        return out


def message_json(
    raw: bytes, *, seen: bool, flagged: bool, answered: bool, draft: bool, received
) -> tuple[dict, list[Attachment]]:
    """A Graph message for JSON create, and the attachments too big to send inline."""
    parsed: EmailMessage = email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[assignment]
    sent = None
    with suppress(TypeError, ValueError, IndexError):
        sent = email.utils.parsedate_to_datetime(str(parsed.get("Date"))) if parsed.get("Date") else None
    body_part = parsed.get_body(preferencelist=("html", "plain"))
    body = {"contentType": "text", "content": ""}
    if body_part is not None:
        with suppress(LookupError, ValueError):
            body = {
                "contentType": "html" if body_part.get_content_subtype() == "html" else "text",
                "content": body_part.get_content(),
            }
    attachments: list[Attachment] = []
    items: list[dict] = []
    for part in parsed.iter_attachments() if parsed.is_multipart() else []:
        with suppress(LookupError, ValueError):
            if part.get_content_type() == "message/rfc822":
                # get_payload(decode=True) is None for these: an item attachment instead of an empty file.
                items.append(item_attachment(part))
                continue
            data = part.get_payload(decode=True) or b""
            attachments.append(
                Attachment(
                    name=part.get_filename() or "attachment",
                    content_type=part.get_content_type(),
                    data=data,
                    inline=part.get_content_disposition() == "inline",
                    content_id=(part.get("Content-ID") or "").strip("<>") or None,
                )
            )
    flags = (MSGFLAG_READ if seen else 0) | (MSGFLAG_UNSENT if draft else 0)
    props = [
        {"id": PR_MESSAGE_FLAGS, "value": str(flags)},
        {"id": PR_MESSAGE_DELIVERY_TIME, "value": _graph_time(received or sent)},
        {"id": PR_CLIENT_SUBMIT_TIME, "value": _graph_time(sent or received)},
    ]
    if answered:
        props.append({"id": PR_LAST_VERB_EXECUTED, "value": "102"})  # EXCHIVERB_REPLYTOSENDER
    message: dict[str, Any] = {
        "subject": str(parsed.get("Subject", "") or ""),
        "body": body,
        "isRead": seen,
        "toRecipients": _recipients(parsed, "To"),
        "ccRecipients": _recipients(parsed, "Cc"),
        "bccRecipients": _recipients(parsed, "Bcc"),
        "replyTo": _recipients(parsed, "Reply-To"),
        "singleValueExtendedProperties": [p for p in props if p["value"] is not None],
    }
    sender = _recipients(parsed, "From")
    if sender:
        message["from"] = sender[0]
    if parsed.get("Message-ID"):
        message["internetMessageId"] = str(parsed.get("Message-ID")).strip()
    if flagged:
        message["flag"] = {"flagStatus": "flagged"}
    importance = str(parsed.get("Importance", "") or "").lower()
    if importance in ("low", "high"):
        message["importance"] = importance
    # Attachments ride inline while the request stays under Graph's 4 MB (base64 adds a third); the
    # rest go through upload sessions after the create.
    budget = max(0, INLINE_BYTES - len(str(body["content"]).encode()))
    small, large = [], []
    used = 0
    for attachment in attachments:
        if used + len(attachment.data) <= budget:
            small.append(attachment.as_json())
            used += len(attachment.data)
        else:
            large.append(attachment)
    small.extend(items)  # item attachments ride inline with the create
    if small:
        message["attachments"] = small
    return message, large


def item_attachment(part: EmailMessage) -> dict:
    """A message/rfc822 part as a Graph itemAttachment holding a message: subject, body, sender, recipients
    and dates of the forwarded message, its own file attachments inline."""
    inner = part.get_content()  # the enclosed message (email.policy.default's content manager)
    raw = inner.as_bytes(policy=email.policy.SMTP)
    data, _ = message_json(raw, seen=True, flagged=False, answered=False, draft=False, received=None)
    for name in ("singleValueExtendedProperties", "isRead"):
        data.pop(name, None)
    subject = data.get("subject") or "forwarded message"
    return {
        "@odata.type": "#microsoft.graph.itemAttachment",
        "name": part.get_filename() or subject,
        "item": {"@odata.type": "microsoft.graph.message", **data},
    }
