"""/api/v1/: organisations (and their webhooks), mailboxes, events, endpoints, import jobs, waves and their actions, the planner,
decisions. Bearer tokens for scripts; the portal's own session for the browsable API. There is deliberately no
DRF login route (rest_framework.urls): every way in is the portal's sign-in page, with its rules (Entra only when
local sign-in is off, lockout after failures)."""

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from migrations_app.api import readiness, resources, support, views

app_name = "api"

webhooks = resources.WebhookViewSet
router = DefaultRouter()
router.register("organisations", resources.OrganisationViewSet, basename="organisation")
router.register("mailboxes", resources.MailboxViewSet, basename="mailbox")
router.register("events", resources.EventViewSet, basename="event")
router.register("endpoints", resources.EndpointViewSet, basename="endpoint")
router.register("import-jobs", resources.ImportJobViewSet, basename="import-job")
router.register("waves", views.WaveViewSet, basename="wave")
router.register("decisions", views.DecisionViewSet, basename="decision")
router.register("readiness-checks", readiness.ReadinessCheckViewSet, basename="readiness-check")

urlpatterns = [
    # as the issue spells it, without the router's trailing slash
    path(
        "organisations/<str:ods_code>/mailboxes/bulk",
        resources.OrganisationViewSet.as_view({"post": "mailboxes_bulk"}, **resources.BULK_INITKWARGS),
        name="organisation-mailboxes-bulk-noslash",
    ),
    # an organisation's webhooks, nested under it (DRF's router does not nest)
    path(
        "organisations/<str:ods_code>/webhooks/",
        webhooks.as_view({"get": "list", "post": "create"}),
        name="webhook-list",
    ),
    path(
        "organisations/<str:ods_code>/webhooks/<int:pk>/",
        webhooks.as_view(
            {"get": "retrieve", "put": "update", "patch": "partial_update", "delete": "destroy"}
        ),
        name="webhook-detail",
    ),
    path(
        "organisations/<str:ods_code>/webhooks/<int:pk>/ping/",
        webhooks.as_view({"post": "ping"}, **webhooks.ping.kwargs),
        name="webhook-ping",
    ),
    path(
        "organisations/<str:ods_code>/webhooks/<int:pk>/deliveries/",
        webhooks.as_view({"get": "deliveries"}, **webhooks.deliveries.kwargs),
        name="webhook-deliveries",
    ),
    path(
        "organisations/<str:ods_code>/readiness-checks/",
        readiness.organisation_readiness_checks,
        name="organisation-readiness-checks",
    ),
    path("organisations/<str:ods_code>/close/", readiness.organisation_close_view, name="organisation-close"),
    # support: a trust's service-desk tickets, and the support rates
    path("organisations/<str:ods_code>/support-tickets/", support.support_tickets, name="support-tickets"),
    path(
        "organisations/<str:ods_code>/support/",
        support.organisation_support_rates,
        name="organisation-support",
    ),
    path("waves/<int:pk>/support/", support.wave_support_rates, name="wave-support"),
    path("support/", support.programme_support_rates, name="programme-support"),
    path("planner/preview/", views.planner_preview, name="planner-preview"),
    path("planner/commit/", views.planner_commit, name="planner-commit"),
    path("planner/pilot/", views.planner_pilot, name="planner-pilot"),
    path("failures/retry/", views.failures_retry_view, name="failures-retry"),
    path("", include(router.urls)),
]
