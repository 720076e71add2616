"""The programme's windows and planning rules as a programme officer fills them in: weekdays ticked, times on the
24-hour London clock, capacity in mailboxes and in GB or TB. The model keeps what the planner reads (weekday
digits, London wall-clock times, bytes); this form converts both ways, so the stored values round-trip."""

from __future__ import annotations

import datetime as dt
import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from django import forms

from migrations_app.models import Organisation, ProgrammeSettings
from migrations_app.planning.calendar import LONDON, WindowRules, windows_between
from migrations_app.services.programme import SETTINGS_FIELDS

WEEKDAYS = ProgrammeSettings.Weekday
# Binary units, as every size in the portal is shown (templatetags.filesizeformat_binary): 1 TB = 1,024 GB.
UNITS = {"GB": 1024**3, "TB": 1024**4}
UNIT_CHOICES = [("GB", "GB"), ("TB", "TB")]
# Far beyond any window (2 PB is the whole programme), well inside the bigint column.
MAX_CAPACITY_TB = 1024 * 1024
TIME_MESSAGE = "Enter the time on the 24-hour clock, like 18:00 or 06:30"


def _count(label: str, *, min_value: int = 1, max_value: int | None = None, **kwargs) -> forms.IntegerField:
    """A whole number with errors that name the box: "Mailboxes an evening window can move must be at least 1"."""
    lowered = label[0].lower() + label[1:]
    return forms.IntegerField(
        label=label,
        min_value=min_value,
        max_value=max_value,
        error_messages={
            "required": f"Enter the {lowered}",
            "invalid": f"The {lowered} must be a whole number",
            "min_value": f"The {lowered} must be at least %(limit_value)s",
            "max_value": f"The {lowered} must be at most %(limit_value)s",
        },
        **kwargs,
    )


class LondonTimeField(forms.Field):
    """A wall-clock time in London: 18:00, 1800, 18.00, 6pm and 6:30pm are all understood. Stored as it is read
    (the planner builds each window's instants per date, so 18:00 stays 18:00 in GMT and in BST)."""

    widget = forms.TextInput
    PATTERN = re.compile(r"^\s*(\d{1,2})(?:[:.]?(\d{2}))?\s*(am|pm)?\s*$", re.IGNORECASE)

    def __init__(self, **kwargs):
        kwargs.setdefault("error_messages", {"required": TIME_MESSAGE})
        super().__init__(**kwargs)

    def prepare_value(self, value):
        return value.strftime("%H:%M") if isinstance(value, dt.time) else value

    def to_python(self, value):
        if value in (None, ""):
            return None
        if isinstance(value, dt.time):
            return value
        match = self.PATTERN.match(str(value))
        if not match:
            raise forms.ValidationError(TIME_MESSAGE)
        hour, minute, half = int(match[1]), int(match[2] or 0), (match[3] or "").lower()
        if half:
            if not 1 <= hour <= 12:
                raise forms.ValidationError(TIME_MESSAGE)
            hour = hour % 12 + (12 if half == "pm" else 0)
        if hour > 23 or minute > 59:
            raise forms.ValidationError(TIME_MESSAGE)
        return dt.time(hour, minute)


def capacity_parts(size: int) -> tuple[str, str]:
    """Bytes as the form shows them: whole TB when it is, else GB (to two decimal places)."""
    if size and size % UNITS["TB"] == 0:
        return f"{size // UNITS['TB']}", "TB"
    amount = (Decimal(size) / UNITS["GB"]).quantize(Decimal("0.01"), ROUND_HALF_UP).normalize()
    return f"{amount:f}", "GB"


def _amount(text: str, label: str) -> Decimal:
    cleaned = (text or "").strip().replace(",", "")
    if not cleaned:
        raise forms.ValidationError(f"Enter the {label}, like 30 TB or 500 GB")
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        raise forms.ValidationError(f"The {label} must be a number, like 30 or 2.5") from None
    if not amount.is_finite() or amount <= 0:
        raise forms.ValidationError(f"The {label} must be more than 0")
    return amount


