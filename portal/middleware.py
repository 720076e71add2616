"""Error pages that are the same under `make run` (DEBUG=1) as in production."""

from django.conf import settings


class DebugErrorPagesMiddleware:
    """With DEBUG on, Django answers a 404 with its technical page, which lists every URL pattern: a trust admin
    opening another organisation's page saw the portal's routes, and an unknown /api/ URL answered HTML where
    README promises problem+json. Such a 404 is replaced by the answer production gives (handler404). Django's
    own debug page for a 500 is kept: that one is for the developer."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            settings.DEBUG
            and response.status_code == 404
            and not getattr(response, "portal_error_page", False)
            and response.get("Content-Type", "").startswith("text/html")
        ):
            from migrations_app.api.errors import page_not_found

            return page_not_found(request, None)
        return response
