"""Microsoft Graph for one mailbox, app-only, within Graph's documented limits. Plain Python: no Django.

- Tokens: `msal.ConfidentialClientApplication.acquire_token_for_client` with the Graph `.default` scope. One
  MSAL app per endpoint (tenant, client id, credential, HTTP client) for the life of the process, so every
  task of a worker reuses MSAL's token cache instead of asking Entra for a token per mailbox.
- Limits (Outlook service limits in Graph): at most 4 concurrent requests per mailbox (a semaphore: a $batch
  whose sub-requests are chained with dependsOn runs one at a time, so it takes one slot); at most 150 MB
  uploaded per mailbox in any 5 minutes (a sliding window, waited for exactly: pacing, never an error;
  the writer fills what is left of a window with the part of a batch that fits); 429 / 503 honoured with
  Retry-After, exponential back-off with jitter when the header is missing; a 401 from an expired token drops
  MSAL's cached token and retries once.
"""

from __future__ import annotations

import hashlib
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import requests

from migrations_app.engines.base import (
    AUTH_FAILED,
    NETWORK,
    NOT_LICENSED,
    OVER_QUOTA,
    PROTOCOL,
    SERVER_BUSY,
    TARGET_MISSING,
    THROTTLED,
    EndpointSpec,
    PermanentError,
    RetryableError,
)
from migrations_app.outbound_transport import OutboundRefusedError, outbound_session

log = logging.getLogger(__name__)

GRAPH_SCOPE = ["https://graph.microsoft.com/.default"]
GRAPH_URL = "https://graph.microsoft.com"
DEFAULT_AUTHORITY_HOST = "login.microsoftonline.com"
MAILBOX_CONCURRENCY = 4
UPLOAD_BUDGET_BYTES = 150 * 1024 * 1024
UPLOAD_WINDOW_SECONDS = 300.0
RETRY_STATUSES = frozenset({429, 502, 503, 504})
_TENANTS_REFUSED = {"common", "organizations", "consumers"}

NO_MAILBOX_MESSAGE = (
    "{user} has no Exchange Online mailbox that Graph can reach (MailboxNotEnabledForRESTAPI): the user is "
    "unlicensed, the mailbox is still being provisioned, inactive or soft-deleted, or it is still on-premises. "
    "Assign an Exchange Online licence, wait for the mailbox to appear, then run pre-flight again"
)


# --- MSAL apps, one per endpoint ------------------------------------------------------------------------------

_apps: dict[tuple, Any] = {}
_apps_lock = threading.Lock()


def client_credential(endpoint: EndpointSpec) -> str | dict:
    """The endpoint's secret is a client secret, or a PEM private key used with options["certificate_thumbprint"]
    (SHA-1, hex) and optionally options["certificate"] (the public PEM, sent as x5c for subject-name/issuer
    auth)."""
    secret = endpoint.password
    if not secret:
        raise PermanentError(
            AUTH_FAILED, "target: the Graph endpoint has no client secret or certificate key"
        )
    if "-----BEGIN" in secret and "PRIVATE KEY-----" in secret:
        thumbprint = endpoint.options.get("certificate_thumbprint", "")
        if not thumbprint:
            raise PermanentError(
                AUTH_FAILED, "target: a certificate key needs options.certificate_thumbprint (SHA-1, hex)"
            )
        credential = {"private_key": secret, "thumbprint": thumbprint.replace(":", "").upper()}
        if endpoint.options.get("certificate"):
            credential["public_certificate"] = endpoint.options["certificate"]
        return credential
    return secret


def authority_for(tenant: str, host: str = DEFAULT_AUTHORITY_HOST) -> str:
    tenant = (tenant or "").strip()
    if not tenant or tenant.lower() in _TENANTS_REFUSED:
        raise PermanentError(
            AUTH_FAILED,
            f"target: the Graph endpoint needs a tenant ID or domain, not {tenant or 'nothing'!r}",
        )
    return f"https://{host}/{tenant}"


_ca_sessions: dict[str, requests.Session] = {}


