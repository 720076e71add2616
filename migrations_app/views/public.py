"""The public page, no sign-in: "when does my mailbox move?". An address in; its window and its state out,
nothing else (no name, no organisation, no error).

It must not tell anyone who has a mailbox here: an address we do not know gets exactly the answer an address
not yet in a wave gets (same template, same fields, "not scheduled yet"), after the same queries, so neither
the page nor its timing separates them. Lookups are rate-limited per client IP, with a burst (a trust's staff
behind one NAT share an address) and a longer window, and by a global limit for everyone together, counted
atomically in the shared cache (migrations_app/ratelimit.py), so the page cannot be used to test addresses in
bulk either."""

from django.conf import settings
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from migrations_app.models import Mailbox, Wave
from migrations_app.ratelimit import Rate, client_ip, hit

M = Mailbox.State
W = Wave.Status
# Only a wave someone approved is a promise worth telling staff about.
ANNOUNCED = (W.APPROVED, W.RUNNING, W.PAUSED, W.COMPLETED)
MOVING = (M.SYNCING, M.SYNCED, M.CUTOVER, M.VERIFYING)
NOT_SCHEDULED = "Not scheduled yet"


def public_answer(email: str) -> dict:
    """{"state": ..., "window": (starts, ends) or None}: the whole answer, the same shape for any address."""
    row = Mailbox.objects.filter(email=email).values_list("state", "wave_id", "carried_over").first()
    state, wave_id, carried_over = row if row else ("", 0, False)
    # The same second query whether or not the address is known (wave id 0 matches nothing).
    window = (
        Wave.objects.filter(pk=wave_id or 0, status__in=ANNOUNCED).values_list("starts_at", "ends_at").first()
    )
    if window is None or carried_over:
        return {"state": NOT_SCHEDULED, "window": None}
    if state == M.MIGRATED:
        label = "Moved"
    elif state in MOVING:
        label = "Moving now"
    elif state == M.FAILED:
        label = "Delayed: your IT service desk knows and will move it"
    elif state == M.SCHEDULED:
        label = "Scheduled"
    else:
        return {"state": NOT_SCHEDULED, "window": None}
    return {"state": label, "window": window}


def _limited(request) -> bool:
    """Every per-IP window and the global one count this lookup; over any of them, it is refused."""
    ip = client_ip(request)
    hits = [
        hit("public-when", ip, Rate.parse(r)) for r in settings.PUBLIC_LOOKUP_RATE.split(",") if r.strip()
    ]
    hits.append(hit("public-when-all", "all", Rate.parse(settings.PUBLIC_LOOKUP_GLOBAL_RATE)))
    return not all(h.allowed for h in hits)


@require_http_methods(["GET", "POST"])
def when_does_my_mailbox_move(request):
    context = {"answer": None, "email": "", "error": "", "limited": False}
    status = 200
    if request.method == "POST":
        limited = _limited(request)
        email = (request.POST.get("email") or "").strip().lower()[:254]
        context["email"] = email
        if limited:
            context["limited"] = True
            context["error"] = "You have looked up too many addresses. Try again in a few minutes."
            status = 429
        elif "@" not in email or len(email) < 3:
            context["error"] = "Enter your work email address, like jane.doe@nhs.net"
            status = 400
        else:
            context["answer"] = public_answer(email)
    response = render(request, "public/when.html", context, status=status)
    response["Cache-Control"] = "no-store"
    return response
