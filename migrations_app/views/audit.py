"""The audit log: every Event the user may see, filterable by actor, organisation, action and date
(filters.EventFilter), newest first, keyset-paged by id (?before=<id>: no OFFSET, no COUNT over millions of
events), and its CSV export with the same filters."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from migrations_app.filters import EventFilter
from migrations_app.selectors.exports import AUDIT_CSV_HEADER, audit_csv_rows, audit_events
from migrations_app.selectors.scoping import events_visible_to
from migrations_app.views._csv import csv_response

NAV = "audit"
PER_PAGE = 50


def _filtered(request):
    return EventFilter(request.GET or None, queryset=events_visible_to(request.user).order_by("-id"))


def _filtered_events(request):
    return audit_events(request.user, request.GET)


@login_required
def audit_log(request):
    filters = _filtered(request)
    events = filters.qs if filters.is_bound else filters.queryset
    before = request.GET.get("before", "")
    if before.isdigit():
        events = events.filter(id__lt=int(before))
    page = list(events.select_related("actor", "organisation")[: PER_PAGE + 1])
    more = len(page) > PER_PAGE
    page = page[:PER_PAGE]
    next_params = None
    if more:
        params = request.GET.copy()
        params["before"] = str(page[-1].pk)
        next_params = params.urlencode()
    export_params = request.GET.copy()
    export_params.pop("before", None)
    context = {
        "nav": NAV,
        "filters": filters,
        "events": page,
        "next_params": next_params,
        "first_page": not before,
        "export_params": export_params.urlencode(),
    }
    return render(request, "audit/list.html", context)


@login_required
def audit_csv(request):
    return csv_response("audit-log.csv", AUDIT_CSV_HEADER, audit_csv_rows(_filtered_events(request)))
