"""The wave, planner and decision API. Each view validates, calls one service, returns; scoping comes from
the selectors, permissions from the services (PermissionDenied -> 403). A service's ValidationError is a
400, WaveConflict (someone acted first) a 409, an unknown or invisible wave a 404."""

from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions as drf_exceptions
from rest_framework import status, viewsets
from rest_framework.decorators import action, api_view
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response

from migrations_app.api.errors import Conflict, Problem, problem_exception_handler
from migrations_app.api.filters import IdFilter, IsoDateTimeFilter
from migrations_app.api.serializers import (
    ActionSerializer,
    DecisionSerializer,
    MoveOrganisationSerializer,
    MoveResultSerializer,
    PilotRequestSerializer,
    PlaceCarriedOverSerializer,
    PlanRequestSerializer,
    RetryFailuresSerializer,
    WaveMailboxSerializer,
    WaveOrganisationSerializer,
    WaveSerializer,
    plan_as_data,
)
from migrations_app.models import Decision, Organisation, Wave
from migrations_app.selectors.scoping import organisations_visible_to, require_planner
from migrations_app.selectors.waves import (
    decisions_visible_to,
    wave_members,
    wave_organisation_rows,
    wave_organisation_totals,
    waves_visible_to,
)
from migrations_app.services.execution import wave_retry_failures
from migrations_app.services.failures import failures_retry
from migrations_app.services.pilots import pilot_wave_create
from migrations_app.services.plans import plan_commit, plan_preview
from migrations_app.services.wave_moves import wave_move_organisation, wave_place_carried_over
from migrations_app.services.waves import wave_act


def _service_error(error: ValidationError) -> Response:
    """A service's ValidationError as problem+json: WaveConflict a 409, anything else a 400."""
    return problem_exception_handler(error, {})


class WavePagination(CursorPagination):
    ordering = ("starts_at", "id")
    page_size = 50
    max_page_size = 500
    page_size_query_param = "page_size"


class IdPagination(CursorPagination):
    ordering = ("id",)
    page_size = 100
    max_page_size = 1000
    page_size_query_param = "page_size"


class WaveFilter(filters.FilterSet):
    starts_after = IsoDateTimeFilter(field_name="starts_at", lookup_expr="gte")
    starts_before = IsoDateTimeFilter(field_name="starts_at", lookup_expr="lt")

    class Meta:
        model = Wave
        fields = ["status", "kind", "is_pilot"]


