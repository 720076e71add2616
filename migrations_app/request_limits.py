"""Odd input stops at the door, before any view or middleware reads it:

- a body larger than the API's bulk limit (API_MAX_BODY_BYTES; an inventory upload, multipart, may be up to
  INVENTORY_UPLOAD_MAX_BYTES) is 413, and a chunked body with no length 411, so nothing reads an unbounded
  body (the Idempotency-Key middleware keeps the body it reads);
- a NUL byte in the path, a query parameter or a form field is 400 with a message: PostgreSQL cannot store
  one in text, so it used to surface as a 500, or as an export with only its header line.

API paths answer problem+json; pages a short page. The JSON parser (api/parsers.py) does the same for bodies."""

from urllib.parse import unquote_plus

from django.conf import settings
from django.shortcuts import render

from migrations_app.api.errors import _problem_response

NUL_MESSAGE = "A parameter holds a NUL character (\\0), which is never valid here"


class BadParameter(Exception):
    """A view's parameter that is not what it must be: answered 400 with this message (process_exception)."""


MULTIPART_OVERHEAD = 1024 * 1024


def id_parameter(value, name: str) -> int:
    """A row id from a form or query parameter: a whole number that fits the column, or BadParameter."""
    text = str(value or "").strip()
    if not text.isascii() or not text.isdigit() or not 0 < int(text) < 2**63:
        raise BadParameter(f"{name} must be the id of a record (a whole number)")
    return int(text)


def _answer(request, status: int, detail: str):
    if request.path.startswith("/api/"):
        return _problem_response(status, detail)
    return render(request, "errors/bad_input.html", {"status": status, "detail": detail}, status=status)


def _has_nul(text: str) -> bool:
    return "\x00" in text or "\x00" in unquote_plus(text)


class RequestLimitsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        refusal = self.refusal(request)
        if refusal:
            return _answer(request, *refusal)
        return self.get_response(request)

    def process_exception(self, request, exception):
        """A NUL that came another way (a multipart form field) and reached PostgreSQL: still the person's
        input, so a 400, not a 500."""
        if isinstance(exception, BadParameter):
            return _answer(request, 400, str(exception))
        if isinstance(exception, ValueError) and "NUL (0x00)" in str(exception):
            return _answer(request, 400, NUL_MESSAGE)
        return None

    def refusal(self, request) -> tuple[int, str] | None:
        meta = request.META
        if "chunked" in meta.get("HTTP_TRANSFER_ENCODING", "").lower():
            return 411, "Send a Content-Length with the body"
        try:
            length = int(meta.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return 400, "Content-Length is not a number"
        multipart = meta.get("CONTENT_TYPE", "").startswith("multipart/form-data")
        # An upload a little over the file limit reaches its form, which says so beside the field; this is
        # the backstop against bodies nothing should read (form fields and boundaries: the extra MiB).
        limit = (
            settings.INVENTORY_UPLOAD_MAX_BYTES + MULTIPART_OVERHEAD
            if multipart
            else settings.API_MAX_BODY_BYTES
        )
        if length > limit:
            return 413, f"The request body is larger than {limit:,} bytes"
        if "\x00" in request.path or _has_nul(meta.get("QUERY_STRING", "")):
            return 400, NUL_MESSAGE
        content_type = meta.get("CONTENT_TYPE", "")
        # A page's form, urlencoded or multipart (its text fields; files are streamed to disk as the view would
        # have them), or an API form post. An API multipart body is left to DRF's parser: reading it here would
        # take the raw body from the Idempotency-Key middleware; a NUL from it that reaches PostgreSQL is turned
        # into a 400 by process_exception.
        form = content_type.startswith("application/x-www-form-urlencoded") or (
            multipart and not request.path.startswith("/api/")
        )
        if (
            form
            and request.method == "POST"
            and any("\x00" in k or any("\x00" in v for v in vs) for k, vs in request.POST.lists())
        ):
            return 400, NUL_MESSAGE
        return None
