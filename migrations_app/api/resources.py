"""Organisations, mailboxes, events, endpoints, import jobs and webhooks under /api/v1/. The same services and the same
scoping (selectors.scoping) as the pages; errors are problem+json (api/errors.py)."""

import csv
import io
import json
import re

from django.conf import settings
from django.core.files.base import ContentFile
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django_filters import rest_framework as filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.pagination import BasePagination, CursorPagination
from rest_framework.parsers import BaseParser
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from migrations_app.api.errors import Problem
from migrations_app.api.filters import IdFilter, IsoDateTimeFilter
from migrations_app.api.parsers import JSONParser
from migrations_app.api.serializers import (
    EndpointSerializer,
    EventSerializer,
    ImportJobSerializer,
    MailboxActionSerializer,
    MailboxSerializer,
    OrganisationEnrolSerializer,
    OrganisationSerializer,
    WebhookDeliverySerializer,
    WebhookSerializer,
)
from migrations_app.models import Endpoint, Event, ImportJob, Mailbox, Organisation, Webhook, WebhookDelivery
from migrations_app.selectors.feed import event_cursor, events_after
from migrations_app.selectors.scoping import (
    events_visible_to,
    import_jobs_visible_to,
    mailboxes_visible_to,
    organisations_visible_to,
    require_administer,
    require_programme_office,
    webhooks_visible_to,
)
from migrations_app.services.endpoints import endpoint_delete, endpoint_save
from migrations_app.services.execution import (
    mailbox_cancel,
    mailbox_pause,
    mailbox_resume,
    mailbox_retry,
    mailbox_rollback,
    mailbox_switch_confirm,
    mailbox_unswitch,
)
from migrations_app.services.imports import INVENTORY_OPTIONAL, INVENTORY_REQUIRED, import_job_create
from migrations_app.services.organisations import ContactData, organisation_enrol
from migrations_app.services.readiness.leavers import (
    leavers_in_file,
    leavers_retire,
    mailbox_reinstate,
    mailbox_retire,
)
from migrations_app.services.webhooks import webhook_create, webhook_delete, webhook_ping, webhook_update


class IdCursorPagination(CursorPagination):
    """Keyset paging on the primary key: page 10,000 is one index range scan, like page 1."""

    ordering = ("id",)
    page_size = 100
    max_page_size = 1000
    page_size_query_param = "page_size"


class OdsCodeCursorPagination(IdCursorPagination):
    ordering = ("ods_code",)


class CsvParser(BaseParser):
    """text/csv bodies reach the view as bytes, for the import service."""

    media_type = "text/csv"

    def parse(self, stream, media_type=None, parser_context=None):
        return stream.read()


# --- organisations ------------------------------------------------------------------------------------------


class OrganisationFilter(filters.FilterSet):
    parent = filters.CharFilter(field_name="parent__ods_code")

    class Meta:
        model = Organisation
        fields = ["status", "stage", "region", "kind"]


