"""The public "I need help with my moved mailbox" form, beside "When does my mailbox move?". No sign-in.

Like the lookup it discloses nothing: every well-formed request gets the same thank-you page, whether or not
the address is a mailbox here (only a known address is stored, for its organisation). Rate-limited per client
IP in the shared cache."""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from migrations_app.forms_comms import HelpRequestForm
from migrations_app.ratelimit import Rate, client_ip, hit
from migrations_app.services.support import support_request_submit
from migrations_app.views._helpers import add_service_errors, error_summary_items, posted


@require_http_methods(["GET", "POST"])
def help_request(request):
    form = HelpRequestForm(*posted(request), initial={"email": request.GET.get("email", "")[:254]})
    status, sent = 200, False
    if request.method == "POST":
        limited = not hit("public-help", client_ip(request), Rate.parse(settings.PUBLIC_HELP_RATE)).allowed
        if limited:
            form.add_error(
                None, "You have sent too many requests. Try again later, or call your IT service desk."
            )
            status = 429
        elif form.is_valid():
            try:
                support_request_submit(**form.cleaned_data)
            except ValidationError as exc:
                add_service_errors(form, exc)
            else:
                sent = True
        if not sent and status == 200:
            status = 400
    response = render(
        request,
        "public/help.html",
        {"form": form, "sent": sent, "errors": error_summary_items(form)},
        status=status,
    )
    response["Cache-Control"] = "no-store"
    return response
