"""A big MIME message taken apart as a stream, for Graph's JSON create: the message's "skeleton" (its headers,
its structure and its text bodies, small) and its attachments, each decoded into a spool file of its own
(memory up to SPOOL_MEMORY, then disk), never the whole message in memory.

The writer creates the message from the skeleton (engines/graph/message.py makes the Graph JSON of it: body,
recipients, dates, small forwarded messages as item attachments) and then adds every spooled attachment:
under 3 MB by a plain POST of the attachment, up to 150 MB through an upload session in chunks read from the
spool. The scan reads the message line by line (a line longer than LINE_MAX in pieces); a leaf part's body
goes to a spool as it is read and is judged when it ends:

- a text/plain or text/html part that is not marked as an attachment, and a message/rfc822 part, stay in the
  skeleton while they are under KEEP_BYTES (and the skeleton under SKELETON_BYTES): they are the body, or an
  item attachment Graph takes inline;
- every other part (and a text or forwarded message too big to stay) becomes a spooled file attachment,
  decoded from its Content-Transfer-Encoding as it is copied (base64 and quoted-printable in pieces).

A part's boundaries are the multiparts' it sits in, so a forwarded message's own structure is never mistaken
for the outer message's. Preambles and epilogues (text no mail client shows) are dropped.
"""

from __future__ import annotations

import binascii
import email.parser
import email.policy
import quopri
import tempfile
from dataclasses import dataclass, field
from typing import IO

LINE_MAX = 64 * 1024
SPOOL_MEMORY = 1024 * 1024
KEEP_BYTES = 1024 * 1024  # a text body or forwarded message above this is spooled as a file attachment
SKELETON_BYTES = 2 * 1024 * 1024
READ_CHUNK = 1024 * 1024

_headers = email.parser.BytesHeaderParser(policy=email.policy.default)


def _spool() -> IO[bytes]:
    return tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)  # noqa: SIM115 - closed by the owner


@dataclass
class SpooledAttachment:
    """One file attachment, decoded, in a spool file; `size` is its decoded length."""

    name: str
    content_type: str
    inline: bool
    content_id: str | None
    size: int
    spool: IO[bytes]

    def chunks(self, chunk: int):
        """(offset, bytes) pieces of at most `chunk` bytes, from the start."""
        self.spool.seek(0)
        offset = 0
        while piece := self.spool.read(chunk):
            yield offset, piece
            offset += len(piece)

    def read(self) -> bytes:
        """All of it: only for a small attachment (the writer posts those under 3 MB whole)."""
        self.spool.seek(0)
        return self.spool.read()

    def close(self) -> None:
        self.spool.close()


@dataclass
class SplitMessage:
    skeleton: bytes
    attachments: list[SpooledAttachment] = field(default_factory=list)

    def close(self) -> None:
        for attachment in self.attachments:
            attachment.close()

    def __enter__(self) -> SplitMessage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Lines:
    """Lines of a binary stream, with one line of push-back; `whole` says whether a piece starts a line."""

    def __init__(self, stream: IO[bytes]):
        self.stream = stream
        self.back: tuple[bytes, bool] | None = None
        self.at_start = True

    def next(self) -> tuple[bytes, bool]:
        if self.back is not None:
            line, self.back = self.back, None
            return line
        starts = self.at_start
        line = self.stream.readline(LINE_MAX)
        self.at_start = line.endswith(b"\n")
        return line, starts

    def push(self, line: tuple[bytes, bool]) -> None:
        self.back = line


def _boundary_of(line: bytes, starts: bool, boundaries: list[bytes]) -> tuple[bytes, bool] | None:
    """(boundary, closing) when the line is a delimiter of one of the enclosing multiparts."""
    if not starts or not line.startswith(b"--"):
        return None
    text = line.rstrip(b"\r\n \t")
    for boundary in reversed(boundaries):
        if text == b"--" + boundary:
            return boundary, False
        if text == b"--" + boundary + b"--":
            return boundary, True
    return None


