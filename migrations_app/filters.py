"""django-filter filter sets for the browser pages (the API has its own in api/)."""

import datetime as dt

import django_filters
from django import forms
from django.utils import timezone

from migrations_app.models import Event


def _midnight(day: dt.date) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time()))


class EventFilter(django_filters.FilterSet):
    """The audit log's filters: who, which organisation, what, and when (London dates, inclusive)."""

    actor = django_filters.CharFilter(
        field_name="actor__username", lookup_expr="exact", label="Who (user name)"
    )
    organisation = django_filters.CharFilter(
        field_name="organisation__ods_code",
        lookup_expr="exact",
        label="Organisation (ODS code)",
        method="by_ods",
    )
    action = django_filters.CharFilter(field_name="action", lookup_expr="startswith", label="Action")
    # ranges of created_at (its index), not created_at::date, from local midnight to local midnight
    date_from = django_filters.DateFilter(
        label="From", method="since", widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = django_filters.DateFilter(
        label="To (inclusive)", method="until", widget=forms.DateInput(attrs={"type": "date"})
    )

    class Meta:
        model = Event
        fields = ["actor", "organisation", "action", "date_from", "date_to"]

    def since(self, queryset, name, value):
        return queryset.filter(created_at__gte=_midnight(value))

    def until(self, queryset, name, value):
        return queryset.filter(created_at__lt=_midnight(value + dt.timedelta(days=1)))

    def by_ods(self, queryset, name, value):
        return queryset.filter(**{name: value.strip().upper()})
