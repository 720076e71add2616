"""A file attachment onto a message Graph has created: under 3 MB by a plain POST of the attachment; from 3 to
150 MB through an attachment upload session (createUploadSession, then its byte ranges PUT in order to the
session's pre-authenticated URL, each a multiple of 320 KiB and under 4 MB, with Content-Range), read from the
attachment's spool a chunk at a time. Every byte sent is reserved in the mailbox's upload budget first."""

from __future__ import annotations

import base64
import io

from migrations_app.engines.base import SERVER_BUSY, RetryableError
from migrations_app.engines.graph.message import SIMPLE_ATTACHMENT_BYTES, UPLOAD_CHUNK, Attachment
from migrations_app.engines.graph.mime_split import SpooledAttachment
from migrations_app.engines.graph_client import GraphClient


def spooled(attachment: Attachment) -> SpooledAttachment:
    return SpooledAttachment(
        attachment.name,
        attachment.content_type,
        attachment.inline,
        attachment.content_id,
        len(attachment.data),
        io.BytesIO(attachment.data),
    )


def file_json(attachment: SpooledAttachment) -> dict:
    out = {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": attachment.name,
        "contentType": attachment.content_type,
        "contentBytes": base64.b64encode(attachment.read()).decode(),
        "isInline": attachment.inline,
    }
    if attachment.content_id:
        out["contentId"] = attachment.content_id
    return out


def attach(graph: GraphClient, user: str, message: str, attachment: SpooledAttachment) -> None:
    """One file onto a created message: a POST under 3 MB; otherwise Graph's attachment upload session,
    its ranges PUT in order (multiples of 320 KiB, under 4 MB each, the upload URL's own token)."""
    messages = f"users/{user}/messages/{message}/attachments"
    if attachment.size < SIMPLE_ATTACHMENT_BYTES:
        graph.request("POST", messages, json=file_json(attachment), upload=attachment.size)
        return
    session = graph.request(
        "POST",
        f"{messages}/createUploadSession",
        json={
            "AttachmentItem": {
                "attachmentType": "file",
                "name": attachment.name,
                "size": attachment.size,
                "contentType": attachment.content_type,
                "isInline": attachment.inline,
                **({"contentId": attachment.content_id} if attachment.content_id else {}),
            }
        },
    ).json()
    total = attachment.size
    for start, chunk in attachment.chunks(UPLOAD_CHUNK):
        response = graph.request(
            "PUT",
            session["uploadUrl"],
            data=chunk,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"bytes {start}-{start + len(chunk) - 1}/{total}",
            },
            upload=len(chunk),
            authorize=False,  # the upload URL carries its own token; sending ours is refused
        )
        expected = (response.json() if response.content else {}).get("nextExpectedRanges") or []
        if response.status_code == 200 and expected and int(expected[0].split("-")[0]) != start + len(chunk):
            raise RetryableError(
                SERVER_BUSY, f"target: upload session for {attachment.name!r} expected {expected[0]}"
            )
