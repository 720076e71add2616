"""A fake GOV.UK Notify at the HTTP level, shaped like its documented API (docs.notifications.service.gov.uk
/rest-api.html) and what notifications-python-client sends:

- POST /v2/notifications/email with "Authorization: Bearer <JWT>": HS256, iss = the service id, iat within
  30 seconds, signed with the key's secret (the API key is {name}-{service id}-{secret});
- 201 {"id", "reference", "content": {"subject", "body", "from_email", "one_click_unsubscribe_url"}, "uri",
  "template": {"id", "version", "uri"}};
- errors as {"status_code": n, "errors": [{"error": type, "message": text}]}: 400 BadRequestError /
  ValidationError, 403 AuthError, 429 RateLimitError (a token bucket like Notify's: bursts up to
  min(rate / 3 + 1, 1001), refilled at rate / 60 a second) and 429 TooManyRequestsError (the daily limit);
- delivery receipts POSTed to a callback URL with the bearer token the service gave, in the documented
  format, when the test says so (deliver_callbacks()).

It runs in a thread on loopback. `storm(n)` answers the next n requests with 429 whatever the bucket holds.
"""

from __future__ import annotations

import json
import math
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt

SERVICE_ID = "26785a09-ab16-4eb0-8407-a37497a57506"
SECRET = "3d844edf-8d35-48ac-975b-e847b4f122b0"
API_KEY = f"portal_test-{SERVICE_ID}-{SECRET}"
TEMPLATE_ID = "f33517ff-2a88-4f6e-b855-c550268ce08a"
CALLBACK_TOKEN = "callback-bearer-token-for-tests"


def _now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Message:
    id: str
    email_address: str
    template_id: str
    personalisation: dict
    reference: str | None
    created_at: str
    called_back: bool = False


