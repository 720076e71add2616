from django.contrib import admin
from django.urls import include, path

from migrations_app.views import health

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("migrations_app.api.urls")),
    path("", include("migrations_app.urls")),
]
