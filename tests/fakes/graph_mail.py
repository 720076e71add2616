"""The fake Microsoft Graph mail API, half of the fake Microsoft cloud (tests/fakes/microsoft.py): users,
mailboxSettings, mailFolders and childFolders, messages (JSON and beta importMime), attachments and upload
sessions, $batch with dependsOn; Graph's per-mailbox limits (four concurrent requests, the upload budget) and
the knobs a test turns (throttle, fail_after, limit_uploads)."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import email
import email.policy
import email.utils
import json
import re
import time
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.fakes.microsoft_data import (
    GRAPH,
    MAILBOX_CONCURRENCY,
    PR_CLIENT_SUBMIT_TIME,
    PR_MESSAGE_DELIVERY_TIME,
    PR_MESSAGE_FLAGS,
    Folder,
    Mailbox,
    _graph_error,
    _id,
    _now,
)


class FakeGraphMail:
    """Mixed into FakeMicrosoft, whose __init__ holds the state these methods use."""

    def throttle(self, *, every: int = 0, count: int = 0, status: int = 429, retry_after: str | None = "1"):
        """Answer `status` to the next `count` Graph calls, or to every `every`-th one (a storm)."""
        with self._lock:
            self._throttle = {
                "every": every,
                "count": count,
                "status": status,
                "retry_after": retry_after,
                "n": 0,
            }

    def fail_after(self, creates: int | None) -> None:
        """The client's session raises FakeCrash instead of sending the create after `creates` more."""
        self._fail_after = creates
        self._creates = 0

    # --- what the engine tests read ------------------------------------------------------------------------

    def folder_by_path(self, upn: str, *path: str) -> Folder | None:
        mailbox = self.mailbox(upn)
        first = path[0]
        folder = mailbox.folder(first) or next(
            (
                f
                for f in mailbox.folders.values()
                if f.parent_id == mailbox.root.id and f.display_name == first
            ),
            None,
        )
        for name in path[1:]:
            if folder is None:
                return None
            folder = next(
                (f for f in mailbox.folders.values() if f.parent_id == folder.id and f.display_name == name),
                None,
            )
        return folder

    # --- throttling and concurrency -------------------------------------------------------------------------

    def enter(self, mailbox_key: str | None) -> tuple[int, str | None] | None:
        """Count a Graph request in; returns (status, retry_after) when it is to be throttled."""
        with self._lock:
            self.requests.append(("graph", mailbox_key or ""))
            if mailbox_key:
                self._active[mailbox_key] += 1
                self.max_concurrency[mailbox_key] = max(
                    self.max_concurrency[mailbox_key], self._active[mailbox_key]
                )
                if self._active[mailbox_key] > MAILBOX_CONCURRENCY:
                    self.over_limit += 1
                    return 429, "1"
            t = self._throttle
            if t:
                t["n"] += 1
                if (t["count"] and t["n"] <= t["count"]) or (t["every"] and t["n"] % t["every"] == 0):
                    return t["status"], t["retry_after"]
                if t["count"] and not t["every"] and t["n"] > t["count"]:
                    self._throttle = {}
        return None

    def leave(self, mailbox_key: str | None) -> None:
        if mailbox_key:
            with self._lock:
                self._active[mailbox_key] -= 1

    # --- Graph ---------------------------------------------------------------------------------------------

    def graph(self, method: str, path: str, query: dict, headers: dict, body: bytes, *, batched=False):
        """Route one Graph call: (status, headers, body bytes or JSON-able)."""
        version, _, rest = path.lstrip("/").partition("/")
        if version not in ("v1.0", "beta"):
            return 404, {}, _graph_error("BadRequest", f"Invalid version: {version}")
        if rest == "$batch" and method == "POST" and not batched:
            return self._batch(version, headers, body)
        parts = [p for p in rest.split("/") if p]
        mailbox_key = None
        if len(parts) >= 2 and parts[0] == "users":
            mailbox = self.mailbox(parts[1])
            mailbox_key = mailbox.user_id if mailbox else parts[1].lower()
        throttled = self.enter(mailbox_key)
        try:
            if self.op_time:
                time.sleep(self.op_time)
            if throttled:
                status, retry_after = throttled
                extra = {"Retry-After": retry_after} if retry_after else {}
                code = "ApplicationThrottled" if status == 429 else "ServiceUnavailable"
                return status, extra, _graph_error(code, "Application is over its MailboxConcurrency limit.")
            if not self.token_valid(headers.get("authorization", "")):
                return (
                    401,
                    {"WWW-Authenticate": 'Bearer realm="", error="invalid_token"'},
                    _graph_error(
                        "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired."
                    ),
                )
            return self._route(version, method, parts, query, headers, body)
        finally:
            self.leave(mailbox_key)

    def _batch(self, version: str, headers: dict, body: bytes):
        if not self.token_valid(headers.get("authorization", "")):
            return (
                401,
                {},
                _graph_error("InvalidAuthenticationToken", "Access token has expired or is not yet valid."),
            )
        requests_ = json.loads(body)["requests"]
        if len(requests_) > 20:
            return 400, {}, _graph_error("BadRequest", "Number of batch requests exceeds the limit of 20.")
        responses, status_by_id = [], {}
        # dependsOn chains run in order, one at a time; independent requests run "at once" (counted so)
        for item in requests_:
            depends = item.get("dependsOn") or []
            if any(status_by_id.get(d, 200) >= 400 for d in depends):
                status_by_id[item["id"]] = 424
                responses.append(
                    {"id": item["id"], "status": 424, "body": _graph_error("FailedDependency", "")}
                )
                continue
            sub_headers = {k.lower(): v for k, v in (item.get("headers") or {}).items()}
            sub_headers["authorization"] = headers.get("authorization", "")
            sub_body = item.get("body")
            if sub_body is None:
                raw = b""
            elif isinstance(sub_body, str):
                raw = sub_body.encode()
            else:
                raw = json.dumps(sub_body).encode()
            url = urlsplit(item["url"])
            status, out_headers, out = self.graph(
                item["method"],
                f"/{version}/{url.path.lstrip('/')}",
                parse_qs(url.query),
                sub_headers,
                raw,
                batched=True,
            )
            status_by_id[item["id"]] = status
            responses.append({"id": item["id"], "status": status, "headers": out_headers, "body": out})
        return 200, {}, {"responses": responses}

    def _route(self, version, method, parts, query, headers, body):
        if parts[0] != "users" or len(parts) < 2:
            return 404, {}, _graph_error("BadRequest", "Resource not found for the segment.")
        mailbox = self.mailbox(parts[1])
        if mailbox is None:
            return (
                404,
                {},
                _graph_error(
                    "Request_ResourceNotFound",
                    f"Resource '{parts[1]}' does not exist or one of its queried reference-property objects are not present.",
                ),
            )
        rest = parts[2:]
        if not rest and method == "GET":
            return (
                200,
                {},
                {
                    "@odata.context": f"https://{GRAPH}/{version}/$metadata#users/$entity",
                    "id": mailbox.user_id,
                    "userPrincipalName": mailbox.upn,
                    "mail": mailbox.upn,
                    "displayName": mailbox.display_name,
                },
            )
        if rest == ["licenseDetails"] and method == "GET":
            return 200, {}, self._license_details(mailbox, version)
        if not mailbox.licensed:
            return (
                404,
                {},
                _graph_error(
                    "MailboxNotEnabledForRESTAPI",
                    "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
                ),
            )
        with mailbox.lock:
            return self._mailbox_route(version, method, mailbox, rest, query, headers, body)

    def _mailbox_route(self, version, method, mailbox: Mailbox, rest, query, headers, body):
        if rest == ["mailboxSettings"] and method == "GET":
            return (
                200,
                {},
                {
                    "archiveFolder": mailbox.folder("archive").id,
                    "timeZone": "GMT Standard Time",
                    "language": {"locale": "en-GB", "displayName": "English (United Kingdom)"},
                    "userPurpose": mailbox.purpose,
                    "dateFormat": "dd/MM/yyyy",
                    "timeFormat": "HH:mm",
                },
            )
        if rest[0] == "mailFolders":
            return self._folders(version, method, mailbox, rest[1:], query, headers, body)
        if rest[0] == "messages" and len(rest) >= 2:
            folder, message = mailbox.message(rest[1])
            if message is None:
                return (
                    404,
                    {},
                    _graph_error("ErrorItemNotFound", "The specified object was not found in the store."),
                )
            if len(rest) == 2 and method == "PATCH":
                patch = json.loads(body)
                if "isRead" in patch:
                    message["isRead"] = bool(patch["isRead"])
                if "flag" in patch:
                    message["flag"] = {"flagStatus": patch["flag"].get("flagStatus", "notFlagged")}
                for prop in patch.get("singleValueExtendedProperties", []):
                    message["_props"][prop["id"].lower()] = prop["value"]
                if (
                    set(patch) - {"isRead", "singleValueExtendedProperties", "flag", "categories"}
                    and not message["isDraft"]
                ):
                    return (
                        400,
                        {},
                        _graph_error("ErrorInvalidRequest", "Only drafts can be updated this way."),
                    )
                return 200, {}, self._message_json(message, {})
            if len(rest) == 2 and method == "DELETE":
                del folder.messages[message["id"]]
                return 204, {}, None
            if rest[2:] == ["move"] and method == "POST":
                # message: move (v1.0): a copy in the destination folder with a new id, the original gone.
                destination = mailbox.folder(json.loads(body).get("destinationId", ""))
                if destination is None:
                    return 404, {}, _graph_error("ErrorItemNotFound", "The destination folder was not found.")
                del folder.messages[message["id"]]
                moved = {**message, "id": _id("m"), "parentFolderId": destination.id}
                destination.messages[moved["id"]] = moved
                return 201, {}, self._message_json(moved, {})
            if len(rest) == 2 and method == "GET":
                return 200, {}, self._message_json(message, query)
            if rest[2:3] == ["attachments"]:
                answer = self._attachments(version, method, mailbox, message, rest[2:], body)
                if answer is not None:
                    return answer
        return 400, {}, _graph_error("BadRequest", f"Unsupported request: {method} {'/'.join(rest)}")

    def _folders(self, version, method, mailbox: Mailbox, rest, query, headers, body):
        if not rest:  # top-level folders: the children of msgfolderroot
            parent = mailbox.root
            sub = []
        else:
            parent = mailbox.folder(rest[0])
            if parent is None:
                return (
                    404,
                    {},
                    _graph_error("ErrorItemNotFound", "The specified object was not found in the store."),
                )
            sub = rest[1:]
            if not sub and method == "GET":
                return 200, {}, parent.as_json(mailbox)
        if (not rest or sub == ["childFolders"]) and method == "GET":
            children = [f.as_json(mailbox) for f in mailbox.folders.values() if f.parent_id == parent.id]
            name_filter = (query.get("$filter") or [""])[0]
            match = re.match(r"displayName eq '(.*)'$", name_filter)
            if match:
                wanted = match.group(1).replace("''", "'")
                children = [c for c in children if c["displayName"] == wanted]
            return (
                200,
                {},
                self._page(children, query, f"https://{GRAPH}/{version}/users/{mailbox.user_id}/mailFolders"),
            )
        if (not rest or sub == ["childFolders"]) and method == "POST":
            name = json.loads(body)["displayName"]
            if any(
                f.parent_id == parent.id and f.display_name.lower() == name.lower()
                for f in mailbox.folders.values()
            ):
                return (
                    409,
                    {},
                    _graph_error("ErrorFolderExists", "A folder with the specified name already exists."),
                )
            folder = Folder(_id("f"), name, parent.id)
            mailbox.folders[folder.id] = folder
            return 201, {}, folder.as_json(mailbox)
        if sub == ["messages"] and method == "POST":
            return self._create(mailbox, parent, json.loads(body))
        if sub == ["messages"] and method == "GET":
            messages = [self._message_json(m, query) for m in parent.messages.values()]
            return (
                200,
                {},
                self._page(
                    messages,
                    query,
                    f"https://{GRAPH}/{version}/users/{mailbox.user_id}/mailFolders/{parent.id}/messages",
                ),
            )
        if sub == ["importMime"] and method == "POST":
            if version != "beta":
                return 400, {}, _graph_error("BadRequest", "Resource not found for the segment 'importMime'.")
            if not headers.get("content-type", "").startswith("text/plain"):
                return 415, {}, _graph_error("UnsupportedMediaType", "Content-Type must be text/plain.")
            raw = base64.b64decode(body)
            refused = self._spend_upload(mailbox, len(raw))
            if refused is not None:
                return refused
            return self._import_mime(mailbox, parent, raw)
        return (
            400,
            {},
            _graph_error("BadRequest", f"Unsupported request: {method} mailFolders/{'/'.join(rest)}"),
        )

    def _page(self, items: list, query: dict, url: str) -> dict:
        top = int((query.get("$top") or ["10"])[0])
        skip = int((query.get("$skip") or ["0"])[0])
        page = {"value": items[skip : skip + top]}
        if skip + top < len(items):
            rest = {k: v[0] for k, v in query.items() if k not in ("$skip",)}
            page["@odata.nextLink"] = f"{url}?{urlencode({**rest, '$skip': skip + top})}"
        return page

    def limit_uploads(self, budget_bytes: int | None, window_seconds: float = 300.0) -> None:
        """Graph's per-mailbox upload limit (150 MB in 5 minutes), scaled down for a test: importMime bytes
        and upload-session ranges over the budget within the window are refused with 429 and a Retry-After,
        and counted in upload_over_budget; upload_peak is the most a mailbox had in one window, and
        upload_history every upload accepted, as (monotonic time, bytes) per user id."""
        self.upload_budget, self.upload_window = budget_bytes, window_seconds
        self.upload_history = {}

    upload_budget: int | None = None
    upload_window = 300.0
    upload_over_budget = 0

    def _spend_upload(self, mailbox: Mailbox, size: int):
        if self.upload_budget is None:
            return None
        with self._lock:
            log = self._upload_log.setdefault(mailbox.user_id, [])
            peaks = self.upload_peak
            now = time.monotonic()
            log[:] = [(at, n) for at, n in log if at > now - self.upload_window]
            used = sum(n for _, n in log)
            if used + size > self.upload_budget:
                self.upload_over_budget += 1
                wait = max(1, int(log[0][0] + self.upload_window - now + 1)) if log else 1
                return (
                    429,
                    {"Retry-After": str(wait)},
                    _graph_error("ApplicationThrottled", "The mailbox's upload limit is reached."),
                )
            log.append((now, size))
            self.upload_history.setdefault(mailbox.user_id, []).append((now, size))
            peaks[mailbox.user_id] = max(peaks[mailbox.user_id], used + size)
        return None

    def _count_create(self) -> None:
        self._creates += 1

    def _create(self, mailbox: Mailbox, folder: Folder, data: dict):
        props = {p["id"].lower(): p["value"] for p in data.get("singleValueExtendedProperties", [])}
        flags = props.get(PR_MESSAGE_FLAGS.lower())
        is_draft = flags is None or int(flags) & 8 != 0
        message = {
            "id": _id("m"),
            "subject": data.get("subject", ""),
            "isDraft": is_draft,
            "isRead": bool(data.get("isRead", int(flags or 0) & 1)),
            "receivedDateTime": props.get(PR_MESSAGE_DELIVERY_TIME.lower()) or _now(),
            "sentDateTime": props.get(PR_CLIENT_SUBMIT_TIME.lower()) or _now(),
            "internetMessageId": data.get("internetMessageId"),
            "from": data.get("from"),
            "toRecipients": data.get("toRecipients", []),
            "body": data.get("body", {}),
            "flag": data.get("flag", {"flagStatus": "notFlagged"}),
            "attachments": list(data.get("attachments", [])),
            "parentFolderId": folder.id,
            "_props": props,
            "_size": len(json.dumps(data)),
            "_mime": None,
        }
        folder.messages[message["id"]] = message
        return 201, {}, self._message_json(message, {})

    def _import_mime(self, mailbox: Mailbox, folder: Folder, raw: bytes):
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        date = parsed.get("Date")
        sent = (
            email.utils.parsedate_to_datetime(str(date)).astimezone(dt.UTC)
            if date
            else dt.datetime.now(dt.UTC)
        )
        message = {
            "id": _id("m"),
            "subject": str(parsed.get("Subject", "")),
            "isDraft": False,
            "isRead": False,
            "receivedDateTime": sent.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "sentDateTime": sent.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "internetMessageId": str(parsed.get("Message-ID", "")) or None,
            "attachments": [],
            "parentFolderId": folder.id,
            "flag": {"flagStatus": "notFlagged"},
            "_props": {},
            "_size": len(raw),
            "_mime": raw,
        }
        folder.messages[message["id"]] = message
        return 201, {}, self._message_json(message, {})

    def _message_json(self, message: dict, query: dict) -> dict:
        out = {
            k: copy.deepcopy(v) for k, v in message.items() if not k.startswith("_") and k != "attachments"
        }
        out["hasAttachments"] = bool(message["attachments"])
        expand = (query.get("$expand") or [""])[0]
        match = re.search(r"singleValueExtendedProperties\(\$filter=id eq '([^']+)'\)", expand)
        if match:
            wanted = match.group(1).lower()
            if wanted in message["_props"]:
                out["singleValueExtendedProperties"] = [
                    {"id": match.group(1), "value": message["_props"][wanted]}
                ]
        select = (query.get("$select") or [""])[0]
        if select:
            keep = set(select.split(",")) | {"id", "singleValueExtendedProperties"}
            out = {k: v for k, v in out.items() if k in keep}
        return out