class ProgrammeSettingsForm(forms.Form):
    evening_days = forms.TypedMultipleChoiceField(
        label="Days a weekday evening window starts on",
        choices=WEEKDAYS.choices,
        coerce=int,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Each window runs overnight from that evening. Tick none for no weekday evening windows.",
    )
    evening_starts = LondonTimeField(label="Evening window opens at (London time)")
    evening_ends = LondonTimeField(
        label="Evening window closes at (London time)",
        help_text="The next morning when earlier than it opens",
    )
    evening_capacity_mailboxes = _count(
        "Mailboxes an evening window can move", min_value=1, max_value=10_000_000
    )
    evening_capacity_amount = forms.CharField(
        label="Data an evening window can move",
        max_length=30,
        error_messages={"required": "Enter the data an evening window can move, like 30 TB or 500 GB"},
    )
    evening_capacity_unit = forms.ChoiceField(label="Unit", choices=UNIT_CHOICES)
    weekend_start_day = forms.TypedChoiceField(
        label="Weekend window opens on", choices=WEEKDAYS.choices, coerce=int
    )
    weekend_starts = LondonTimeField(label="Weekend window opens at (London time)")
    weekend_end_day = forms.TypedChoiceField(
        label="Weekend window closes on", choices=WEEKDAYS.choices, coerce=int
    )
    weekend_ends = LondonTimeField(label="Weekend window closes at (London time)")
    weekend_capacity_mailboxes = _count(
        "Mailboxes a weekend window can move", min_value=1, max_value=10_000_000
    )
    weekend_capacity_amount = forms.CharField(
        label="Data a weekend window can move",
        max_length=30,
        error_messages={"required": "Enter the data a weekend window can move, like 30 TB or 500 GB"},
    )
    weekend_capacity_unit = forms.ChoiceField(label="Unit", choices=UNIT_CHOICES)
    single_wave_organisation_max = _count(
        "Largest organisation kept in one wave (mailboxes)",
        min_value=0,
        max_value=10_000_000,
        help_text="Organisations with more ready mailboxes than this are spread over consecutive waves",
    )
    large_organisation_chunk = _count(
        "Chunk size for large organisations (mailboxes)",
        min_value=1,
        max_value=10_000_000,
        help_text="Mailboxes without an affinity group in a large organisation move in chunks of this size",
    )
    pilot_mailboxes_per_organisation = _count("Pilot mailboxes per organisation", min_value=1, max_value=1000)
    planning_horizon_days = _count("Planning horizon (days ahead)", min_value=1, max_value=3660)
    required_gates = forms.MultipleChoiceField(
        label="Readiness gates an organisation must meet before it is planned",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        choices=[(g, Organisation._meta.get_field(g).verbose_name) for g in Organisation.GATES],
    )
    readiness_recheck_hours = _count("Re-check readiness after (hours)", min_value=1, max_value=24 * 366)
    go_required_from_every_organisation = forms.BooleanField(
        label="A wave can be approved only when every organisation in it has said go", required=False
    )

    def __init__(self, data=None, *, instance: ProgrammeSettings, **kwargs):
        self.instance = instance
        initial = {name: getattr(instance, name) for name in SETTINGS_FIELDS}
        initial["evening_days"] = [int(d) for d in instance.evening_days]
        for kind in ("evening", "weekend"):
            amount, unit = capacity_parts(getattr(instance, f"{kind}_capacity_bytes"))
            initial[f"{kind}_capacity_amount"], initial[f"{kind}_capacity_unit"] = amount, unit
        super().__init__(data, initial=initial, **kwargs)

    def _capacity_bytes(self, kind: str) -> int | None:
        amount_field, unit_field = f"{kind}_capacity_amount", f"{kind}_capacity_unit"
        unit = self.cleaned_data.get(unit_field)
        text = self.cleaned_data.get(amount_field)
        if unit is None or text is None:
            return None
        label = f"data {'an evening' if kind == 'evening' else 'a weekend'} window can move"
        try:
            amount = _amount(text, label)
            if amount * UNITS[unit] > MAX_CAPACITY_TB * UNITS["TB"]:
                raise forms.ValidationError(f"The {label} must be at most {MAX_CAPACITY_TB:,} TB")
        except forms.ValidationError as error:
            self.add_error(amount_field, error)
            return None
        current = getattr(self.instance, f"{kind}_capacity_bytes")
        if (text.strip(), unit) == capacity_parts(current):
            return current  # shown rounded and sent back unchanged: keep the exact figure
        size = int((amount * UNITS[unit]).to_integral_value(ROUND_HALF_UP))
        if size < UNITS["GB"]:
            self.add_error(amount_field, f"The {label} must be at least 1 GB")
            return None
        return size

    def clean(self):
        cleaned = super().clean()
        for kind in ("evening", "weekend"):
            cleaned[f"{kind}_capacity_bytes"] = self._capacity_bytes(kind)
        starts, ends = cleaned.get("weekend_starts"), cleaned.get("weekend_ends")
        start_day, end_day = cleaned.get("weekend_start_day"), cleaned.get("weekend_end_day")
        if start_day is not None and start_day == end_day and starts and ends and ends <= starts:
            self.add_error(
                "weekend_ends", "A weekend window that closes on the day it opens must close after it opens"
            )
        return cleaned

    def settings_changes(self) -> dict:
        """The form's answers as ProgrammeSettings stores them (programme_settings_update's keywords)."""
        data = dict(self.cleaned_data)
        data["evening_days"] = "".join(str(d) for d in sorted(set(data["evening_days"])))
        return {name: data[name] for name in SETTINGS_FIELDS}


def next_windows(settings: ProgrammeSettings, *, today: dt.date | None = None, count: int = 3) -> list[dict]:
    """What the saved rules open next: the first windows of each kind from today, in London time with GMT or
    BST named, and their length (a window across a clock change is an hour longer or shorter)."""
    today = today or dt.datetime.now(LONDON).date()
    rules = WindowRules.from_settings(settings)
    shown: list[dict] = []
    counts = {"evening": 0, "weekend": 0}
    for window in windows_between(rules, today, today + dt.timedelta(days=21)):
        if counts[window.kind] >= count:
            continue
        counts[window.kind] += 1
        starts, ends = window.starts_at.astimezone(LONDON), window.ends_at.astimezone(LONDON)
        hours = (window.ends_at - window.starts_at).total_seconds() / 3600
        shown.append(
            {
                "kind": "Weekday evening" if window.kind == "evening" else "Weekend",
                "starts": starts,
                "ends": ends,
                "hours": f"{hours:g}",
                "clock_change": starts.utcoffset() != ends.utcoffset(),
            }
        )
    return sorted(shown, key=lambda w: w["starts"])