class _PrivateCASession(requests.Session):
    """Trusts one CA file and nothing else, whatever a request or the environment says (requests lets
    REQUESTS_CA_BUNDLE win over a session's own `verify` when the session trusts the environment)."""

    def __init__(self, ca_file: str):
        super().__init__()
        self.ca_file = self.verify = ca_file

    def request(self, method, url, *args, **kwargs):
        if kwargs.get("verify") in (None, True):
            kwargs["verify"] = self.ca_file
        return super().request(method, url, *args, **kwargs)


def http_session(
    endpoint: EndpointSpec, http_client: requests.Session | None = None
) -> requests.Session | None:
    """The HTTP session for an endpoint: the one given (tests, the workers' options), else, when the endpoint
    names a private CA (options.ca_file, a file under ENDPOINT_CA_DIR: a test tenant or a proxy that terminates
    TLS), one session per CA file for the process that trusts only it; else None (MSAL's and requests' own)."""
    if http_client is not None:
        return http_client
    ca_file = endpoint.options.get("ca_file")
    if not ca_file:
        return None
    with _apps_lock:
        if ca_file not in _ca_sessions:
            _ca_sessions[ca_file] = outbound_session(_PrivateCASession(ca_file))
        return _ca_sessions[ca_file]


def msal_app(endpoint: EndpointSpec, http_client: requests.Session | None = None):
    """The process's MSAL app for this endpoint (made once; MSAL fetches the tenant's OpenID configuration
    when it is made). Keyed by a hash of the credential, never the credential itself. An authority host that
    is not one of Microsoft's (options.authority_host: a test tenant) is used as it is, without asking
    login.microsoftonline.com to vouch for it (MSAL's instance discovery)."""
    import msal
    from msal.authority import WELL_KNOWN_AUTHORITY_HOSTS

    credential = client_credential(endpoint)
    authority_host = endpoint.options.get("authority_host", DEFAULT_AUTHORITY_HOST)
    authority = authority_for(endpoint.host, authority_host)
    fingerprint = hashlib.sha256(repr(credential).encode()).hexdigest()
    key = (authority, endpoint.username, fingerprint, id(http_client))
    with _apps_lock:
        app = _apps.get(key)
        if app is None:
            try:
                app = msal.ConfidentialClientApplication(
                    endpoint.username,
                    client_credential=credential,
                    authority=authority,
                    # every call to Entra obeys the outbound rules (authority_host is an endpoint option);
                    # the session is the app's own, as MSAL's default would be
                    http_client=http_client or outbound_session(),
                    token_cache=msal.TokenCache(),
                    instance_discovery=authority_host in WELL_KNOWN_AUTHORITY_HOSTS,
                )
            except ValueError as exc:  # tenant unknown to Entra, or a malformed key
                raise PermanentError(AUTH_FAILED, f"target: {exc}") from exc
            except OutboundRefusedError as exc:
                raise PermanentError(NETWORK, f"target: reaching Entra ID: refused: {exc}") from exc
            except requests.RequestException as exc:
                raise RetryableError(NETWORK, f"target: reaching Entra ID: {exc}") from exc
            _apps[key] = app
        return app


# --- errors --------------------------------------------------------------------------------------------------


def graph_error(response: requests.Response | dict, status: int | None = None, where: str = "target"):
    """A Graph error response (or $batch sub-response body) as our typed error."""
    if isinstance(response, requests.Response):
        status = response.status_code
        try:
            body = response.json()
        except ValueError:
            body = {}
    else:
        body = response or {}
    error = (body or {}).get("error") or {}
    if isinstance(error, str):
        error = {"code": error, "message": body.get("error_description", "")}
    code = error.get("code", "") or str(status)
    message = f"{where}: {status} {code}: {error.get('message', '')}".rstrip(": ")
    if code == "MailboxNotEnabledForRESTAPI":
        return PermanentError(NOT_LICENSED, f"{where}: " + NO_MAILBOX_MESSAGE.format(user="the user"))
    if code in ("ErrorQuotaExceeded", "ErrorQuotaExceededOnDelete") or "quota" in code.lower():
        return PermanentError(OVER_QUOTA, message)
    if status in (401, 403):
        return PermanentError(
            AUTH_FAILED, message + " (check the app's Graph application permissions and admin consent)"
        )
    if status == 404 and code in ("Request_ResourceNotFound", "ResourceNotFound", "ErrorInvalidUser"):
        return PermanentError(TARGET_MISSING, message)
    if status in RETRY_STATUSES:
        return RetryableError(THROTTLED if status == 429 else SERVER_BUSY, message)
    if status is not None and status >= 500:
        return RetryableError(SERVER_BUSY, message)
    return PermanentError(PROTOCOL, message)


