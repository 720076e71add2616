"""API token pages: a user's own tokens, making one (its value shown once, on the response to the POST, never
again), revoking one."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from migrations_app.forms import ApiTokenForm
from migrations_app.services.tokens import token_create, token_revoke, token_scopes_for
from migrations_app.views._helpers import add_service_errors, error_summary_items, posted

NAV = "tokens"


@login_required
@require_http_methods(["GET", "POST"])
def token_list(request):
    scopes = token_scopes_for(request.user)
    form = ApiTokenForm(posted(request)[0], scopes=scopes)
    raw = None
    if request.method == "POST" and form.is_valid():
        try:
            token, raw = token_create(
                user=request.user,
                name=form.cleaned_data["name"],
                scopes=form.cleaned_data["scopes"],
                expires_at=form.expires_at(),
            )
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            form = ApiTokenForm(scopes=scopes)
    context = {
        "nav": NAV,
        "form": form,
        "errors": error_summary_items(form),
        "raw_token": raw,
        "tokens": list(request.user.api_tokens.all()),
        "now": timezone.now(),
    }
    response = render(request, "tokens/list.html", context)
    if raw:
        response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def token_revoke_view(request, pk: int):
    token = get_object_or_404(request.user.api_tokens, pk=pk)
    token_revoke(token=token, actor=request.user)
    messages.success(request, f"Token '{token.name}' revoked")
    return redirect("token_list")
