"""Generated mail for the engine tests and the benchmark: realistic enough headers, CRLF line ends, and
bodies of a chosen size, all deterministic from a seed."""

from __future__ import annotations

import base64
import datetime
import random
import ssl

from imapclient import IMAPClient

from tests.engines.dovecot import Dovecot


def message(
    n: int,
    *,
    size: int = 2_000,
    subject: str | None = None,
    message_id: str | None = "",
    sender: str = "alice@example.nhs.uk",
    rng: random.Random | None = None,
) -> bytes:
    """An RFC 5322 message of about `size` bytes. message_id "" makes one up; None leaves the header out."""
    rng = rng or random.Random(n)
    subject = subject if subject is not None else f"Ward round notes {n}"
    headers = [
        f"From: Alice Example <{sender}>",
        "To: Bob Example <bob@example.nhs.uk>",
        f"Subject: {subject}",
        f"Date: {datetime.datetime(2024, 1 + n % 12, 1 + n % 28, 9, n % 60, tzinfo=datetime.UTC):%a, %d %b %Y %H:%M:%S +0000}",
    ]
    if message_id is not None:
        headers.append(f"Message-ID: {message_id or f'<msg-{n}-{rng.getrandbits(32):08x}@example.nhs.uk>'}")
    headers += ["MIME-Version: 1.0"]
    text = f"Hello Bob,\r\n\r\nThese are the notes for item {n}.\r\n"
    if size <= 4_000:
        headers.append("Content-Type: text/plain; charset=utf-8")
        filler = "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * (size // 58 + 1)
        body = text + "\r\n".join(filler[i : i + 76] for i in range(0, max(0, size - 400), 76)) + "\r\n"
    else:
        boundary = f"=_b{n}_{rng.getrandbits(32):08x}"
        headers.append(f'Content-Type: multipart/mixed; boundary="{boundary}"')
        raw = rng.randbytes(max(0, (size - 800) * 3 // 4))
        encoded = base64.b64encode(raw).decode()
        lines = "\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))
        body = (
            f"--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{text}\r\n"
            f'--{boundary}\r\nContent-Type: application/pdf; name="scan-{n}.pdf"\r\n'
            f'Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename="scan-{n}.pdf"\r\n\r\n'
            f"{lines}\r\n--{boundary}--\r\n"
        )
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode()


def header(message_or_header: bytes, name: str) -> str:
    """The first value of a header field, unfolded ("" when absent)."""
    head = message_or_header.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ").replace(b"\r\n\t", b" ")
    prefix = name.lower().encode() + b":"
    for line in head.split(b"\r\n"):
        if line.lower().startswith(prefix):
            return line[len(prefix) :].strip().decode("utf-8", "replace")
    return ""


def client(server: Dovecot, user: str, *, tls: bool = True) -> IMAPClient:
    if tls:
        context = ssl.create_default_context(cafile=str(server.ca_file))
        c = IMAPClient(server.host, port=server.tls_port, ssl=True, ssl_context=context)
    else:
        c = IMAPClient(server.host, port=server.port, ssl=False)
    c.normalise_times = False
    c.login(user, server.users[user])
    return c


def append(c: IMAPClient, folder: str, messages: list, batch: int = 200) -> None:
    """messages: bytes, or dicts {"msg", "flags", "date"} as for IMAPClient.multiappend."""
    for start in range(0, len(messages), batch):
        chunk = messages[start : start + batch]
        if len(chunk) == 1:
            m = chunk[0] if isinstance(chunk[0], dict) else {"msg": chunk[0]}
            c.append(folder, m["msg"], m.get("flags", ()), m.get("date"))
        else:
            c.multiappend(folder, chunk)


def folder_contents(c: IMAPClient, folder: str) -> list[tuple]:
    """(body, flags without \\Recent, INTERNALDATE) for every message, sorted by body: the fidelity check."""
    info = c.select_folder(folder, readonly=True)
    if not info[b"EXISTS"]:
        return []
    fetched = c.fetch(c.search("ALL"), [b"BODY.PEEK[]", b"FLAGS", b"INTERNALDATE"])
    out = []
    for data in fetched.values():
        flags = tuple(sorted(f for f in data[b"FLAGS"] if f != b"\\Recent"))
        out.append((data[b"BODY[]"], flags, data[b"INTERNALDATE"]))
    return sorted(out, key=lambda t: t[0])
