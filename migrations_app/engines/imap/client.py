"""IMAP plumbing shared by the IMAP reader and writer: typed errors, connections, folder names, UID sets,
the fast FETCH paths and the streamed APPEND (docs/adr/006-imap-engine.md says why they bypass imapclient)."""

from __future__ import annotations

import re
import socket
import ssl
from contextlib import suppress
from dataclasses import dataclass

from imapclient import IMAPClient
from imapclient import exceptions as imap_errors
from imapclient.imapclient import datetime_to_INTERNALDATE
from imapclient.response_parser import parse_fetch_response

from migrations_app.engines.base import (
    AUTH_FAILED,
    NETWORK,
    OVER_QUOTA,
    PROTOCOL,
    SERVER_BUSY,
    SKIP_REJECTED,
    SKIP_TOO_BIG,
    THROTTLED,
    TLS_FAILED,
    EndpointSpec,
    EngineError,
    PermanentError,
    RetryableError,
    SkippedItem,
    error_for,
)
from migrations_app.engines.pipeline.protocols import item_key, message_id, subject_of

# Copied as they are. Never \Recent (the server sets it) and not \Deleted: a message the user deleted but
# the source never expunged arrives as an ordinary message rather than one a client may silently purge.
SYSTEM_FLAGS = frozenset({b"\\Seen", b"\\Answered", b"\\Flagged", b"\\Draft"})
# Response codes (RFC 5530 and friends) that decide between "retry", "give up" and "skip this message".
_CODES = (
    ("[OVERQUOTA]", OVER_QUOTA),
    ("[AUTHENTICATIONFAILED]", AUTH_FAILED),
    ("[UNAVAILABLE]", SERVER_BUSY),
    ("[INUSE]", SERVER_BUSY),
    ("[THROTTLED]", THROTTLED),
)
FETCH_CHUNK = 2000  # UIDs per metadata FETCH: keeps one response, and its parse, bounded


# --- errors -------------------------------------------------------------------------------------------------


def _code_in(text: str) -> str | None:
    upper = text.upper()
    for marker, code in _CODES:
        if marker in upper:
            return code
    return None


def engine_error(exc: BaseException, side: str = "") -> EngineError:
    """Translate what imapclient, imaplib, ssl and socket raise into our typed errors."""
    if isinstance(exc, EngineError):
        return exc
    where = f"{side}: " if side else ""
    text = f"{where}{exc}"
    if isinstance(exc, imap_errors.LoginError):
        return PermanentError(AUTH_FAILED, text)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return PermanentError(TLS_FAILED, text)
    if isinstance(exc, imap_errors.IMAPClientAbortError):
        # imaplib raises abort for BYE and for a connection that went away under us.
        code = _code_in(str(exc))
        if code:
            return error_for(code, text)
        lost = any(s in str(exc).lower() for s in ("socket error", "eof", "timed out", "reset"))
        return RetryableError(NETWORK if lost else SERVER_BUSY, text)
    if isinstance(exc, imap_errors.IMAPClientError):
        return error_for(_code_in(str(exc)) or PROTOCOL, text)
    if isinstance(exc, ssl.SSLError) and "handshake" in str(exc).lower():
        return PermanentError(TLS_FAILED, text)
    if isinstance(exc, (TimeoutError, socket.timeout, ConnectionError, OSError)):
        return RetryableError(NETWORK, text)
    return PermanentError(PROTOCOL, f"{where}{type(exc).__name__}: {exc}")


# --- connections --------------------------------------------------------------------------------------------


def _login_name(endpoint: EndpointSpec, mailbox_user: str) -> str:
    """Endpoint username by default; with options["master_user_separator"] (Dovecot master users, e.g. "*"),
    log in as <mailbox user><sep><endpoint username> with the endpoint's password."""
    separator = endpoint.options.get("master_user_separator")
    if separator and mailbox_user and endpoint.username:
        return f"{mailbox_user}{separator}{endpoint.username}"
    return endpoint.username or mailbox_user


