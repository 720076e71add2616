"""Sign-in with Entra ID: send the browser to Microsoft, take it back, sign the person in (services.entra)."""

from django.contrib.auth import login
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET

from migrations_app.services.entra import (
    SIGNED_IN_WITH_ENTRA,
    EntraSignInError,
    entra_enabled,
    entra_sign_in_complete,
    entra_sign_in_start,
)


def _safe_next(request, url: str) -> str:
    if url and url_has_allowed_host_and_scheme(url, {request.get_host()}, request.is_secure()):
        return url
    return reverse("home")


@require_GET
def entra_start(request):
    if not entra_enabled():
        raise Http404("Entra ID sign-in is not configured")
    try:
        auth_uri = entra_sign_in_start(
            session=request.session,
            redirect_uri=request.build_absolute_uri(reverse("entra_callback")),
            next_url=request.GET.get("next", ""),
        )
    except EntraSignInError as error:
        return _refused(request, error)
    return redirect(auth_uri)


_STATUS = {"no_role": 403, "inactive": 403, "unavailable": 503}


def _refused(request, error: EntraSignInError):
    status = _STATUS.get(error.reason, 400)
    return render(request, "accounts/entra_refused.html", {"error": error}, status=status)


@require_GET
def entra_callback(request):
    if not entra_enabled():
        raise Http404("Entra ID sign-in is not configured")
    try:
        user, next_url = entra_sign_in_complete(session=request.session, auth_response=request.GET.dict())
    except EntraSignInError as error:
        return _refused(request, error)
    login(request, user, backend="migrations_app.auth_backends.CachedModelBackend")  # rotates the session key
    request.session[SIGNED_IN_WITH_ENTRA] = True
    return redirect(_safe_next(request, next_url))
