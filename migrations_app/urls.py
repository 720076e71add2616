from django.urls import path

from migrations_app.views import pages

urlpatterns = [
    path("", pages.home, name="home"),
    # placeholders filled in by the pages work; named here so base.html can link to them
    path("organisations/", pages.home, name="organisation_list"),
    path("imports/", pages.home, name="import_list"),
    path("affinity/", pages.home, name="affinity_report"),
    path("sign-out/", pages.home, name="sign_out"),
]
