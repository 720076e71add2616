"""Who sends: GOV.UK Notify through its Python client, or the log backend `make run` uses without a key.

Notify's client (notifications-python-client) builds each request: the JWT, the headers, the JSON body, and
turns Notify's error bodies into its APIError. It sends through requests, whose per-request work (merging the
session's cookies, hooks and environment) was half of the portal's CPU per message; LeanNotifyClient keeps
everything of the client but that last step, which transport.py does: one kept-alive connection per thread,
the environment's proxy and CA bundle read once, and a non-2xx answer turned into the client's own HTTPError
exactly as the client does.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from django.conf import settings

from migrations_app.services.notifications.templates import Rendered

logger = logging.getLogger("migrations_app.services.notifications.sending")

SENT, RATE_LIMITED, DAILY_LIMIT, REJECTED, RETRY = "sent", "rate_limited", "daily_limit", "rejected", "retry"


@dataclass(frozen=True)
class Outgoing:
    notification_id: int
    recipient: str
    moment: str
    rendered: Rendered


@dataclass(frozen=True)
class Outcome:
    kind: str
    notify_id: str = ""
    error: str = ""


class LogBackend:
    """Sends nothing: the mailbox's timeline shows what would have gone (subject and body)."""

    name = "log"

    def send_many(self, items: list[Outgoing]) -> list[Outcome]:
        for item in items:
            logger.info(
                "notification %s to %s: %s", item.notification_id, item.recipient, item.rendered.subject
            )
        return [Outcome(SENT, notify_id=str(uuid.uuid4())) for _ in items]

    def submit(self, items: list[Outgoing]):
        """Send now; the outcomes when asked (the interface of NotifyBackend.submit)."""
        outcomes = self.send_many(items)
        return lambda: outcomes


class NotifyBackend:
    """GOV.UK Notify through its Python client, one client per thread (the client is not thread-safe).

    The threads live as long as the backend (one per worker process, see backend()), so each keeps its HTTP
    connection to Notify open from one batch and one beat run to the next instead of a new TLS handshake per
    thread and batch."""

    name = "notify"

    def __init__(self, *, api_key: str, base_url: str, template_ids: dict[str, str], threads: int):
        self.api_key, self.base_url, self.template_ids, self.threads = (
            api_key,
            base_url,
            template_ids,
            threads,
        )
        self._local = threading.local()
        self._pool: ThreadPoolExecutor | None = None

    def _client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            client = _lean_client_class()(self.api_key, base_url=self.base_url, timeout=30)
            self._local.client = client
        return client

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def _template_id(self, moment: str) -> str:
        return self.template_ids.get(moment) or self.template_ids.get("default", "")

    def send_one(self, item: Outgoing) -> Outcome:
        from notifications_python_client.errors import APIError

        try:
            response = self._client().send_email_notification(
                email_address=item.recipient,
                template_id=self._template_id(item.moment),
                personalisation={"subject": item.rendered.subject, "body": item.rendered.body},
                reference=str(item.notification_id),
            )
        except APIError as exc:
            return _outcome_of_error(exc)
        except Exception as exc:  # network trouble, a timeout: try again later
            return Outcome(RETRY, error=f"{type(exc).__name__}: {exc}"[:300])
        return Outcome(SENT, notify_id=str(response["id"]))

    def send_many(self, items: list[Outgoing]) -> list[Outcome]:
        return self.submit(items)()

    def submit(self, items: list[Outgoing]):
        """Start sending `items` on the backend's threads and return at once; calling what it returns waits
        for their outcomes, in the order of `items`. The sender claims and renders the next batch, and records
        the last one, while this one is on the wire."""
        if self.threads <= 1 or len(items) <= 1:
            outcomes = [self.send_one(item) for item in items]
            return lambda: outcomes
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="notify-send")
        futures = [self._pool.submit(self.send_one, item) for item in items]
        return lambda: [future.result() for future in futures]


