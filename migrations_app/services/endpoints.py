"""Source and target systems: the programme office registers them. The secret is encrypted at rest (the field
does it) and never returned by anything."""

from collections.abc import Mapping
from typing import Any

from django.db import transaction

from migrations_app.models import Endpoint, User
from migrations_app.selectors.scoping import require_programme_office
from migrations_app.services.events import event_record

FIELDS = ("name", "kind", "role", "address", "port", "security", "username", "options", "max_concurrency")


@transaction.atomic
def endpoint_save(*, actor: User, data: Mapping[str, Any], endpoint: Endpoint | None = None) -> Endpoint:
    """Create (endpoint=None) or update an endpoint; a blank or absent secret keeps the one it has."""
    require_programme_office(actor)
    creating = endpoint is None
    endpoint = endpoint or Endpoint()
    for name in FIELDS:
        if name in data:
            setattr(endpoint, name, data[name])
    if data.get("secret"):
        endpoint.secret = data["secret"]
    endpoint.full_clean(exclude=["secret"])
    endpoint.save()
    changed = sorted(k for k in data if k in FIELDS or k == "secret")
    event_record(
        action="endpoint.created" if creating else "endpoint.updated",
        actor=actor,
        subject=endpoint.name,
        data={"endpoint": endpoint.pk, "fields": changed},
    )
    return endpoint


@transaction.atomic
def endpoint_delete(*, actor: User, endpoint: Endpoint) -> None:
    require_programme_office(actor)
    event_record(
        action="endpoint.deleted", actor=actor, subject=endpoint.name, data={"endpoint": endpoint.pk}
    )
    endpoint.delete()
