"""get_<field>_display() without rebuilding the choices each call."""

from django.utils.encoding import force_str
from django.utils.hashable import make_hashable

_LABELS: dict = {}


class ChoiceLabels:
    """Django's Model._get_FIELD_display builds a dict of the field's choices on every call (~15 us): a page of
    fifty mailboxes calls it a hundred times. The same answer from a dict built once per field (labels still
    pass through force_str, so lazy translations are read at call time as before)."""

    def _get_FIELD_display(self, field):
        labels = _LABELS.get(field)
        if labels is None:
            labels = _LABELS[field] = dict(make_hashable(field.flatchoices))
        value = getattr(self, field.attname)
        return force_str(labels.get(make_hashable(value), value), strings_only=True)