def retry_after_seconds(headers: dict | None) -> float | None:
    for key, value in (headers or {}).items():
        if key.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return None
    return None


# --- the client ----------------------------------------------------------------------------------------------


@dataclass
class BatchItem:
    method: str
    url: str  # relative to the version, e.g. "/users/{id}/mailFolders/{id}/messages"
    body: Any = None
    headers: dict | None = None
    size: int = 0


class GraphClient:
    """Graph calls for one mailbox, shared by the engine's threads for that mailbox."""

    def __init__(
        self,
        endpoint: EndpointSpec,
        user: str,
        *,
        http_client: requests.Session | None = None,
        concurrency: int = MAILBOX_CONCURRENCY,
        max_wait: float = 120.0,
        max_retries: int = 8,
        backoff_base: float = 1.0,
        upload_budget_bytes: int = UPLOAD_BUDGET_BYTES,
        upload_window: float = UPLOAD_WINDOW_SECONDS,
        timeout: float = 60.0,
    ):
        if concurrency > MAILBOX_CONCURRENCY:
            raise ValueError(f"Graph allows at most {MAILBOX_CONCURRENCY} concurrent requests per mailbox")
        self.endpoint = endpoint
        self.user = user
        # Every request (graph_url, @odata.nextLink, the import session's importUrl) is checked when it is sent
        # (migrations_app/outbound_transport.py): a saved graph_url that rebinds to an internal address later
        # gets no connection. A session given by the caller is used as it is (the tests' fakes build theirs on
        # outbound_session too); a private CA (options.ca_file) gets an outbound session of its own.
        http_client = http_session(endpoint, http_client)
        self.http = http_client or outbound_session()
        self._app_http = http_client
        self.base = endpoint.options.get("graph_url", GRAPH_URL).rstrip("/")
        self.slots = threading.BoundedSemaphore(concurrency)
        self.max_wait = max_wait
        self.max_retries = max_retries
        self.backoff_base = backoff_base
        self.upload_budget_bytes = upload_budget_bytes
        self.upload_window = upload_window
        self.timeout = timeout
        self._uploads: list[list] = []  # [monotonic time, bytes, in flight]
        self._upload_lock = threading.Lock()
        self.stats = {
            "requests": 0,
            "throttled": 0,
            "token_refreshes": 0,
            "uploaded_bytes": 0,
            "paced_seconds": 0.0,
        }
        self._stats_lock = threading.Lock()

    # --- tokens ------------------------------------------------------------------------------------------

    def token(self) -> str:
        app = msal_app(self.endpoint, self._app_http)
        try:
            result = app.acquire_token_for_client(scopes=GRAPH_SCOPE)
        except OutboundRefusedError as exc:
            raise PermanentError(NETWORK, f"target: reaching Entra ID: refused: {exc}") from exc
        except requests.RequestException as exc:
            raise RetryableError(NETWORK, f"target: reaching Entra ID: {exc}") from exc
        if "access_token" not in result:
            description = (result.get("error_description") or "").splitlines()[0:1]
            raise PermanentError(
                AUTH_FAILED,
                f"target: Entra ID refused the app: {result.get('error')}: {' '.join(description)}",
            )
        return result["access_token"]

    def drop_token(self) -> None:
        """The token was refused (expired or revoked early): forget MSAL's cached one so the next is new."""
        msal_app(self.endpoint, self._app_http).remove_tokens_for_client()
        self._count("token_refreshes")

    # --- limits ------------------------------------------------------------------------------------------

    def _count(self, name: str, n: int = 1) -> None:
        with self._stats_lock:
            self.stats[name] += n

    def _room(self, now: float) -> int:
        """Bytes free in the window now. Under the lock. An upload counts from when it finished arriving (so
        the server, which counts what it received, never sees more in a window than we allowed ourselves)
        and, while in flight, until it has."""
        self._uploads = [u for u in self._uploads if u[2] or u[0] > now - self.upload_window]
        return self.upload_budget_bytes - sum(u[1] for u in self._uploads)

    def upload_room(self) -> int:
        """Bytes that can be sent now without waiting (the writer fills the window with what fits)."""
        with self._upload_lock:
            return max(0, self._room(time.monotonic()))

    def upload_wait(self, size: int) -> float:
        """Seconds until `size` more bytes fit in the window (0: now): until the oldest finished uploads that
        must leave it have left. While only in-flight uploads could make room, their end is not known yet: a
        short wait, asked again."""
        with self._upload_lock:
            now = time.monotonic()
            free = self._room(now)
            if size <= free or not self._uploads:
                return 0.0
            short = size - free
            for at, n, in_flight in sorted(self._uploads):
                if in_flight:
                    continue
                short -= n
                if short <= 0:
                    return max(at + self.upload_window - now, 0.001)
            return 0.02

    def wait_for_budget(self, size: int) -> None:
        """Sleep until `size` more bytes fit in the window: exactly until the uploads that must leave it
        have left, not a poll. Waiting is pacing, not failing (see reserve_upload)."""
        while wait := self.upload_wait(size):
            self._count("paced_seconds", wait)
            time.sleep(min(wait, self.upload_window))

    def try_reserve(self, size: int) -> list | None:
        """Take `size` bytes of the window now, or None when they do not fit (no waiting)."""
        with self._upload_lock:
            now = time.monotonic()
            free = self._room(now)
            if size > free and self._uploads:
                return None
            entry = [now, size, True]
            self._uploads.append(entry)
            self._count("uploaded_bytes", size)
            return entry

    def reserve_upload(self, size: int) -> list:
        """Wait until `size` more bytes fit in the mailbox's 150 MB / 5 min upload window and take them.
        Waiting is pacing, not failing: the wait is at most one window, the copy goes on at the budget's
        rate, and the run's lease is kept meanwhile (the pipeline's heartbeat), so a mailbox of any size
        gets through without spending its retries. The window is the mailbox's: upload_state() /
        restore_uploads() carry it in the checkpoint across runs and workers. request() waits without
        holding a request slot and reserves once it holds one, right before sending: no idle gap between
        the reservation and the bytes on the wire."""
        while True:
            self.wait_for_budget(size)
            entry = self.try_reserve(size)
            if entry is not None:
                return entry

    def upload_done(self, entry: list | None) -> None:
        if entry is not None:
            with self._upload_lock:
                entry[0], entry[2] = time.monotonic(), False

    def upload_state(self) -> list[list[float]]:
        """The uploads still in the window, as [wall-clock time, bytes] pairs (for the checkpoint)."""
        with self._upload_lock:
            offset = time.time() - time.monotonic()
            horizon = time.monotonic() - self.upload_window
            return [[round(at + offset, 3), n] for at, n, _ in self._uploads if at > horizon]

    def restore_uploads(self, state: list | None) -> None:
        """The window a previous run (on any worker) left in the checkpoint, so this one does not start as if
        nothing had been uploaded in the last five minutes."""
        if not state:
            return
        with self._upload_lock:
            offset = time.time() - time.monotonic()
            horizon = time.monotonic() - self.upload_window
            known = [[float(at) - offset, int(n), False] for at, n in state if float(at) - offset > horizon]
            self._uploads = [*self._uploads, *known]

    def _backoff(self, attempt: int) -> float:
        return self.backoff_base * (2**attempt) * random.uniform(0.5, 1.5)

    # --- requests ----------------------------------------------------------------------------------------

    def url(self, path: str, version: str = "v1.0") -> str:
        if path.startswith("https://"):
            return path
        return f"{self.base}/{version}/{path.lstrip('/')}"

    def request(
        self,
        method: str,
        path: str,
        *,
        version: str = "v1.0",
        json: Any = None,
        data: bytes | str | None = None,
        headers: dict | None = None,
        params: dict | None = None,
        upload: int = 0,
        authorize: bool = True,
        ok: tuple[int, ...] = (),
    ) -> requests.Response:
        """One call with the limits applied. Returns the response for 2xx or a status in `ok`; raises our
        typed error otherwise."""
        url = self.url(path, version)
        waited, attempt, refreshed = 0.0, 0, False
        while True:
            send_headers = dict(headers or {})
            if authorize:
                send_headers["Authorization"] = f"Bearer {self.token()}"
            if upload:
                self.wait_for_budget(upload)
            with self.slots:
                reserved = self.try_reserve(upload) if upload else None
                if upload and reserved is None:
                    continue  # another thread took the room meanwhile: wait again, without the slot
                self._count("requests")
                try:
                    response = self.http.request(
                        method,
                        url,
                        json=json,
                        data=data,
                        headers=send_headers,
                        params=params,
                        timeout=self.timeout,
                    )
                except OutboundRefusedError as exc:
                    # configuration, not a blip: retrying would only ask the resolver again
                    raise PermanentError(NETWORK, f"target: {method}: refused: {exc}") from exc
                except requests.RequestException as exc:
                    raise RetryableError(NETWORK, f"target: {method} {path}: {exc}") from exc
                finally:
                    self.upload_done(reserved)
            status = response.status_code
            if 200 <= status < 300 or status in ok:
                return response
            if status == 401 and authorize and not refreshed:
                self.drop_token()
                refreshed = True
                continue
            if status in RETRY_STATUSES:
                wait = retry_after_seconds(response.headers)
                wait = self._backoff(attempt) if wait is None else wait
                attempt += 1
                self._count("throttled")
                if waited + wait > self.max_wait or attempt > self.max_retries:
                    error = graph_error(response)
                    raise RetryableError(
                        THROTTLED if status == 429 else SERVER_BUSY, error.message, retry_after=wait
                    )
                log.info("Graph answered %s for %s; waiting %.1f s", status, path, wait)
                time.sleep(wait)
                waited += wait
                continue
            raise graph_error(response)

    def get(self, path: str, **kwargs) -> dict:
        return self.request("GET", path, **kwargs).json()

    def pages(self, path: str, params: dict | None = None):
        """Every item of a collection, following @odata.nextLink."""
        page = self.get(path, params=params)
        while True:
            yield from page.get("value", [])
            link = page.get("@odata.nextLink")
            if not link:
                return
            page = self.get(link)

    def batch(self, items: list[BatchItem], *, version: str = "v1.0") -> list[tuple[int, Any]]:
        """JSON $batch of up to 20 requests chained with dependsOn, so they run one after another (one
        concurrency slot, one round trip). Returns (status, body) per item in order; throttled, failed-
        dependency and token-refused items are resent (within the same wait budget), other failures are
        returned for the caller to judge per item."""
        if not items:
            return []
        if len(items) > 20:
            raise ValueError("a Graph $batch takes at most 20 requests")
        results: list[tuple[int, Any] | None] = [None] * len(items)
        waited, attempt, refreshed = 0.0, 0, False
        while True:
            pending = [i for i, r in enumerate(results) if r is None]
            requests_ = []
            for n, index in enumerate(pending):
                item = items[index]
                sub = {"id": str(index), "method": item.method, "url": item.url}
                if item.body is not None:
                    sub["body"] = item.body
                    sub["headers"] = item.headers or {"Content-Type": "application/json"}
                if n:
                    sub["dependsOn"] = [str(pending[n - 1])]
                requests_.append(sub)
            size = sum(items[i].size for i in pending)
            response = self.request(
                "POST", "$batch", version=version, json={"requests": requests_}, upload=size
            )
            wait = None
            retry_token = False
            for answer in response.json().get("responses", []):
                index, status = int(answer["id"]), int(answer["status"])
                if status in RETRY_STATUSES:
                    hint = retry_after_seconds(answer.get("headers"))
                    wait = max(wait or 0.0, hint if hint is not None else self._backoff(attempt))
                    self._count("throttled")
                elif status == 424:
                    continue  # an earlier request in the chain failed: resend
                elif status == 401 and not refreshed:
                    retry_token = True
                else:
                    results[index] = (status, answer.get("body"))
            if all(r is not None for r in results):
                return results  # type: ignore[return-value]
            if retry_token:
                self.drop_token()
                refreshed = True
            if wait is not None:
                attempt += 1
                if waited + wait > self.max_wait or attempt > self.max_retries:
                    raise RetryableError(
                        THROTTLED, "target: Graph is throttling this mailbox", retry_after=wait
                    )
                time.sleep(wait)
                waited += wait
            elif not retry_token:
                # Only failed dependencies are left: the failure that caused them was recorded, resend.
                continue
