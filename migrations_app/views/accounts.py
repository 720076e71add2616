"""Signing in and out, and accepting an invitation (with a new local account when needed)."""

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView
from django.core.exceptions import ValidationError
from django.http import HttpResponseForbidden
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from migrations_app.forms import AccountCreateForm
from migrations_app.ratelimit import client_ip
from migrations_app.services.entra import SIGNED_IN_WITH_ENTRA, entra_enabled, entra_logout_url
from migrations_app.services.organisations import (
    account_create_and_accept_invitation,
    invitation_accept,
    invitation_for_token,
    invitation_problem,
)
from migrations_app.services.sign_in import sign_in_failed, sign_in_refusal, sign_in_succeeded
from migrations_app.views._helpers import add_service_errors, error_summary_items, posted


class SignInForm(AuthenticationForm):
    error_messages = {
        "invalid_login": "Enter a correct username and password. Both may be case-sensitive",
        "inactive": "This account is not active. Ask the programme office to reactivate it",
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["username"].error_messages["required"] = "Enter your username"
        self.fields["password"].error_messages["required"] = "Enter your password"


def _local_sign_in_allowed() -> bool:
    """With Entra ID configured, local passwords are off unless ENTRA_ALLOW_LOCAL_SIGN_IN (break-glass)."""
    return not entra_enabled() or settings.ENTRA["allow_local_sign_in"]


class SignInView(LoginView):
    template_name = "accounts/sign_in.html"
    authentication_form = SignInForm
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        if not _local_sign_in_allowed():
            return HttpResponseForbidden("Sign in with your Microsoft account")
        username = str(request.POST.get("username", ""))
        refusal = sign_in_refusal(username=username, address=client_ip(request))
        if refusal:
            form = self.get_form()
            form.errors.clear()
            form.add_error(None, refusal)
            return self.render_to_response(self.get_context_data(form=form), status=429)
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        if form.data.get("username") and form.data.get("password"):
            sign_in_failed(username=str(form.data["username"]), address=client_ip(self.request))
        return super().form_invalid(form)

    def form_valid(self, form):
        sign_in_succeeded(username=form.get_user().get_username())
        return super().form_valid(form)

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["errors"] = error_summary_items(context["form"])
        context["entra"] = entra_enabled()
        context["local_sign_in"] = _local_sign_in_allowed()
        if entra_enabled() and self.request.GET.get("signed_out") == "entra":
            context["entra_logout_url"] = entra_logout_url(
                post_logout_redirect_uri=self.request.build_absolute_uri(reverse("login"))
            )
        return context


@require_http_methods(["GET", "POST"])
def sign_out(request):
    """GET asks to confirm (a link must not sign anyone out); POST signs out (the whole session goes), and
    offers Entra's own sign-out to someone who came through Entra."""
    if request.method == "POST":
        through_entra = bool(request.session.get(SIGNED_IN_WITH_ENTRA))
        logout(request)
        if through_entra and entra_enabled():
            return redirect(f"{reverse('login')}?signed_out=entra")
        return redirect("login")
    if not request.user.is_authenticated:
        return redirect("login")
    return render(request, "accounts/sign_out.html")


def _after_accepting(request, organisation):
    messages.success(request, f"You are now an admin of {organisation.name}. Complete its enrolment below.")
    if organisation.status == organisation.Status.INVITED:
        return redirect(f"{reverse('organisation_enrol')}?ods_code={organisation.ods_code}")
    return redirect("organisation_detail", ods_code=organisation.ods_code)


@require_http_methods(["GET", "POST"])
def invitation_accept_view(request, token: str):
    """Signed in: a confirm button. Not signed in: create a local account, which accepts in the same step."""
    invitation = invitation_for_token(token)
    problem = invitation_problem(invitation)
    if problem:
        status = 404 if invitation is None else 410
        return render(request, "accounts/invitation_problem.html", {"problem": problem}, status=status)

    form = None
    if request.user.is_authenticated:
        if request.method == "POST":
            try:
                organisation = invitation_accept(token=token, user=request.user)
            except ValidationError as error:
                return render(
                    request, "accounts/invitation_problem.html", {"problem": error.messages[0]}, status=410
                )
            return _after_accepting(request, organisation)
    else:
        form = AccountCreateForm(posted(request)[0], initial={"email": invitation.email})
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                user = account_create_and_accept_invitation(
                    token=token,
                    email=data["email"],
                    password=data["password1"],
                    first_name=data["first_name"],
                    last_name=data["last_name"],
                )
            except ValidationError as error:
                add_service_errors(form, error, field_map={"token": None})
            else:
                login(request, user, backend="migrations_app.auth_backends.CachedModelBackend")
                return _after_accepting(request, invitation.organisation)

    return render(
        request,
        "accounts/invitation_accept.html",
        {"invitation": invitation, "form": form, "errors": error_summary_items(form)},
    )
