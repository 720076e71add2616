"""drf-spectacular hooks, and the schema view."""

from drf_spectacular.views import SpectacularAPIView

PROBLEM_SCHEMA = {
    "type": "object",
    "description": "An error, as RFC 9457 problem details. `code` is stable per kind of error.",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "format": "uri"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "code": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "Per field problems of a validation error, or per row problems of an import",
            "items": {"type": "object"},
        },
    },
    "additionalProperties": True,
}

IDEMPOTENCY_KEY = {
    "in": "header",
    "name": "Idempotency-Key",
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
    "description": (
        "Makes the POST safe to retry. The same key with the same request returns the first response (with "
        "`Idempotent-Replayed: true`) without doing the work again, for 24 hours. The same key with a "
        "different request is refused (422, code `idempotency_key_reused`); while the first request is still "
        "running a duplicate gets 409 (`idempotency_key_in_flight`). Keys are per user."
    ),
}


def drop_duplicate_routes(endpoints):
    """The bulk upsert is served with and without the router's trailing slash; document the issue's spelling
    (no slash) only."""
    return [e for e in endpoints if not e[0].endswith("/mailboxes/bulk/")]


def add_problems_and_idempotency(result, generator, request, public):
    """Every operation may answer a problem+json 4xx; every POST takes an Idempotency-Key."""
    result.setdefault("components", {}).setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    problem = {
        "description": "A problem (RFC 9457): see `code`",
        "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        for method, operation in operations.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            operation.setdefault("responses", {}).setdefault("4XX", problem)
            if method == "post":
                parameters = operation.setdefault("parameters", [])
                if not any(p.get("name") == IDEMPOTENCY_KEY["name"] for p in parameters):
                    parameters.append(IDEMPOTENCY_KEY)
    return result


class ViewableSchemaView(SpectacularAPIView):
    """/api/schema/: the OpenAPI document. Scripts asking for it get it as they ask (YAML or JSON by Accept or
    ?format=); a browser (it asks for text/html) gets the YAML as text to read in the tab, where
    application/vnd.oai.openapi made it download a file."""

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        accept = request.META.get("HTTP_ACCEPT", "")
        if "text/html" in accept and "format" not in request.query_params:
            response.content_type = "text/plain; charset=utf-8"  # used when DRF renders it
            if response.has_header("Content-Disposition"):
                del response["Content-Disposition"]
        return response