def connect(
    endpoint: EndpointSpec, mailbox_user: str = "", *, side: str = "", timeout: float = 60
) -> IMAPClient:
    """A logged-in client. TLS by default, verifying certificates (options["ca_file"] adds a CA, for tests
    and private CAs); STARTTLS; plain text only where the endpoint says security="plain"."""
    options = endpoint.options
    timeout = options.get("timeout", timeout)
    try:
        context = None
        if endpoint.security in ("tls", "starttls"):
            context = ssl.create_default_context(cafile=options.get("ca_file"))
        elif endpoint.security != "plain":
            raise PermanentError(PROTOCOL, f"{side}: unknown security {endpoint.security!r}")
        client = IMAPClient(
            endpoint.host,
            port=endpoint.port or (993 if endpoint.security == "tls" else 143),
            ssl=endpoint.security == "tls",
            ssl_context=context,
            timeout=timeout,
        )
        if endpoint.security == "starttls":
            client.starttls(context)
        client.normalise_times = False  # keep INTERNALDATE's own zone, so it goes back exactly as it came
        # imapclient sets imaplib's debug level to 5 to route its chatter to a logger; imaplib then builds
        # repr() strings of every response, message bodies included, before any logger can say no. That
        # was 90% of the engine's CPU on a 300 MB mailbox.
        client._imap.debug = 0
        client.login(_login_name(endpoint, mailbox_user), endpoint.password)
        return client
    except Exception as exc:
        raise engine_error(exc, side) from exc


def close_client(client: IMAPClient | None) -> None:
    if client is not None:
        with suppress(Exception):
            client.logout()
        with suppress(Exception):
            client.shutdown()


# --- folder names -------------------------------------------------------------------------------------------


@dataclass
class Namespace:
    prefix: str
    separator: str | None


def personal_namespace(client: IMAPClient) -> Namespace:
    separator = None
    prefix = ""
    if client.has_capability("NAMESPACE"):
        personal = client.namespace().personal
        if personal:
            prefix, separator = personal[0]
    if separator is None:
        listed = client.list_folders("", "")  # RFC 3501: LIST "" "" gives the hierarchy delimiter
        if listed and listed[0][1]:
            separator = listed[0][1]
    if isinstance(separator, bytes):
        separator = separator.decode()
    if isinstance(prefix, bytes):
        prefix = prefix.decode()
    return Namespace(prefix or "", separator or None)


def map_folder_name(name: str, source: Namespace, target: Namespace) -> str:
    """Source folder name -> target folder name: namespace prefix swapped, separators translated. A name part
    that holds the target's separator (legal on a '/' server, not on a '.' one) gets '_' instead."""
    if name.upper() == "INBOX":
        return "INBOX"
    relative = name
    if source.prefix and name.startswith(source.prefix):
        relative = name[len(source.prefix) :]
    parts = relative.split(source.separator) if source.separator else [relative]
    target_separator = target.separator or "/"
    if target.separator:
        parts = [part.replace(target.separator, "_") for part in parts]
    if parts[0].upper() == "INBOX":  # a child of INBOX stays a child of INBOX, whatever the prefix
        return target_separator.join(["INBOX", *parts[1:]])
    return target.prefix + target_separator.join(parts)


@dataclass
class ImapFolder:
    name: str  # source
    target: str
    subscribed: bool


def list_source_folders(src: IMAPClient, tgt: IMAPClient) -> list[ImapFolder]:
    source_ns, target_ns = personal_namespace(src), personal_namespace(tgt)
    subscribed = {name for _, _, name in src.list_sub_folders()}
    folders = []
    for flags, delimiter, name in src.list_folders():
        lowered = {f.lower() for f in flags}
        if b"\\noselect" in lowered or b"\\nonexistent" in lowered:
            continue
        if delimiter and source_ns.separator is None:
            source_ns.separator = delimiter.decode() if isinstance(delimiter, bytes) else delimiter
        folders.append(ImapFolder(name, map_folder_name(name, source_ns, target_ns), name in subscribed))
    # INBOX first (it is what people look at), then parents before their children.
    folders.sort(key=lambda f: (f.name.upper() != "INBOX", f.name))
    return folders


# --- message keys -------------------------------------------------------------------------------------------


def header_field(data: dict, prefix: bytes) -> bytes | None:
    for key, value in data.items():
        if isinstance(key, bytes) and key.startswith(prefix):
            return value
    return None


