"""The programme dashboard: where every mailbox and organisation stands, what the waves are doing, how fast
mailboxes are moving and when the programme will finish. Scoped: a trust admin sees their organisations'."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from migrations_app.selectors.progress import dashboard as dashboard_figures
from migrations_app.selectors.readiness import blocked_by_reason_visible_to
from migrations_app.selectors.support import programme_support_shared


@login_required
def dashboard(request):
    context = {
        "nav": "dashboard",
        **dashboard_figures(request.user),
        "support": programme_support_shared(),
        "blocked_reasons": blocked_by_reason_visible_to(request.user),
    }
    return render(request, "dashboard.html", context)
