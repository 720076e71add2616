"""`Idempotency-Key` on every POST under /api/v1/ (services/idempotency.py keeps the responses).

A middleware rather than a view mixin, so that every POST route (viewsets, their actions, function views)
gets it without each view remembering to. It finds the caller the way the API does (a Bearer token, else the
session) because keys are per user: nobody can replay someone else's key. It does not authenticate: a
request without a valid caller goes on to the view, which answers 401 as usual."""

import io

from django.http import HttpResponse, JsonResponse

from migrations_app.api.errors import PROBLEM_CONTENT_TYPE, problem
from migrations_app.services.idempotency import (
    idempotency_complete,
    idempotency_fingerprint,
    idempotency_release,
    idempotency_reserve,
)
from migrations_app.services.tokens import token_authenticate

HEADER = "Idempotency-Key"
PREFIX = "/api/v1/"
EXEMPT = ("/api/v1/auth/",)  # the browsable API's sign-in form
# Only a request that was executed is kept against its key (as the well-known payment APIs do): a 4xx (refused,
# invalid, conflicting) or 5xx answer releases the key, so a corrected retry with the same key runs.
KEPT_BELOW = 400


def _problem(status: int, detail: str, code: str, **headers) -> JsonResponse:
    response = JsonResponse(problem(status, detail=detail, code=code), status=status)
    response["Content-Type"] = PROBLEM_CONTENT_TYPE
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _caller(request):
    keyword, _, raw = request.headers.get("Authorization", "").partition(" ")
    if keyword.lower() == "bearer":
        token = token_authenticate(raw.strip())
        return token.user if token else None
    user = getattr(request, "user", None)
    return user if user is not None and user.is_authenticated else None


def _body(request) -> bytes:
    """The raw body, kept for the view. Read past DATA_UPLOAD_MAX_MEMORY_SIZE on purpose: the bulk upsert
    streams bodies larger than that and the view enforces its own row limit; this is what HttpRequest.body
    does, less the size check."""
    if not hasattr(request, "_body"):
        request._body = request.read()
        request._stream = io.BytesIO(request._body)
    return request._body


def _valid_key(key: str) -> bool:
    return 0 < len(key) <= 255 and all(0x20 < ord(c) < 0x7F for c in key)


class IdempotencyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        key = request.headers.get(HEADER)
        if key is None or request.method != "POST" or not request.path.startswith(PREFIX):
            return self.get_response(request)
        if request.path.startswith(EXEMPT):
            return self.get_response(request)
        if not _valid_key(key):
            return _problem(
                400, "Idempotency-Key must be 1 to 255 visible ASCII characters", "idempotency_key_invalid"
            )
        user = _caller(request)
        if user is None:
            return self.get_response(request)
        fingerprint = idempotency_fingerprint(
            method=request.method,
            path=request.path,
            query=request.META.get("QUERY_STRING", ""),
            content_type=request.content_type or "",
            body=_body(request),
        )
        reservation = idempotency_reserve(
            user=user, key=key, fingerprint=fingerprint, method=request.method, path=request.path
        )
        row = reservation.row
        if reservation.outcome == "mismatch":
            return _problem(
                422,
                f"This Idempotency-Key was first used with another request ({row.method} {row.path}); "
                "use a new key for a new request",
                "idempotency_key_reused",
            )
        if reservation.outcome == "in_flight":
            return _problem(
                409,
                "A request with this Idempotency-Key is still being processed; retry shortly",
                "idempotency_key_in_flight",
                Retry_After="1",
            )
        if reservation.outcome == "replay":
            response = HttpResponse(bytes(row.response_body), status=row.response_status)
            for name, value in row.response_headers.items():
                response[name] = value
            response["Idempotent-Replayed"] = "true"
            return response
        try:
            response = self.get_response(request)
        except BaseException:
            idempotency_release(row=row)
            raise
        if response.streaming or response.status_code >= KEPT_BELOW:
            idempotency_release(row=row)
        else:
            idempotency_complete(
                row=row,
                status=response.status_code,
                headers={name: response[name] for name in response.headers},
                body=response.content,
            )
        return response