def fetch_keys(client: IMAPClient, uids: list[int], sizes: dict[int, int] | None = None) -> dict[int, str]:
    """uid -> dedupe key in the selected folder: Message-ID + size, or header-block hash + size."""
    keys: dict[int, str] = {}
    no_id: list[int] = []
    for chunk in chunks(uids, FETCH_CHUNK):
        wanted = [b"BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)]"] + ([] if sizes else [b"RFC822.SIZE"])
        asked = set(chunk)
        for uid, data in fetch_items(client, uid_set(chunk), wanted).items():
            if uid not in asked:
                continue  # an unsolicited FETCH (a flag change, say) for another message
            size = sizes[uid] if sizes else data[b"RFC822.SIZE"]
            mid = message_id(header_field(data, b"BODY[HEADER.FIELDS"))
            if mid:
                keys[uid] = f"m:{mid}:{size}"
            else:
                no_id.append(uid)
                keys[uid] = f"?:{size}"
    for chunk in chunks(no_id, 500):
        for uid, data in fetch_items(client, uid_set(chunk), [b"BODY.PEEK[HEADER]"]).items():
            if uid not in keys or b"BODY[HEADER]" not in data:
                continue
            size = int(keys[uid].split(":", 1)[1])
            keys[uid] = item_key(data.get(b"BODY[HEADER]") or b"", size)
    return keys


def chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def fetch_items(client: IMAPClient, uid_set: str, items: list[bytes]) -> dict[int, dict]:
    """UID FETCH of a UID set such as "1:500,720" or "1:*". IMAPClient.fetch wants a list of every UID
    (and filters its answer by it), which makes long commands and slow parsing for big folders."""
    tag = client._imap._command("UID", "FETCH", uid_set, "(" + " ".join(i.decode() for i in items) + ")")
    typ, data = client._imap._command_complete("FETCH", tag)
    client._checkok("fetch", typ, data)
    typ, data = client._imap._untagged_response(typ, data, "FETCH")
    return parse_fetch_response(data, client.normalise_times, True)


_UID_IN_FETCH = re.compile(rb"UID (\d+)")


def fetch_bodies(client: IMAPClient, uid_set: str) -> dict[int, bytes]:
    """uid -> BODY[] for a UID set. Reads imaplib's raw (line, literal) pairs rather than running
    imapclient's general response parser over every token of every message."""
    imap = client._imap
    tag = imap._command("UID", "FETCH", uid_set, "(BODY.PEEK[])")
    typ, data = imap._command_complete("FETCH", tag)
    client._checkok("fetch", typ, data)
    typ, data = imap._untagged_response(typ, data, "FETCH")
    bodies: dict[int, bytes] = {}
    for index, item in enumerate(data):
        if not isinstance(item, tuple):
            continue  # the ")" after a literal, or an unsolicited FETCH (FLAGS) without one
        head, literal = item
        if not head.rstrip().endswith(b"}") or b"BODY[]" not in head.upper():
            return _fetch_bodies_slowly(client, data)
        match = _UID_IN_FETCH.search(head)
        if match is None and index + 1 < len(data) and isinstance(data[index + 1], bytes):
            match = _UID_IN_FETCH.search(data[index + 1])  # a server that puts UID after the literal
        if match is None:
            return _fetch_bodies_slowly(client, data)
        bodies[int(match.group(1))] = literal
    return bodies


def _fetch_bodies_slowly(client: IMAPClient, data: list) -> dict[int, bytes]:
    parsed = parse_fetch_response(data, client.normalise_times, True)
    return {uid: d[b"BODY[]"] for uid, d in parsed.items() if b"BODY[]" in d}


def uid_set(uids: list[int]) -> str:
    """Compact "1:5,7,9:12" so a big batch is a short command."""
    parts, start, prev = [], None, None
    for uid in sorted(uids):
        if start is None:
            start = prev = uid
        elif uid == prev + 1:
            prev = uid
        else:
            parts.append(f"{start}:{prev}" if start != prev else str(start))
            start = prev = uid
    if start is not None:
        parts.append(f"{start}:{prev}" if start != prev else str(start))
    return ",".join(parts)


def unselect(client: IMAPClient) -> None:
    # UNSELECT leaves \Deleted messages alone; CLOSE would expunge them, so never CLOSE a target folder.
    if client.has_capability("UNSELECT"):
        client.unselect_folder()
    else:
        client.select_folder("INBOX", readonly=True)


def flags_for_target(flags: tuple, permanent: set[bytes], any_keyword: bool) -> tuple:
    kept = []
    for flag in flags:
        if flag in SYSTEM_FLAGS or not flag.startswith(b"\\") and (any_keyword or flag.lower() in permanent):
            kept.append(flag)
    return tuple(kept)


