"""Requests per token (or per signed-in user for the browsable API), answered with 429 and Retry-After."""

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from migrations_app.models import ApiToken


class TokenRateThrottle(SimpleRateThrottle):
    scope = "token"

    def get_rate(self):
        # Read at request time (not class definition), so settings and tests can change it.
        return settings.API_THROTTLE_RATE

    def get_cache_key(self, request, view):
        if isinstance(request.auth, ApiToken):
            ident = f"token:{request.auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}