@dataclass
class FakeNotify:
    per_minute: int = 3_000
    daily_limit: int = 250_000
    template_ids: set[str] = field(default_factory=lambda: {TEMPLATE_ID})
    bounce: set[str] = field(default_factory=set)  # addresses that end in permanent-failure
    temporary: set[str] = field(default_factory=set)  # addresses that end in temporary-failure
    callback_url: str = ""
    callback_token: str = CALLBACK_TOKEN
    messages: list[Message] = field(default_factory=list)
    responses: list[int] = field(default_factory=list)  # every status answered, in order
    connections: int = 0  # TCP connections accepted (the client keeps them alive)
    url: str = ""

    def __post_init__(self):
        self._lock = threading.Lock()
        self._storm = 0
        self._verified: dict[str, dict] = {}  # token -> its claims, once its signature was checked
        self._tokens = float(self.bucket_max)
        self._refilled = time.monotonic()

    @property
    def bucket_max(self) -> int:
        return min(math.ceil(self.per_minute / 3) + 1, 1001)

    def storm(self, requests: int) -> None:
        with self._lock:
            self._storm += requests

    # --- the API ----------------------------------------------------------------------------------------------
    def _auth_error(self, headers) -> str:
        scheme, _, token = (headers.get("Authorization") or "").partition(" ")
        if scheme != "Bearer" or not token:
            return "Unauthorized: authentication token must be provided"
        claims = self._verified.get(token)
        if claims is None:
            try:
                claims = jwt.decode(token, SECRET, algorithms=["HS256"], options={"verify_iat": False})
            except jwt.InvalidSignatureError:
                return "Invalid token: API key not found"
            except jwt.PyJWTError:
                return "Invalid token: signature, api token not found"
            if jwt.get_unverified_header(token).get("typ") != "JWT":
                return "Invalid token: type"
            if claims.get("iss") != SERVICE_ID:
                return "Invalid token: service not found"
            # a token whose signature was checked is not checked again (clients reuse one within its second);
            # its age still is, below, on every request
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[token] = claims
        if abs(time.time() - int(claims.get("iat", 0))) > 30:
            return "Error: Your system clock must be accurate to within 30 seconds"
        return ""

    def _take_token(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self.bucket_max, self._tokens + (now - self._refilled) * self.per_minute / 60)
        self._refilled = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def handle(self, path: str, headers, body: bytes) -> tuple[int, dict]:
        def error(status: int, kind: str, message: str) -> tuple[int, dict]:
            return status, {"status_code": status, "errors": [{"error": kind, "message": message}]}

        if path != "/v2/notifications/email":
            return error(404, "NotFound", "Not Found")
        auth = self._auth_error(headers)
        if auth:
            return error(403, "AuthError", auth)
        with self._lock:
            if self._storm > 0:
                self._storm -= 1
                return error(
                    429,
                    "RateLimitError",
                    f"Exceeded rate limit for key type LIVE of {self.per_minute} requests per 60 seconds",
                )
            if not self._take_token():
                return error(
                    429,
                    "RateLimitError",
                    f"Exceeded rate limit for key type LIVE of {self.per_minute} requests per 60 seconds",
                )
            if len(self.messages) >= self.daily_limit:
                return error(
                    429, "TooManyRequestsError", f"Exceeded send limits ({self.daily_limit}) for today"
                )
        try:
            data = json.loads(body)
        except ValueError:
            return error(400, "BadRequestError", "Invalid JSON supplied in POST data")
        address = str(data.get("email_address") or "")
        local, _, domain = address.partition("@")
        if not local or "." not in domain:
            return error(400, "ValidationError", "email_address Not a valid email address")
        if data.get("template_id") not in self.template_ids:
            return error(400, "BadRequestError", "Template not found")
        personalisation = data.get("personalisation") or {}
        missing = [name for name in ("subject", "body") if name not in personalisation]
        if missing:
            return error(400, "BadRequestError", f"Missing personalisation: {', '.join(missing)}")
        message = Message(
            id=str(uuid.uuid4()),
            email_address=address,
            template_id=data["template_id"],
            personalisation=personalisation,
            reference=data.get("reference"),
            created_at=_now_iso(),
        )
        with self._lock:
            self.messages.append(message)
        return 201, {
            "id": message.id,
            "reference": message.reference,
            "content": {
                "subject": personalisation["subject"],
                "body": personalisation["body"],
                "from_email": "mailbox.move@notifications.service.gov.uk",
                "one_click_unsubscribe_url": None,
            },
            "uri": f"{self.url}/v2/notifications/{message.id}",
            "template": {
                "id": message.template_id,
                "version": 1,
                "uri": f"{self.url}/services/{SERVICE_ID}/templates/{message.template_id}",
            },
        }

    # --- receipts ---------------------------------------------------------------------------------------------
    def receipt(self, message: Message) -> dict:
        if message.email_address in self.bounce:
            status = "permanent-failure"
        elif message.email_address in self.temporary:
            status = "temporary-failure"
        else:
            status = "delivered"
        return {
            "id": message.id,
            "reference": message.reference,
            "to": message.email_address,
            "status": status,
            "created_at": message.created_at,
            "completed_at": _now_iso(),
            "sent_at": message.created_at,
            "notification_type": "email",
        }

    def deliver_callbacks(self) -> list[int]:
        """POST a receipt for every message not called back yet; returns the statuses our callback answered."""
        statuses = []
        pending = [m for m in self.messages if not m.called_back]
        for message in pending:
            request = urllib.request.Request(  # noqa: S310 - a loopback URL the test gave
                self.callback_url,
                data=json.dumps(self.receipt(message)).encode(),
                headers={
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {self.callback_token}",
                },
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                    statuses.append(response.status)
            except urllib.error.HTTPError as exc:
                statuses.append(exc.code)
            message.called_back = True
        return statuses


def start_fake_notify(**options) -> tuple[FakeNotify, ThreadingHTTPServer]:
    fake = FakeNotify(**options)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Notify's load balancers do
        # The headers and the body are two writes: with Nagle's algorithm on, the body waits for the client's
        # delayed ACK of the headers, 40 ms a request on Linux, which Notify itself does not add.
        disable_nagle_algorithm = True

        def setup(self):
            super().setup()
            with fake._lock:
                fake.connections += 1

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            status, answer = fake.handle(self.path, self.headers, body)
            with fake._lock:
                fake.responses.append(status)
            answer_json(self, status, json.dumps(answer).encode())

        def log_message(self, *args):
            pass

    server = serve_in_thread(Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    return fake, server


def serve_in_thread(handler) -> ThreadingHTTPServer:
    """An HTTP server on a free loopback port, serving `handler` from a thread until shut down."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def answer_json(handler: BaseHTTPRequestHandler, status: int, payload: bytes) -> None:
    """Notify's answers: JSON with its length, on a kept-alive connection."""
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)