def size_limit(target: EndpointSpec, client: IMAPClient) -> int | None:
    """The smaller of the target's APPENDLIMIT (RFC 7889) and options["max_message_bytes"]."""
    limits = []
    if target.options.get("max_message_bytes"):
        limits.append(int(target.options["max_message_bytes"]))
    for capability in client.capabilities():
        if capability.upper().startswith(b"APPENDLIMIT="):
            with suppress(ValueError):
                limits.append(int(capability.split(b"=", 1)[1]))
    return min(limits) if limits else None


def quota_free(client: IMAPClient) -> int | None:
    if not client.has_capability("QUOTA"):
        return None
    # Exception, not IMAPClientError: imapclient 4.1 raises IndexError when the user has no quota root.
    with suppress(Exception):
        _, quotas = client.get_quota_root("INBOX")
        for quota in quotas:
            if quota.resource.upper() == "STORAGE" and quota.limit:
                return max(0, (quota.limit - quota.usage) * 1024)  # STORAGE is in KiB
    return None


def folder_totals(client: IMAPClient, folder: str) -> tuple[int, int]:
    info = client.select_folder(folder, readonly=True)
    if not info[b"EXISTS"]:
        return 0, 0
    sizes = fetch_items(client, "1:*", [b"RFC822.SIZE"])
    return len(sizes), sum(data[b"RFC822.SIZE"] for data in sizes.values())


def fetch_subjects(client: IMAPClient, uids: list[int]) -> dict[int, str]:
    if not uids:
        return {}
    fetched = client.fetch(uids, [b"BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])
    return {
        uid: subject_of(header_field(data, b"BODY[HEADER.FIELDS") or b"") for uid, data in fetched.items()
    }


def response_text(data) -> str:
    parts = data if isinstance(data, list | tuple) else [data]
    return " ".join(p.decode("utf-8", "replace") if isinstance(p, bytes) else str(p) for p in parts)


def raise_if_fatal(exc: Exception) -> None:
    """NO [OVERQUOTA] stops the mailbox; [UNAVAILABLE]/[INUSE] is worth a retry; anything else is about
    this one message, which is then listed as skipped."""
    code = _code_in(str(exc))
    if code is not None:
        raise error_for(code, f"target: {exc}") from exc
    if isinstance(exc, imap_errors.IMAPClientAbortError):
        raise engine_error(exc, "target") from exc


def rejected(folder: str, uid: int, size: int, header: bytes, exc: Exception) -> SkippedItem:
    text = str(exc)
    # [TOOBIG] (RFC 4469) or, from Dovecot, [LIMIT] "Mail size is larger than the maximum size allowed".
    reason = SKIP_TOO_BIG if any(code in text.upper() for code in ("[TOOBIG]", "[LIMIT]")) else SKIP_REJECTED
    return SkippedItem(folder, subject_of(header), size, f"{reason}: {text}", uid=uid)


def append_stream(client: IMAPClient, folder: str, flags: tuple, date, stream, size: int) -> str:
    """APPEND with the literal sent from a file in pieces. imapclient only appends bytes it holds whole."""
    imap = client._imap
    literal_plus = client.has_capability("LITERAL+")
    tag = imap._new_tag()
    flag_list = b"(" + b" ".join(flags) + b")"
    when = b'"' + datetime_to_INTERNALDATE(date).encode() + b'"' if date else b""
    head = b" ".join(p for p in (tag, b"APPEND", client._normalise_folder(folder), flag_list, when) if p)
    imap.send(head + b" {%d%s}\r\n" % (size, b"+" if literal_plus else b""))
    if not literal_plus:
        while imap._get_response():  # None means the continuation request arrived
            if imap.tagged_commands.get(tag):
                typ, data = imap.tagged_commands.pop(tag)
                raise imap_errors.IMAPClientError(f"APPEND refused: {typ} {response_text(data)}")
    while chunk := stream.read(1024 * 1024):
        imap.send(chunk)
    imap.send(b"\r\n")
    typ, data = imap._command_complete("APPEND", tag)
    if typ != "OK":
        raise imap_errors.IMAPClientError(f"APPEND command error: {typ} {response_text(data)}")
    return response_text(data)