class OrganisationViewSet(mixins.CreateModelMixin, viewsets.ReadOnlyModelViewSet):
    """Organisations the caller may see; POST enrols one (organisation_enrol, as the enrolment page)."""

    serializer_class = OrganisationSerializer
    pagination_class = OdsCodeCursorPagination
    filterset_class = OrganisationFilter
    lookup_field = "ods_code"
    lookup_value_regex = "[A-Za-z0-9]{1,9}"

    def get_queryset(self):
        return organisations_visible_to(self.request.user).select_related("parent")

    def get_object(self):
        return get_object_or_404(self.get_queryset(), ods_code=self.kwargs["ods_code"].upper())

    @extend_schema(request=OrganisationEnrolSerializer, responses={201: OrganisationSerializer})
    def create(self, request, *args, **kwargs):
        body = OrganisationEnrolSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        parent = None
        if data["parent"]:
            parent = get_object_or_404(
                organisations_visible_to(request.user), ods_code=data["parent"].upper()
            )
        technical = data["technical_contact"]
        organisation = organisation_enrol(
            actor=request.user,
            ods_code=data["ods_code"],
            name=data["name"],
            kind=data["kind"],
            region=data["region"],
            parent=parent,
            primary_contact=ContactData(**data["primary_contact"]),
            technical_contact=ContactData(**technical) if technical else None,
            preferred_window=data["preferred_window"],
            gates=data["gates"],
            notes=data["notes"],
        )
        return Response(OrganisationSerializer(organisation).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request={
            "application/json": {"type": "array", "items": {"type": "object"}},
            "text/csv": OpenApiTypes.STR,
        },
        parameters=[
            OpenApiParameter("import_valid_rows", bool, description="import the good rows of a bad file")
        ],
        responses={200: ImportJobSerializer, 202: ImportJobSerializer},
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="mailboxes/bulk",
        url_name="mailboxes-bulk",
        parser_classes=[JSONParser, CsvParser],
    )
    def mailboxes_bulk(self, request, ods_code=None):
        """Upsert mailboxes from a JSON list of rows or a text/csv body, through the inventory import. More
        than API_BULK_INLINE_MAX_ROWS rows: 202 and an import job to poll."""
        organisation = self.get_object()
        require_administer(request.user, organisation)
        content, rows, is_json = _bulk_body(request)
        if rows > settings.API_BULK_MAX_ROWS:
            raise Problem(
                status_code=413,
                detail=f"At most {settings.API_BULK_MAX_ROWS} rows per request",
                code="too_many_rows",
            )
        inline = rows <= settings.API_BULK_INLINE_MAX_ROWS
        job = import_job_create(
            actor=request.user,
            organisation=organisation,
            kind=ImportJob.Kind.INVENTORY,
            uploaded_file=ContentFile(content, name=f"api-bulk-{organisation.ods_code}.csv"),
            import_valid_rows=request.query_params.get("import_valid_rows", "").lower()
            in {"1", "true", "yes"},
            inline=inline,
        )
        data = ImportJobSerializer(job, context={"request": request}).data
        if not inline:
            location = reverse("api:import-job-detail", args=[job.pk])
            return Response(data, status=status.HTTP_202_ACCEPTED, headers={"Location": location})
        if job.status == ImportJob.Status.REJECTED:
            # a JSON body's errors name the item by its index in the list, not a line of the CSV made from it
            errors = [_json_error(e) if is_json else e for e in job.errors]
            raise Problem(
                status_code=422,
                detail=f"Nothing was imported: {job.error_count} error(s) in the rows",
                code="import_rejected",
                import_job=job.pk,
                error_count=job.error_count,
                errors=errors,
            )
        if job.status == ImportJob.Status.FAILED:
            raise Problem(status_code=500, detail=job.failure, code="import_failed", import_job=job.pk)
        if request.query_params.get("complete", "").lower() in {"1", "true", "yes"}:
            # a complete inventory: preview who it leaves out; POST .../import-jobs/{id}/retire-leavers/ confirms
            with job.file.open("rb") as source:
                data["leavers"] = leavers_in_file(organisation=organisation, source=source).as_dict()
        return Response(data)


BULK_INITKWARGS = OrganisationViewSet.mailboxes_bulk.kwargs
BULK_COLUMNS = INVENTORY_REQUIRED + INVENTORY_OPTIONAL


def _json_error(error: dict) -> dict:
    """An import error of a JSON bulk body: `index` (0-based, in the list sent) instead of the CSV `line`; a
    file-level error (line 1, the header we wrote) names the whole body."""
    error = dict(error)
    line = error.pop("line")
    error["index"] = line - 2 if line >= 2 else None
    error["message"] = re.sub(r"line (\d+)", lambda m: f"item {int(m[1]) - 2}", error.get("message", ""))
    return error