def _outcome_of_error(exc) -> Outcome:
    """Notify's error bodies: {"status_code": 429, "errors": [{"error": "RateLimitError", "message": ...}]}."""
    message = exc.message
    kinds = [e.get("error", "") for e in message] if isinstance(message, list) else []
    text = "; ".join(e.get("message", "") for e in message) if isinstance(message, list) else str(message)
    if exc.status_code == 429:
        return Outcome(DAILY_LIMIT if "TooManyRequestsError" in kinds else RATE_LIMITED, error=text[:300])
    if exc.status_code == 400:
        return Outcome(REJECTED, error=text[:300])
    if exc.status_code == 403:
        logger.error("GOV.UK Notify refused our key (403): %s", text)
    return Outcome(RETRY, error=f"{exc.status_code}: {text}"[:300])


_backends: dict[tuple, NotifyBackend] = {}  # at most one: (process, settings) -> its backend
_backends_lock = threading.Lock()


def backend():
    """NOTIFY_BACKEND, or Notify when there is a key and the log otherwise. Notify's backend is kept for the
    process (its threads and their open connections) while the settings stay the same; a forked worker
    process makes its own."""
    name = settings.NOTIFY_BACKEND or ("notify" if settings.NOTIFY_API_KEY else "log")
    if name == "log":
        return LogBackend()
    ids = tuple(sorted(settings.NOTIFY_TEMPLATE_IDS.items()))
    key = (os.getpid(), settings.NOTIFY_API_KEY, settings.NOTIFY_BASE_URL, ids, settings.NOTIFY_SEND_THREADS)
    with _backends_lock:
        kept = _backends.get(key)
        if kept is None:
            for (pid, *_), old in _backends.items():
                if pid == os.getpid():
                    old.close()
            _backends.clear()
            kept = _backends[key] = NotifyBackend(
                api_key=key[1], base_url=key[2], template_ids=dict(ids), threads=key[4]
            )
        return kept


def _lean_client_class():
    import urllib.parse

    import requests
    from notifications_python_client.authentication import create_jwt_token, epoch_seconds
    from notifications_python_client.errors import HTTPError
    from notifications_python_client.notifications import NotificationsAPIClient

    from migrations_app.services.notifications.transport import KeptAliveConnection

    class LeanNotifyClient(NotificationsAPIClient):
        """NotificationsAPIClient whose transport is one kept-alive http.client connection (transport.py)
        instead of a requests session."""

        def __init__(self, api_key, base_url, timeout=30):
            super().__init__(api_key, base_url=base_url, timeout=timeout)
            self._connection = KeptAliveConnection(base_url, timeout=timeout)
            self._token, self._token_second = "", None

        def _create_request_objects(self, url, data, params):
            """The client's own, but the JWT signed once a second: its only claim that changes is iat, in
            whole seconds, so within a second the client would sign the very same token again."""
            second = epoch_seconds()
            if second != self._token_second:
                self._token, self._token_second = create_jwt_token(self.api_key, self.service_id), second
            kwargs = {"headers": self.generate_headers(self._token), "timeout": self.timeout}
            if data is not None:
                kwargs.update(data=self._serialize_data(data))
            if params is not None:
                kwargs.update(params=params)
            return urllib.parse.urljoin(str(self.base_url), str(url)), kwargs

        def _perform_request(self, method, url, kwargs):
            data = kwargs.get("data")
            status, headers, content = self._connection.request(
                method,
                url,
                body=data.encode() if isinstance(data, str) else data,
                headers=kwargs["headers"],
            )
            response = requests.Response()
            response.status_code, response._content, response.url = status, content, url
            response.headers = requests.structures.CaseInsensitiveDict(headers)
            response.encoding = "utf-8"
            try:
                response.raise_for_status()
            except requests.RequestException as exc:
                raise HTTPError.create(exc) from exc
            return response

        def close(self):
            self._connection.close()

    return LeanNotifyClient
