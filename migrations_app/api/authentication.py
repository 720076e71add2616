"""`Authorization: Bearer <token>` for scripts. The token's scopes are checked by api.permissions."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from migrations_app.api.throttling import address_count
from migrations_app.services.tokens import token_authenticate


class AddressGate(authentication.BaseAuthentication):
    """First in the list: an anonymous request (no Authorization header, no signed-in session) is counted
    against its address and refused with 429 once the address has spent its allowance. DRF's throttles run
    after authentication and permissions, so they never saw these requests (nor failed tokens: those are
    counted by BearerTokenAuthentication). A valid token from the same address is not held up by them."""

    def authenticate(self, request):
        header = authentication.get_authorization_header(request)
        session_user = getattr(request._request, "user", None)
        if not header and not (session_user and session_user.is_authenticated):
            address_count(request)
        return None

    def authenticate_header(self, request):
        return BearerTokenAuthentication.keyword  # 401 with WWW-Authenticate: Bearer, as before


class BearerTokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        keyword, _, raw = header.partition(" ")
        if keyword.lower() != self.keyword.lower():
            return None
        raw = raw.strip()
        if not raw:
            address_count(request)
            raise exceptions.AuthenticationFailed("No token after Bearer", code="token_invalid")
        token = token_authenticate(raw)
        if token is None:
            address_count(request)  # guessing tokens costs the guesser's address its allowance
            raise exceptions.AuthenticationFailed(
                "The token is unknown, revoked or expired", code="token_invalid"
            )
        return token.user, token

    def authenticate_header(self, request):
        return self.keyword


class BearerTokenScheme(OpenApiAuthenticationExtension):
    target_class = BearerTokenAuthentication
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "An API token made under 'API tokens'"}


class AddressGateScheme(OpenApiAuthenticationExtension):
    """AddressGate only counts: it is no way of authenticating, so the schema shows nothing for it."""

    target_class = AddressGate
    name: list[str] = []

    def get_security_requirement(self, auto_schema):
        return None

    def get_security_definition(self, auto_schema):
        return []
