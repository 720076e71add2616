"""Readiness under /api/v1/: start an organisation's readiness check (202 and a check to poll), read a check,
close an organisation. The same services and scoping as the pages; refusals are problem+json."""

from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import status, viewsets
from rest_framework.decorators import api_view
from rest_framework.response import Response

from migrations_app.api.serializers import (
    OrganisationCloseSerializer,
    OrganisationSerializer,
    ReadinessCheckRequestSerializer,
    ReadinessCheckSerializer,
)
from migrations_app.models import Mailbox
from migrations_app.selectors.scoping import organisations_visible_to, readiness_checks_visible_to
from migrations_app.services.readiness.checks import readiness_check_start
from migrations_app.services.readiness.stages import organisation_close


def _organisation(request, ods_code: str):
    return get_object_or_404(organisations_visible_to(request.user), ods_code=ods_code.upper())


@extend_schema(request=ReadinessCheckRequestSerializer, responses={202: ReadinessCheckSerializer})
@api_view(["POST"])
def organisation_readiness_checks(request, ods_code: str):
    """Start a readiness check of the organisation's mailboxes (all, or the ids in `mailboxes`): 202 with the
    check's `Location`; poll it until `status` is succeeded. A check already running is returned instead."""
    organisation = _organisation(request, ods_code)
    body = ReadinessCheckRequestSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    ids = body.validated_data.get("mailboxes")
    if ids is not None:
        theirs = Mailbox.objects.filter(pk__in=ids, organisation=organisation).count()
        if theirs != len(set(ids)):
            raise PermissionDenied(f"Some of those mailboxes are not {organisation.ods_code}'s")
        check = readiness_check_start(actor=request.user, mailbox_ids=ids)
    else:
        check = readiness_check_start(actor=request.user, organisation=organisation)
    location = reverse("api:readiness-check-detail", args=[check.pk])
    data = ReadinessCheckSerializer(check).data
    return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Location": location})


class ReadinessCheckViewSet(viewsets.ReadOnlyModelViewSet):
    """Readiness checks the caller may see: `status` (queued, running, succeeded, failed) and `counts`."""

    serializer_class = ReadinessCheckSerializer

    def get_queryset(self):
        return readiness_checks_visible_to(self.request.user).select_related("organisation").order_by("-id")


@extend_schema(request=OrganisationCloseSerializer, responses=OrganisationSerializer)
@api_view(["POST"])
def organisation_close_view(request, ods_code: str):
    """The programme office closes an organisation (every mailbox migrated or retired), with a reason."""
    organisation = _organisation(request, ods_code)
    body = OrganisationCloseSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    organisation = organisation_close(
        organisation=organisation, actor=request.user, reason=body.validated_data["reason"]
    )
    return Response(OrganisationSerializer(organisation).data)


__all__ = ["ReadinessCheckViewSet", "organisation_close_view", "organisation_readiness_checks"]
