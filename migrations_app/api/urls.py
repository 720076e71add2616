"""/api/v1/: waves and their actions, the planner, decisions; session sign-in for the browsable API."""

from django.urls import include, path
from rest_framework.routers import DefaultRouter

from migrations_app.api import views

app_name = "api"

router = DefaultRouter()
router.register("waves", views.WaveViewSet, basename="wave")
router.register("decisions", views.DecisionViewSet, basename="decision")

urlpatterns = [
    path("planner/preview/", views.planner_preview, name="planner-preview"),
    path("planner/commit/", views.planner_commit, name="planner-commit"),
    path("planner/pilot/", views.planner_pilot, name="planner-pilot"),
    path("auth/", include("rest_framework.urls", namespace="rest_framework")),
    path("", include(router.urls)),
]
