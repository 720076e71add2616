"""Filter fields shared by the API's FilterSets."""

import datetime

from django import forms
from django_filters import rest_framework as filters
from django_filters.fields import IsoDateTimeField

# Real UTC offsets run from -12:00 to +14:00; PostgreSQL refuses anything beyond +-15:59 with a server error.
MAX_OFFSET = datetime.timedelta(hours=14)


class UtcIsoDateTimeField(IsoDateTimeField):
    """An ISO 8601 date-time, turned into UTC; an impossible offset or a date out of range is a 400."""

    def to_python(self, value):
        value = super().to_python(value)
        if value is None or value.tzinfo is None:
            return value
        offset = value.utcoffset()
        if offset is not None and abs(offset) > MAX_OFFSET:
            raise forms.ValidationError("The UTC offset is out of range (-12:00 to +14:00)", code="invalid")
        try:
            return value.astimezone(datetime.UTC)
        except OverflowError:
            raise forms.ValidationError("The date is out of range", code="invalid") from None


class IsoDateTimeFilter(filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


class IdField(forms.IntegerField):
    """A row id: a whole number that fits the column (a larger one was a server error on PostgreSQL)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", 2**63 - 1)
        super().__init__(*args, **kwargs)


class IdFilter(filters.Filter):
    """A plain id input for a foreign key. django-filter's default for one is a ModelChoiceFilter, whose HTML
    form (the browsable API's Filters) lists the whole related table, every trust's rows included, and which
    answers 400 for an id that does not exist but 200 for one the requester may not see. Filtering by id on the
    requester's already-scoped queryset answers both the same way: no rows."""

    field_class = IdField

    def __init__(self, field_name=None, **kwargs):
        kwargs.setdefault("help_text", "id")
        super().__init__(field_name=f"{field_name}_id" if field_name else None, **kwargs)