def _bulk_body(request) -> tuple[bytes, int, bool]:
    """(CSV bytes for the import service, number of rows, whether the body was JSON)."""
    data = request.data
    if isinstance(data, bytes) and not data.strip() or isinstance(data, dict) and not data:
        # an empty body (DRF hands one over as {} without asking a parser): say so, at line 1, as the upload
        # page and the command do
        message = "The file is empty. Expected a header line with the columns " + ", ".join(
            INVENTORY_REQUIRED
        )
        raise Problem(
            status_code=422,
            detail="Nothing was imported: the body is empty",
            code="import_rejected",
            error_count=1,
            errors=[{"line": 1, "column": "", "value": "", "message": message}],
        )
    if isinstance(data, bytes):  # text/csv
        return data, max(0, len(data.splitlines()) - 1), False
    if isinstance(data, dict) and "rows" in data:
        data = data["rows"]
    if not isinstance(data, list) or not all(isinstance(row, dict) for row in data):
        raise exceptions.ValidationError(
            {"non_field_errors": ["Send a JSON list of mailbox objects, or text/csv"]}
        )
    if not data:
        raise Problem(
            status_code=422,
            detail="Nothing was imported: the list is empty",
            code="import_rejected",
            error_count=1,
            errors=[
                {
                    "index": None,
                    "column": "",
                    "value": "",
                    "message": "The list is empty: send at least one mailbox",
                }
            ],
        )
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(BULK_COLUMNS)
    for row in data:
        writer.writerow(
            [
                "" if row.get(c) is None else (json.dumps(row[c]) if isinstance(row[c], bool) else row[c])
                for c in BULK_COLUMNS
            ]
        )
    return out.getvalue().encode(), len(data), True


# --- mailboxes ---------------------------------------------------------------------------------------------


class MailboxFilter(filters.FilterSet):
    organisation = filters.CharFilter(method="by_ods_code", help_text="ODS code")
    wave = IdFilter("wave")
    updated_since = IsoDateTimeFilter(field_name="updated_at", lookup_expr="gte")
    checked_since = IsoDateTimeFilter(field_name="checked_at", lookup_expr="gte")
    checked_before = IsoDateTimeFilter(
        field_name="checked_at", lookup_expr="lt", help_text="last checked before this time"
    )
    never_checked = filters.BooleanFilter(field_name="checked_at", lookup_expr="isnull")

    class Meta:
        model = Mailbox
        fields = ["state", "wave", "kind", "last_error_code", "blocked_code", "cutover_step", "switch_status"]

    def by_ods_code(self, queryset, name, value):
        return queryset.filter(organisation__ods_code=value.strip().upper())


class MailboxViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = MailboxSerializer
    pagination_class = IdCursorPagination
    filterset_class = MailboxFilter

    def get_queryset(self):
        # only what the serializer shows: the execution columns (checkpoint JSON, lease, ...) stay unread
        fields = [f for f in MailboxSerializer.Meta.fields if f not in MailboxSerializer.COMPUTED]
        return (
            mailboxes_visible_to(self.request.user)
            .select_related("organisation")
            .only(*fields, "organisation__ods_code")
        )

    def _act(self, request, service):
        mailbox = self.get_object()
        body = MailboxActionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        mailbox = service(mailbox=mailbox, actor=request.user, reason=body.validated_data["reason"])
        return Response(MailboxSerializer(mailbox, context={"request": request}).data)

    @extend_schema(request=MailboxActionSerializer, responses=MailboxSerializer)
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        """Hold the mailbox; a copy in progress stops at its next checkpoint."""
        return self._act(request, mailbox_pause)

    @extend_schema(request=MailboxActionSerializer, responses=MailboxSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self._act(request, mailbox_resume)

    @extend_schema(request=MailboxActionSerializer, responses=MailboxSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Out of its wave, back to ready (not while it is being copied: pause first)."""
        return self._act(request, mailbox_cancel)

    @extend_schema(request=MailboxActionSerializer, responses=MailboxSerializer)
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        """A failed mailbox back to scheduled; its copy resumes from its checkpoint."""
        return self._act(request, mailbox_retry)

    @extend_schema(request=MailboxActionSerializer, responses=MailboxSerializer)
    @action(detail=True, methods=["post"])
    def rollback(self, request, pk=None):
        """Back to ready, out of its wave (a migrated mailbox needs a reason). A switched mailbox is switched
        back first: the response shows it `unswitching` until its source receives its mail again."""
        return self._act(request, mailbox_rollback)

    @extend_schema(request=MailboxActionSerializer, responses=MailboxSerializer)
    @action(detail=True, methods=["post"])
    def retire(self, request, pk=None):
        """A leaver: kept with its history, never planned (a reason is required; refused while in flight)."""
        return self._act(request, mailbox_retire)

    @extend_schema(request=MailboxActionSerializer, responses=MailboxSerializer)
    @action(detail=True, methods=["post"])
    def reinstate(self, request, pk=None):
        """A retired mailbox back to inventoried (check it again before it is planned)."""
        return self._act(request, mailbox_reinstate)

    @extend_schema(request=MailboxActionSerializer, responses=MailboxSerializer)
    @action(detail=True, methods=["post"], url_path="switch-confirm", url_name="switch-confirm")
    def switch_confirm(self, request, pk=None):
        """Confirm that the mailbox's mail now goes where the portal asked (the webhook and manual switch
        methods): a waiting switch goes on to its catch-up delta, a waiting switch back completes its roll
        back. For the trust's own automation, with a token of one of the organisation's admins."""
        return self._act(request, mailbox_switch_confirm)

    @extend_schema(request=MailboxActionSerializer, responses=MailboxSerializer)
    @action(detail=True, methods=["post"])
    def unswitch(self, request, pk=None):
        """Switch the mailbox's mail back to the source, then roll it back (a reason is required)."""
        return self._act(request, mailbox_unswitch)


# --- events --------------------------------------------------------------------------------------------------


MAX_EVENT_ID = 2**63 - 1  # event ids are a bigint sequence


class AfterIdPagination(BasePagination):
    """`?after=<id>`: the next events after the last one the caller has seen, in the feed's order (the order
    their transactions began, which is id order except where workers committed concurrently). `next` is the
    link to follow (it stays valid: events are append-only). Only events below the visibility horizon are
    served, so one that commits late is never skipped (selectors/feed.py)."""

    page_size = 100
    max_page_size = 1000

    def paginate_queryset(self, queryset, request, view=None):
        try:
            after = int(request.query_params.get("after", 0) or 0)
            size = min(int(request.query_params.get("page_size", self.page_size)), self.max_page_size)
        except ValueError:
            raise exceptions.ValidationError({"after": ["Send the id of the last event you have"]}) from None
        if abs(after) > MAX_EVENT_ID:  # beyond a bigint the database refuses the number itself
            raise exceptions.ValidationError({"after": ["Send the id of the last event you have"]})
        self.request = request
        txid, event_id = event_cursor(after)
        self.page = list(events_after(queryset, txid=txid, event_id=event_id)[: max(size, 1)])
        self.last = self.page[-1].pk if self.page else after
        return self.page

    def get_paginated_response(self, data):
        url = replace_query_param(self.request.build_absolute_uri(), "after", self.last)
        return Response({"next": url, "after": self.last, "results": data})

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["next", "after", "results"],
            "properties": {
                "next": {"type": "string", "format": "uri"},
                "after": {"type": "integer"},
                "results": schema,
            },
        }

    def get_schema_operation_parameters(self, view):
        return [
            {"name": "after", "in": "query", "required": False, "schema": {"type": "integer"}},
            {"name": "page_size", "in": "query", "required": False, "schema": {"type": "integer"}},
        ]


class EventFilter(filters.FilterSet):
    organisation = filters.CharFilter(method="by_ods_code", help_text="ODS code")
    wave = IdFilter("wave")
    mailbox = IdFilter("mailbox")

    class Meta:
        model = Event
        fields = ["action", "wave", "mailbox"]

    def by_ods_code(self, queryset, name, value):
        return queryset.filter(organisation__ods_code=value.strip().upper())


class EventViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = EventSerializer
    pagination_class = AfterIdPagination
    filterset_class = EventFilter

    def get_queryset(self):
        return events_visible_to(self.request.user).select_related("actor", "organisation")


# --- endpoints ----------------------------------------------------------------------------------------------