class _Splitter:
    def __init__(self, stream: IO[bytes]):
        self.lines = _Lines(stream)
        self.attachments: list[SpooledAttachment] = []
        self.kept = 0

    def header_block(self) -> bytes:
        block = bytearray()
        while True:
            line, starts = self.lines.next()
            if not line:
                return bytes(block)
            if starts and line in (b"\r\n", b"\n"):
                block += line
                return bytes(block)
            if len(block) < LINE_MAX * 4:  # a runaway header block is cut, not held
                block += line

    def entity(self, boundaries: list[bytes], *, top: bool = False) -> bytes:
        """One entity (headers and body) read up to the next delimiter of `boundaries` (left unread): what
        stays of it in the skeleton, b"" when it was taken out as an attachment."""
        raw_headers = self.header_block()
        headers = _headers.parsebytes(raw_headers)
        ctype = headers.get_content_type()
        if ctype.startswith("multipart/") and headers.get_param("boundary"):
            return raw_headers + self.multipart(str(headers.get_param("boundary")).encode(), boundaries)
        body, size, last = _spool(), 0, b""
        while True:
            line, starts = self.lines.next()
            if not line:
                break
            if _boundary_of(line, starts, boundaries):
                self.lines.push((line, starts))
                # the line break before a delimiter belongs to the delimiter, not to the body
                last = last[:-2] if last.endswith(b"\r\n") else last[:-1] if last.endswith(b"\n") else last
                break
            body.write(last)
            size += len(last)
            last = line
        body.write(last)
        size += len(last)
        disposition = headers.get_content_disposition()
        keep = (
            (
                (ctype in ("text/plain", "text/html") and disposition != "attachment")
                or ctype == "message/rfc822"
            )
            and size <= KEEP_BYTES
            and self.kept + size <= SKELETON_BYTES
        )
        if keep:
            body.seek(0)
            kept = raw_headers + body.read()
            body.close()
            self.kept += len(kept)
            return kept
        self.attachments.append(self.decoded(headers, body))
        if top:  # the message itself was one big part: what is left is its headers and an empty body
            return self.bare_headers(raw_headers) + b"Content-Type: text/plain; charset=utf-8\r\n\r\n"
        return b""

    @staticmethod
    def bare_headers(raw: bytes) -> bytes:
        keep = []
        skipping = False
        for line in raw.splitlines(keepends=True):
            if line in (b"\r\n", b"\n"):
                break
            if line[:1] in (b" ", b"\t"):
                if not skipping:
                    keep.append(line)
                continue
            skipping = line.lower().startswith(b"content-")
            if not skipping:
                keep.append(line)
        return b"".join(keep)

    def multipart(self, boundary: bytes, outer: list[bytes]) -> bytes:
        inner = [*outer, boundary]
        out = bytearray()
        # the preamble, up to the first delimiter: dropped
        while True:
            line, starts = self.lines.next()
            if not line:
                return bytes(out)
            found = _boundary_of(line, starts, inner)
            if found:
                break
        newline = b"\r\n" if line.endswith(b"\r\n") else b"\n"
        while found and found[0] == boundary and not found[1]:
            part = self.entity(inner)
            if part:
                out += b"--" + boundary + newline + part
                if not part.endswith(b"\n"):
                    out += newline
            line, starts = self.lines.next()
            found = _boundary_of(line, starts, inner) if line else None
        out += b"--" + boundary + b"--" + newline
        if found and found[0] != boundary:  # an outer delimiter ended us early (a malformed message)
            self.lines.push((line, starts))
            return bytes(out)
        # the epilogue, up to the enclosing multipart's next delimiter: dropped
        while True:
            line, starts = self.lines.next()
            if not line:
                return bytes(out)
            if _boundary_of(line, starts, outer):
                self.lines.push((line, starts))
                return bytes(out)

    @staticmethod
    def decoded(headers, body: IO[bytes]) -> SpooledAttachment:
        encoding = str(headers.get("Content-Transfer-Encoding", "") or "").strip().lower()
        out = _spool()
        body.seek(0)
        if encoding == "base64":
            rest = b""
            while chunk := body.read(READ_CHUNK):
                data = rest + chunk.translate(None, b" \t\r\n")
                cut = len(data) - len(data) % 4
                out.write(binascii.a2b_base64(data[:cut]))
                rest = data[cut:]
            if rest.strip(b"="):
                out.write(binascii.a2b_base64(rest + b"=" * (-len(rest) % 4)))
        elif encoding == "quoted-printable":
            quopri.decode(body, out)
        else:
            while chunk := body.read(READ_CHUNK):
                out.write(chunk)
        body.close()
        size = out.tell()
        out.seek(0)
        ctype = headers.get_content_type()
        name = headers.get_filename() or {
            "message/rfc822": "forwarded message.eml",
            "text/plain": "message.txt",
            "text/html": "message.html",
        }.get(ctype, "attachment")
        return SpooledAttachment(
            name=name,
            content_type=ctype,
            inline=headers.get_content_disposition() == "inline",
            content_id=str(headers.get("Content-ID") or "").strip().strip("<>") or None,
            size=size,
            spool=out,
        )


def split_message(stream: IO[bytes]) -> SplitMessage:
    """The message in `stream` (read once, from where it stands) as a skeleton and spooled attachments."""
    splitter = _Splitter(stream)
    try:
        skeleton = splitter.entity([], top=True)
    except BaseException:
        for attachment in splitter.attachments:
            attachment.close()
        raise
    return SplitMessage(skeleton, splitter.attachments)
