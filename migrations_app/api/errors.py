"""Every API error as application/problem+json (RFC 9457): {type, title, status, detail, code, ...}.

`code` is stable per kind of error, so scripts can branch on it; `errors` lists per-field problems of a
validation error ({"field", "message", "code"}) or per-row problems of an import ({"line", "column", "value",
"message"}). Service errors (django ValidationError, PermissionDenied, WaveConflict) are mapped here too, so
views may simply let them propagate."""

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import set_rollback

from migrations_app.services.execution import MailboxConflict
from migrations_app.services.organisations import OrganisationConflict
from migrations_app.services.waves import WaveConflict

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "https://mailbox-migration.nhs.uk/problems/"

# HTTP status -> (code, title) for errors that carry no more specific code.
KINDS = {
    400: ("invalid", "Your request is not valid"),
    401: ("not_authenticated", "Authentication needed"),
    403: ("permission_denied", "You may not do this"),
    404: ("not_found", "Not found"),
    405: ("method_not_allowed", "Method not allowed"),
    406: ("not_acceptable", "Not acceptable"),
    409: ("conflict", "Conflict with the current state"),
    413: ("too_large", "Request too large"),
    500: ("server_error", "Server error"),
    415: ("unsupported_media_type", "Unsupported media type"),
    422: ("unprocessable", "The request could not be processed"),
    429: ("throttled", "Too many requests"),
}


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "Someone else acted first, or the state does not allow this"
    default_code = "conflict"


class Problem(exceptions.APIException):
    """An error with a chosen status, code and extra members (e.g. `errors` of an import)."""

    def __init__(self, *, status_code: int, detail: str, code: str, **extra):
        super().__init__(detail=detail, code=code)
        self.status_code = status_code
        self.extra = extra


def problem(
    status_code: int, *, detail: str, code: str | None = None, title: str | None = None, **extra
) -> dict:
    default_code, default_title = KINDS.get(status_code, ("error", "Error"))
    code = code or default_code
    return {
        "type": TYPE_BASE + code.replace("_", "-"),
        "title": title or default_title,
        "status": status_code,
        "detail": detail,
        "code": code,
        **extra,
    }


def _field_errors(detail, prefix: str = "") -> list[dict]:
    """Flatten DRF's nested error detail into [{"field", "message", "code"}]."""
    out: list[dict] = []
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = key if key != "non_field_errors" else ""
            out.extend(_field_errors(value, f"{prefix}.{name}" if prefix and name else (name or prefix)))
    elif isinstance(detail, list):
        if all(isinstance(item, exceptions.ErrorDetail | str) for item in detail):
            for item in detail:
                out.append({"field": prefix, "message": str(item), "code": getattr(item, "code", "invalid")})
        else:
            for index, item in enumerate(detail):
                out.extend(_field_errors(item, f"{prefix}[{index}]" if prefix else f"[{index}]"))
    else:
        out.append({"field": prefix, "message": str(detail), "code": getattr(detail, "code", "invalid")})
    return out


def _from_django(exc):
    if isinstance(exc, Http404):
        return exceptions.NotFound()
    if isinstance(exc, DjangoPermissionDenied):
        return exceptions.PermissionDenied(detail=str(exc) or None)
    if isinstance(exc, WaveConflict | MailboxConflict | OrganisationConflict):
        return Conflict(detail=" ".join(exc.messages))
    if isinstance(exc, DjangoValidationError):
        if hasattr(exc, "error_dict"):
            return exceptions.ValidationError(exc.message_dict)
        return exceptions.ValidationError({"non_field_errors": exc.messages})
    return exc


def problem_exception_handler(exc, context):
    exc = _from_django(exc)
    if not isinstance(exc, exceptions.APIException):
        return None  # a server error: Django's 500 handling and logging
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    status_code = exc.status_code
    if isinstance(exc, exceptions.ValidationError):
        errors = _field_errors(exc.detail)
        messages = [e["message"] for e in errors if not e["field"]]
        detail = " ".join(messages) or "Some fields are not valid: see errors"
        body = problem(400, detail=detail, code="invalid", errors=errors)
    else:
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else None
        default_code = KINDS.get(status_code, ("error", ""))[0]
        if code in {"error", "not_found", "permission_denied", "authentication_failed", "invalid"}:
            code = None if code != "authentication_failed" else "token_invalid"
        extra = getattr(exc, "extra", {})
        if isinstance(exc, exceptions.Throttled):
            extra = {"retry_after": int(exc.wait) if exc.wait else None}
        body = problem(status_code, detail=str(exc.detail), code=code or default_code, **extra)
    set_rollback()
    response = Response(body, status=status_code, headers=headers)
    request = context.get("request")
    renderer = getattr(request, "accepted_renderer", None)
    if getattr(renderer, "format", None) == "api":
        return response  # the browsable API shows the problem in its page
    if request is not None and getattr(renderer, "format", None) != "json":
        # No renderer agreed yet (e.g. ?format= names none) or a non-JSON one (the schema's YAML): a problem is
        # always JSON, whatever the view would have rendered.
        request.accepted_renderer, request.accepted_media_type = JSONRenderer(), PROBLEM_CONTENT_TYPE
    response.content_type = PROBLEM_CONTENT_TYPE
    return response


def _problem_response(status_code: int, detail: str) -> JsonResponse:
    response = JsonResponse(problem(status_code, detail=detail), status=status_code)
    response["Content-Type"] = PROBLEM_CONTENT_TYPE
    return response


def page_not_found(request, exception):
    """handler404: problem+json under /api/, the NHS.UK page elsewhere."""
    if request.path.startswith("/api/"):
        response = _problem_response(404, f"There is no API resource at {request.path}")
    else:
        response = defaults.page_not_found(request, exception)
    response.portal_error_page = True  # for DebugErrorPagesMiddleware: already the page production shows
    return response


def server_error(request):
    """handler500: problem+json under /api/ (the error is logged by Django as usual)."""
    if request.path.startswith("/api/"):
        return _problem_response(500, "Something went wrong on our side; it has been logged")
    return defaults.server_error(request)
