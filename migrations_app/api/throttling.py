"""Requests per user (all of a user's tokens and their browser session share one allowance, so minting more
tokens buys nothing) and, before authentication, per client address for requests that are anonymous or carry
a bad token. Counted atomically in the shared cache (migrations_app/ratelimit.py); answered 429 with
Retry-After."""

from django.conf import settings
from rest_framework import exceptions
from rest_framework.throttling import BaseThrottle

from migrations_app.ratelimit import Rate, client_ip, hit


class UserRateThrottle(BaseThrottle):
    def allow_request(self, request, view):
        if request.user and request.user.is_authenticated:
            result = hit("api-user", str(request.user.pk), Rate.parse(settings.API_THROTTLE_RATE))
        else:  # anonymous requests are counted by address_gate; views open to them are counted here too
            result = hit("api-address", client_ip(request), Rate.parse(settings.API_ANON_THROTTLE_RATE))
        self._wait = result.retry_after
        return result.allowed

    def wait(self):
        return self._wait


def address_count(request) -> None:
    """Count one anonymous or failed-authentication request for this address; 429 once over."""
    result = hit("api-address", client_ip(request), Rate.parse(settings.API_ANON_THROTTLE_RATE))
    if not result.allowed:
        raise exceptions.Throttled(wait=result.retry_after)
