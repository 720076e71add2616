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
