from django.conf import settings
from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerSplitView

from migrations_app.api.schema import ViewableSchemaView
from migrations_app.views import health

# The admin's own login form would be a second door that ignores the portal's rules (Entra only, lockout):
# anyone not signed in is sent to the portal's sign-in page instead.
admin.site.login = login_required(admin.site.login)

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    # browsers ask for it on pages that name none (the JSON of /healthz, the API's): the NHS.UK one
    path("favicon.ico", RedirectView.as_view(url=f"{settings.STATIC_URL}nhsuk/assets/images/favicon.ico")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("migrations_app.api.urls")),
    path("api/schema/", ViewableSchemaView.as_view(), name="schema"),
    path("api/schema/swagger/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="swagger-ui"),
    path(
        "api/schema/redoc/",
        SpectacularRedocView.as_view(url_name="schema", template_name="api_docs/redoc.html"),
        name="redoc",
    ),
    path("", include("migrations_app.urls")),
]

# problem+json for unknown /api/ URLs and server errors there; the usual pages elsewhere
handler404 = "migrations_app.api.errors.page_not_found"
handler500 = "migrations_app.api.errors.server_error"
