"""The fake Graph's attachments and licences, mixed into FakeMicrosoft beside FakeGraphMail: a file attachment
POSTed under 3 MB, an attachment upload session from 3 to 150 MB (createUploadSession, then byte ranges PUT to
the pre-authenticated outlook.office.com URL), and a user's licenseDetails. Shaped like Graph's documentation
("Attach large files to Outlook messages or events", attachment: createUploadSession, uploadSession,
user: list licenseDetails)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import secrets
import uuid

from tests.fakes.microsoft_data import (
    GRAPH,
    MAX_REQUEST_BYTES,
    OUTLOOK,
    Mailbox,
    _b64url,
    _graph_error,
    _id,
    _now,
)

SIMPLE_ATTACHMENT_BYTES = 3 * 1024 * 1024  # POST .../attachments takes files under 3 MB
MAX_ATTACHMENT_BYTES = 150 * 1024 * 1024  # an upload session, up to 150 MB
RANGE_MULTIPLE = 320 * 1024  # every range but the last a multiple of 320 KiB


class FakeGraphAttachments:
    """Mixed into FakeMicrosoft, whose __init__ holds the state these methods use (_uploads, the upload
    budget of FakeGraphMail); counts upload_sessions and the biggest range seen (upload_peak_chunk)."""

    upload_sessions = 0
    upload_peak_chunk = 0

    def _attachments(self, version, method, mailbox: Mailbox, message: dict, rest, body):
        if rest == ["attachments"] and method == "POST":
            attachment = json.loads(body)
            size = len(base64.b64decode(attachment.get("contentBytes", "")))
            if size >= SIMPLE_ATTACHMENT_BYTES:
                return 413, {}, _graph_error("ErrorRequestEntityTooLarge", "The attachment is too large.")
            attachment_id = _id("att")
            message["attachments"].append({**attachment, "id": attachment_id, "size": size})
            message["_size"] += size
            return 201, {}, {"id": attachment_id, "name": attachment.get("name"), "size": size}
        if rest == ["attachments", "createUploadSession"] and method == "POST":
            item = json.loads(body)["AttachmentItem"]
            if item.get("attachmentType", "file") != "file":
                return 400, {}, _graph_error("ErrorInvalidRequest", "Only file attachments are supported.")
            if int(item.get("size", 0)) < SIMPLE_ATTACHMENT_BYTES:
                return (
                    400,
                    {},
                    _graph_error(
                        "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
                        "Attachment size must be greater than the minimum size.",
                    ),
                )
            if int(item["size"]) > MAX_ATTACHMENT_BYTES:
                return 400, {}, _graph_error("ErrorInvalidAttachmentSize", "The attachment is too large.")
            self.upload_sessions += 1
            session = _id("upload")
            self._uploads[session] = {
                "mailbox": mailbox,
                "message": message["id"],
                "item": item,
                "data": bytearray(),
            }
            return (
                201,
                {},
                {
                    "@odata.context": f"https://{GRAPH}/{version}/$metadata#microsoft.graph.uploadSession",
                    "uploadUrl": f"https://{OUTLOOK}/api/v2.0/Users('{mailbox.user_id}')/Messages('{message['id']}')/AttachmentSessions('{session}')?authtoken={secrets.token_urlsafe(12)}",
                    "expirationDateTime": (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime(
                        "%Y-%m-%dT%H:%M:%SZ"
                    ),
                    "nextExpectedRanges": ["0-"],
                },
            )
        return None

    def upload(self, path: str, headers: dict, body: bytes):
        """A byte range PUT to an upload session's URL."""
        match = re.search(r"AttachmentSessions\('([^']+)'\)", path)
        session = self._uploads.get(match.group(1)) if match else None
        if session is None:
            return 404, {}, {"error": {"code": "ErrorItemNotFound", "message": "Upload session not found."}}
        if "authorization" in headers:
            # The documented rule: the upload URL carries its own token; an Authorization header fails.
            return (
                401,
                {},
                {"error": {"code": "InvalidAuthenticationToken", "message": "Do not send a token."}},
            )
        mailbox = session["mailbox"]
        self.enter(mailbox.user_id)
        try:
            rng = re.match(r"bytes (\d+)-(\d+)/(\d+)$", headers.get("content-range", ""))
            if rng is None:
                return 400, {}, {"error": {"code": "InvalidRange", "message": "Content-Range is required."}}
            start, end, total = (int(x) for x in rng.groups())
            if (
                start != len(session["data"])
                or end - start + 1 != len(body)
                or int(headers.get("content-length", -1)) != len(body)
                or total != int(session["item"]["size"])
            ):
                return 416, {}, {"error": {"code": "InvalidRange", "message": "Unexpected range."}}
            # Documented: up to 4 MB a request; every range but the last a multiple of 320 KiB.
            if len(body) > MAX_REQUEST_BYTES or (end + 1 < total and len(body) % RANGE_MULTIPLE):
                return 400, {}, {"error": {"code": "InvalidRange", "message": "Bad fragment size."}}
            refused = self._spend_upload(mailbox, len(body))
            if refused is not None:
                return refused
            session["data"] += body
            self.upload_peak_chunk = max(self.upload_peak_chunk, len(body))
            if len(session["data"]) < total:
                # For Outlook attachments nextExpectedRanges is one value: where the next range starts.
                return (
                    200,
                    {},
                    {"expirationDateTime": _now(), "nextExpectedRanges": [str(len(session["data"]))]},
                )
            with mailbox.lock:
                _, message = mailbox.message(session["message"])
                item = session["item"]
                attachment_id = _id("att")
                message["attachments"].append(
                    {
                        "@odata.type": "#microsoft.graph.fileAttachment",
                        "id": attachment_id,
                        "name": item["name"],
                        "contentType": item.get("contentType", "application/octet-stream"),
                        "size": total,
                        "contentBytes": base64.b64encode(bytes(session["data"])).decode(),
                        "isInline": item.get("isInline", False),
                        **({"contentId": item["contentId"]} if item.get("contentId") else {}),
                    }
                )
                message["_size"] += total
            del self._uploads[match.group(1)]
            location = (
                f"https://{OUTLOOK}/api/v2.0/Users('{mailbox.user_id}')/Messages('{message['id']}')"
                f"/Attachments('{attachment_id}')"
            )
            return 201, {"Location": location}, None
        finally:
            self.leave(mailbox.user_id)

    def _license_details(self, mailbox: Mailbox, version: str) -> dict:
        """GET /users/{id}/licenseDetails: one licence (SKU) carrying the mailbox's Exchange service plans."""
        plans = [
            {
                "servicePlanId": str(uuid.uuid5(uuid.NAMESPACE_URL, name)),
                "servicePlanName": name,
                "provisioningStatus": "Success",
                "appliesTo": "User",
            }
            for name in (mailbox.plans if mailbox.licensed else ())
        ]
        value = []
        if plans:
            value.append(
                {
                    "id": _b64url(f"{mailbox.user_id}:sku".encode()),
                    "skuId": str(uuid.uuid5(uuid.NAMESPACE_URL, "sku:" + ",".join(mailbox.plans))),
                    "skuPartNumber": "SPE_E3" if "EXCHANGE_S_ENTERPRISE" in mailbox.plans else "SPE_F1",
                    "servicePlans": plans,
                }
            )
        return {
            "@odata.context": f"https://{GRAPH}/{version}/$metadata#users('{mailbox.user_id}')/licenseDetails",
            "value": value,
        }