class EndpointViewSet(viewsets.ModelViewSet):
    """Programme office only. `secret` is write-only: it is never returned."""

    serializer_class = EndpointSerializer
    pagination_class = IdCursorPagination
    queryset = Endpoint.objects.none()

    def get_queryset(self):
        require_programme_office(self.request.user)
        return Endpoint.objects.all()

    def perform_create(self, serializer):
        serializer.instance = endpoint_save(actor=self.request.user, data=serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = endpoint_save(
            actor=self.request.user, data=serializer.validated_data, endpoint=serializer.instance
        )

    def perform_destroy(self, instance):
        endpoint_delete(actor=self.request.user, endpoint=instance)


# --- import jobs --------------------------------------------------------------------------------------------


class ImportJobViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = ImportJobSerializer
    pagination_class = IdCursorPagination

    def get_queryset(self):
        return import_jobs_visible_to(self.request.user).select_related("organisation")

    @extend_schema(request=MailboxActionSerializer, responses=dict)
    @action(detail=True, methods=["post"], url_path="retire-leavers", url_name="retire-leavers")
    def retire_leavers(self, request, pk=None):
        """Confirm a complete inventory: retire the organisation's mailboxes its file leaves out (a reason is
        required; mailboxes being moved are left as they are and listed)."""
        job = self.get_object()
        if not (
            job.kind == ImportJob.Kind.INVENTORY
            and job.status == ImportJob.Status.SUCCEEDED
            and job.organisation is not None
            and job.file  # its file is what says who stays (a job whose file is gone cannot)
        ):
            raise Problem(
                status_code=409,
                detail="Only a successful inventory import of one organisation can retire leavers",
                code="not_a_complete_inventory",
            )
        body = MailboxActionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        with job.file.open("rb") as source:
            done = leavers_retire(
                organisation=job.organisation,
                actor=request.user,
                source=source,
                reason=body.validated_data["reason"],
            )
        return Response({"retired": len(done.retirable), **done.as_dict()})


# --- webhooks -------------------------------------------------------------------------------------------------


class NewestFirstCursorPagination(IdCursorPagination):
    ordering = ("-id",)


class WebhookViewSet(viewsets.ModelViewSet):
    """An organisation's outbound webhooks (/organisations/{ods_code}/webhooks/), for those who administer
    it. `secret` is write-only. The delivery log is read-only; `ping` sends a test message."""

    serializer_class = WebhookSerializer
    pagination_class = IdCursorPagination
    filter_backends: list = []
    lookup_value_regex = "[0-9]+"

    def organisation(self) -> Organisation:
        if not hasattr(self, "_organisation"):
            self._organisation = get_object_or_404(
                organisations_visible_to(self.request.user), ods_code=self.kwargs["ods_code"].upper()
            )
            require_administer(self.request.user, self._organisation)
        return self._organisation

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation
            return Webhook.objects.none()
        return webhooks_visible_to(self.request.user).filter(organisation=self.organisation())

    def perform_create(self, serializer):
        serializer.instance = webhook_create(
            actor=self.request.user, organisation=self.organisation(), **serializer.validated_data
        )

    def perform_update(self, serializer):
        serializer.instance = webhook_update(
            actor=self.request.user, webhook=serializer.instance, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        webhook_delete(actor=self.request.user, webhook=instance)

    @extend_schema(request=None, responses={202: WebhookDeliverySerializer})
    @action(detail=True, methods=["post"])
    def ping(self, request, ods_code=None, pk=None):
        """Send a test message now (a worker sends it; follow it in the delivery log)."""
        delivery = webhook_ping(actor=request.user, webhook=self.get_object())
        return Response(WebhookDeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=WebhookDeliverySerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=NewestFirstCursorPagination)
    def deliveries(self, request, ods_code=None, pk=None):
        """The delivery log, newest first: every message, its attempts and the receiver's last answer."""
        webhook = self.get_object()
        paginator = NewestFirstCursorPagination()
        page = paginator.paginate_queryset(
            WebhookDelivery.objects.filter(webhook=webhook), request, view=self
        )
        return paginator.get_paginated_response(WebhookDeliverySerializer(page, many=True).data)