class WaveViewSet(viewsets.ReadOnlyModelViewSet):
    """Waves the caller may see; actions are POST sub-routes (propose, go, no-go, approve, reject, pause,
    resume, cancel)."""

    serializer_class = WaveSerializer
    pagination_class = WavePagination
    filterset_class = WaveFilter

    def get_queryset(self):
        return waves_visible_to(self.request.user).select_related("proposed_by", "approved_by")

    def retrieve(self, request, *args, **kwargs):
        wave = self.get_object()
        data = WaveSerializer(wave, context={"request": request}).data
        by_org = wave_organisation_totals(wave)  # one pass over the members serves both
        data["totals"] = {
            "mailboxes": sum(n for n, _ in by_org.values()),
            "bytes": sum(b for _, b in by_org.values()),
        }
        rows = wave_organisation_rows(wave, request.user, by_org)
        data["organisations"] = WaveOrganisationSerializer(rows, many=True).data
        return Response(data)

    def _act(self, request, name: str):
        wave = self.get_object()
        body = ActionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        organisation = None
        if body.validated_data["organisation"]:
            organisation = get_object_or_404(
                organisations_visible_to(request.user), ods_code=body.validated_data["organisation"].upper()
            )
        try:
            wave_act(
                wave=wave,
                action=name,
                actor=request.user,
                reason=body.validated_data["reason"],
                organisation=organisation,
            )
        except ValidationError as error:
            return _service_error(error)
        wave = Wave.objects.get(pk=wave.pk)
        return Response(WaveSerializer(wave, context={"request": request}).data)

    @extend_schema(request=ActionSerializer, responses=WaveSerializer)
    @action(detail=True, methods=["post"])
    def propose(self, request, pk=None):
        return self._act(request, "propose")

    @extend_schema(request=ActionSerializer, responses=WaveSerializer)
    @action(detail=True, methods=["post"])
    def go(self, request, pk=None):
        return self._act(request, "go")

    @extend_schema(request=ActionSerializer, responses=WaveSerializer)
    @action(detail=True, methods=["post"], url_path="no-go", url_name="no-go")
    def no_go(self, request, pk=None):
        return self._act(request, "no-go")

    @extend_schema(request=ActionSerializer, responses=WaveSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        return self._act(request, "approve")

    @extend_schema(request=ActionSerializer, responses=WaveSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        return self._act(request, "reject")

    @extend_schema(request=ActionSerializer, responses=WaveSerializer)
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        return self._act(request, "pause")

    @extend_schema(request=ActionSerializer, responses=WaveSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self._act(request, "resume")

    @extend_schema(request=ActionSerializer, responses=WaveSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        return self._act(request, "cancel")

    @extend_schema(request=RetryFailuresSerializer, responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"], url_path="retry-failures", url_name="retry-failures")
    def retry_failures(self, request, pk=None):
        """Retry every failed mailbox of the wave with this error code (programme office)."""
        wave = self.get_object()
        body = RetryFailuresSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        retried = wave_retry_failures(wave=wave, actor=request.user, **body.validated_data)
        return Response({"retried": retried})

    @extend_schema(request=PlaceCarriedOverSerializer, responses={200: OpenApiTypes.OBJECT})
    @action(detail=True, methods=["post"], url_path="place-carried-over", url_name="place-carried-over")
    def place_carried_over(self, request, pk=None):
        """Place the mailboxes this wave carried over in another wave (programme office). With warnings
        and no confirm, nothing moves: the answer lists the warnings."""
        wave = self.get_object()
        body = PlaceCarriedOverSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        target = get_object_or_404(self.get_queryset(), pk=body.validated_data["target_wave"])
        try:
            result = wave_place_carried_over(
                actor=request.user, source=wave, target=target, confirm=body.validated_data["confirm"]
            )
        except ValidationError as error:
            return _service_error(error)
        return Response({"placed": result.moved, "warnings": result.warnings})

    @extend_schema(request=MoveOrganisationSerializer)
    @extend_schema(request=MoveOrganisationSerializer, responses=MoveResultSerializer)
    @action(detail=True, methods=["post"], url_path="move-organisation", url_name="move-organisation")
    def move_organisation(self, request, pk=None):
        wave = self.get_object()
        body = MoveOrganisationSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        organisation = get_object_or_404(
            organisations_visible_to(request.user), ods_code=body.validated_data["organisation"].upper()
        )
        target = get_object_or_404(self.get_queryset(), pk=body.validated_data["target"])
        try:
            result = wave_move_organisation(
                actor=request.user,
                organisation=organisation,
                source=wave,
                target=target,
                confirm=body.validated_data["confirm"],
            )
        except ValidationError as error:
            return _service_error(error)
        if not result.moved:
            raise Problem(
                status_code=status.HTTP_409_CONFLICT,
                detail="The move has warnings: send confirm=true to move anyway",
                code="move_has_warnings",
                moved=False,
                warnings=result.warnings,
            )
        return Response({"moved": result.moved, "warnings": result.warnings})

    @extend_schema(responses=WaveMailboxSerializer(many=True))
    @action(detail=True, methods=["get"])
    def mailboxes(self, request, pk=None):
        """The wave's mailboxes the caller may see (through the one membership selector), by id."""
        wave = self.get_object()
        members = wave_members(wave)
        if not (request.user.is_programme_office or request.user.is_viewer):
            members = members.filter(organisation__in=organisations_visible_to(request.user))
        paginator = IdPagination()
        page = paginator.paginate_queryset(members.select_related("organisation"), request, view=self)
        return paginator.get_paginated_response(
            [
                {
                    "id": m.pk,
                    "email": m.email,
                    "organisation": m.organisation.ods_code,
                    "state": m.state,
                    "size_bytes": m.size_bytes,
                    "affinity_group": m.affinity_group,
                }
                for m in page
            ]
        )


class DecisionFilter(filters.FilterSet):
    organisation = filters.CharFilter(field_name="organisation__ods_code")
    wave = IdFilter("wave")

    class Meta:
        model = Decision
        fields = ["wave", "kind"]


class DecisionViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = DecisionSerializer
    pagination_class = IdPagination
    filterset_class = DecisionFilter

    def get_queryset(self):
        return decisions_visible_to(self.request.user).select_related("organisation", "actor")


def _plan_request(request) -> PlanRequestSerializer:
    body = PlanRequestSerializer(data=request.data if request.method == "POST" else request.query_params)
    body.is_valid(raise_exception=True)
    return body


@extend_schema(request=PlanRequestSerializer, responses=dict)
@api_view(["GET", "POST"])
def planner_preview(request):
    """The plan from `start` for every ready mailbox in no wave: waves, counts, bytes, forecast finish, and
    what could not be placed with the reason. Saves nothing."""
    require_planner(request.user)
    body = _plan_request(request)
    plan = plan_preview(start=body.validated_data["start"], actor=request.user)
    return Response(plan_as_data(plan))


@extend_schema(request=PlanRequestSerializer, responses={201: dict})
@api_view(["POST"])
def planner_commit(request):
    """Save the plan as draft waves (replacing drafts nobody has proposed). Pass the preview's fingerprint to
    refuse a plan that changed since (409)."""
    require_planner(request.user)
    body = _plan_request(request)
    try:
        plan, waves = plan_commit(
            start=body.validated_data["start"],
            actor=request.user,
            expected_fingerprint=body.validated_data["fingerprint"],
        )
    except ValidationError as error:
        raise Conflict(detail=" ".join(error.messages)) from None
    data = plan_as_data(plan)
    data["waves"] = WaveSerializer(waves, many=True, context={"request": request}).data
    return Response(data, status=status.HTTP_201_CREATED)


@extend_schema(request=PilotRequestSerializer, responses={201: WaveSerializer})
@api_view(["POST"])
def planner_pilot(request):
    """A pilot wave: a handful of ready mailboxes from each named organisation."""
    require_planner(request.user)
    body = PilotRequestSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    codes = [c.strip().upper() for c in body.validated_data["organisations"]]
    organisations = list(Organisation.objects.filter(ods_code__in=codes))
    unknown = sorted(set(codes) - {o.ods_code for o in organisations})
    if unknown:
        raise drf_exceptions.ValidationError(
            {"organisations": [f"Unknown ODS code(s): {', '.join(unknown)}"]}
        )
    try:
        wave = pilot_wave_create(
            actor=request.user,
            starts_on=body.validated_data["starts_on"],
            kind=body.validated_data["kind"],
            organisations=organisations,
            per_organisation=body.validated_data.get("per_organisation"),
        )
    except ValidationError as error:
        return _service_error(error)
    return Response(WaveSerializer(wave, context={"request": request}).data, status=status.HTTP_201_CREATED)


@extend_schema(request=RetryFailuresSerializer, responses={200: OpenApiTypes.OBJECT})
@api_view(["POST"])
def failures_retry_view(request):
    """Retry every failed mailbox with this error code across the whole programme (programme office), once
    its cause is fixed. The same service as the failures page; set-based."""
    body = RetryFailuresSerializer(data=request.data)
    body.is_valid(raise_exception=True)
    return Response({"retried": failures_retry(actor=request.user, **body.validated_data)})
