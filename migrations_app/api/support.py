"""/api/v1/ support: a trust's service-desk tickets in bulk (idempotent by reference), and the support rates
per organisation, per wave and for the programme. The same services and selectors as the pages."""

from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import api_view
from rest_framework.response import Response

from migrations_app.api.errors import Problem
from migrations_app.models import SupportRequest, Wave
from migrations_app.selectors.scoping import _own_organisation_ids, organisations_visible_to
from migrations_app.selectors.support import organisation_support, programme_support, wave_support
from migrations_app.selectors.waves import wave_organisation_ids
from migrations_app.services.support import support_tickets_import


def _rates(data: dict) -> dict:
    """Decimals as strings (exact), waves by id and name."""

    def plain(value):
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, list):
            return [plain(v) for v in value]
        if isinstance(value, Wave):
            return {"id": value.pk, "name": value.name, "starts_at": value.starts_at.isoformat()}
        if value is None or isinstance(value, (int, str)):
            return value
        return str(value)

    return plain(data)


@extend_schema(
    request={"application/json": {"type": "array", "items": {"type": "object"}}},
    responses={200: dict},
    description="Import service-desk tickets: a JSON list of {reference, address, opened_at, category}. "
    "All or nothing; a reference imported before is left as it was.",
)
@api_view(["POST"])
def support_tickets(request, ods_code: str):
    organisation = get_object_or_404(organisations_visible_to(request.user), ods_code=ods_code.upper())
    data = request.data
    rows = data if isinstance(data, list) else data.get("tickets") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise Problem(status_code=400, detail="Send a JSON list of tickets", code="invalid")
    try:
        result = support_tickets_import(
            organisation=organisation, actor=request.user, rows=rows, source=SupportRequest.Source.API
        )
    except ValidationError as exc:
        if hasattr(exc, "rows"):
            raise Problem(
                status_code=400, detail=" ".join(exc.messages), code="invalid", errors=exc.rows
            ) from exc
        raise
    return Response(
        {"received": result.received, "created": result.created, "already_known": result.already_known}
    )


@extend_schema(responses={200: dict})
@api_view(["GET"])
def organisation_support_rates(request, ods_code: str):
    organisation = get_object_or_404(organisations_visible_to(request.user), ods_code=ods_code.upper())
    return Response(_rates(organisation_support(organisation=organisation)))


@extend_schema(responses={200: dict})
@api_view(["GET"])
def wave_support_rates(request, pk: int):
    """A trust admin sees the wave only if their organisation is in it, and only their own rows."""
    user = request.user
    wave = get_object_or_404(Wave, pk=pk)
    own = None
    if not (user.is_programme_office or user.is_viewer):
        own = _own_organisation_ids(user)
        if not set(own) & set(wave_organisation_ids(wave)):
            raise Problem(status_code=404, detail="No such wave", code="not_found")
    return Response(_rates(wave_support(wave=wave, organisation_ids=own)))


@extend_schema(responses={200: dict})
@api_view(["GET"])
def programme_support_rates(request):
    return Response(_rates(programme_support()))
