"""Token scopes: `read` for safe methods, `write` for the rest, `approve` for approving or rejecting a wave.
A browser session carries every scope; what a user may do is still the services' and selectors' decision."""

from rest_framework.permissions import SAFE_METHODS, BasePermission

from migrations_app.models import ApiToken

APPROVE_ACTIONS = {"approve", "reject"}


def required_scope(request, view) -> str:
    if request.method in SAFE_METHODS:
        return ApiToken.Scope.READ
    if getattr(view, "action", None) in APPROVE_ACTIONS:
        return ApiToken.Scope.APPROVE
    return ApiToken.Scope.WRITE


class TokenHasScope(BasePermission):
    message = "This token does not have the scope this request needs"
    code = "insufficient_scope"

    def has_permission(self, request, view) -> bool:
        token = request.auth
        if not isinstance(token, ApiToken):
            return True  # session authentication
        scope = required_scope(request, view)
        self.message = f"This token does not have the '{scope}' scope this request needs"
        return token.has_scope(scope)
