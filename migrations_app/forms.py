"""Forms for the pages: they check what a person typed and say clearly what to fix; services do the rest.

Field names match the keyword arguments of the services, so a service ValidationError keyed by field name
lands on the right field (see views/_helpers.add_service_errors).
"""

import datetime
import re

from django import forms
from django.conf import settings
from django.contrib.auth import password_validation
from django.utils import timezone

from migrations_app.models import ODS_CODE_PATTERN, ApiToken, ImportJob, Mailbox, Organisation, User
from migrations_app.services.organisations import ODS_CODE_MESSAGE, BlackoutData, ContactData

EMAIL_MESSAGE = "Enter an email address in the correct format, like name@example.nhs.uk"
GATE_CHOICES = [(name, Organisation._meta.get_field(name).verbose_name) for name in Organisation.GATES]


class OdsCodeField(forms.CharField):
    """1 to 9 letters and digits, upper-cased on input: RJ1, RH802, A81001."""

    def __init__(self, **kwargs):
        kwargs.setdefault("max_length", 20)  # longer input gets the format message, not a length one
        kwargs.setdefault("error_messages", {"required": "Enter an ODS code, like RJ1 or A81001"})
        super().__init__(**kwargs)

    def to_python(self, value):
        value = super().to_python(value)
        return value.strip().upper().replace(" ", "") if value else value

    def validate(self, value):
        super().validate(value)
        if value and not re.fullmatch(ODS_CODE_PATTERN, value):
            raise forms.ValidationError(ODS_CODE_MESSAGE)


class DatePartsWidget(forms.MultiWidget):
    """Day, month and year boxes, named <name>_day, <name>_month, <name>_year (the NHS date input)."""

    def __init__(self, attrs=None):
        super().__init__({"day": forms.TextInput, "month": forms.TextInput, "year": forms.TextInput}, attrs)

    def decompress(self, value):
        if isinstance(value, datetime.date):
            return [str(value.day), str(value.month), str(value.year)]
        return [None, None, None]


class DatePartsField(forms.MultiValueField):
    widget = DatePartsWidget

    def __init__(self, *, label_text: str = "date", **kwargs):
        self.label_text = label_text
        fields = (forms.CharField(), forms.CharField(), forms.CharField())
        super().__init__(fields=fields, require_all_fields=False, **kwargs)
        self.error_messages["required"] = f"Enter the {label_text}"
        self.error_messages["incomplete"] = f"The {label_text} must include a day, month and year"

    def compress(self, data_list):
        if not data_list or not any(data_list):
            return None
        day, month, year = (part.strip() if part else "" for part in data_list)
        if not (day and month and year):
            raise forms.ValidationError(f"The {self.label_text} must include a day, month and year")
        try:
            return datetime.date(int(year), int(month), int(day))
        except ValueError:
            raise forms.ValidationError(
                f"The {self.label_text} must be a real date, like 27 3 2026"
            ) from None


class FieldChoices:
    """Choice lists with a blank first option for selects."""

    @staticmethod
    def with_blank(choices, blank="Select one"):
        return [("", blank), *choices]


# --- organisations -----------------------------------------------------------------------------------------


class ParentFieldMixin:
    def clean_parent_ods_code(self):
        code = self.cleaned_data.get("parent_ods_code") or ""
        if not code:
            return code
        own = self.cleaned_data.get("ods_code") or getattr(self, "organisation_ods_code", "")
        if code == own:
            raise forms.ValidationError("An organisation cannot be its own parent")
        parent = Organisation.objects.filter(ods_code=code).first()
        if parent is None:
            raise forms.ValidationError(f"There is no organisation with ODS code {code} in the portal")
        self.parent = parent
        return code

    @property
    def parent_organisation(self) -> Organisation | None:
        return getattr(self, "parent", None)


class ContactFieldsMixin:
    def contact(self, prefix: str) -> ContactData | None:
        data = self.cleaned_data
        if not (data.get(f"{prefix}_name") or data.get(f"{prefix}_email")):
            return None
        return ContactData(
            name=data.get(f"{prefix}_name", ""),
            email=data.get(f"{prefix}_email", ""),
            phone=data.get(f"{prefix}_phone", ""),
        )

    def clean_contacts(self, cleaned):
        if (
            cleaned.get("technical_name")
            and not cleaned.get("technical_email")
            and "technical_email" not in self.errors
        ):
            self.add_error("technical_email", "Enter the technical contact's email address")
        if (
            cleaned.get("technical_email")
            and not cleaned.get("technical_name")
            and "technical_name" not in self.errors
        ):
            self.add_error("technical_name", "Enter the technical contact's name")


def _contact_fields():
    return {
        "primary_name": forms.CharField(
            label="Name", max_length=200, error_messages={"required": "Enter the primary contact's name"}
        ),
        "primary_email": forms.EmailField(
            label="Email address",
            error_messages={
                "required": "Enter the primary contact's email address",
                "invalid": EMAIL_MESSAGE,
            },
        ),
        "primary_phone": forms.CharField(label="Telephone (optional)", max_length=40, required=False),
        "technical_name": forms.CharField(label="Name", max_length=200, required=False),
        "technical_email": forms.EmailField(
            label="Email address", required=False, error_messages={"invalid": EMAIL_MESSAGE}
        ),
        "technical_phone": forms.CharField(label="Telephone (optional)", max_length=40, required=False),
    }


class OrganisationIdentityForm(ParentFieldMixin, forms.Form):
    """What names an organisation, shared by enrolment and the programme office's pre-create and invite."""

    ods_code = OdsCodeField(
        label="ODS code", help_text="1 to 9 letters and digits, like RJ1, RH802 or A81001"
    )
    name = forms.CharField(
        label="Organisation name",
        max_length=200,
        error_messages={"required": "Enter the organisation's name"},
    )
    kind = forms.ChoiceField(
        label="Type of organisation",
        choices=FieldChoices.with_blank(Organisation.Kind.choices),
        error_messages={"required": "Select the type of organisation"},
    )
    parent_ods_code = OdsCodeField(
        label="Parent organisation ODS code (optional)",
        required=False,
        help_text="For a site or practice, the ODS code of the trust or care board it belongs to",
    )
    region = forms.ChoiceField(
        label="Region",
        choices=FieldChoices.with_blank(Organisation.Region.choices),
        error_messages={"required": "Select the region"},
    )

    def identity_kwargs(self) -> dict:
        data = self.cleaned_data
        return {
            "ods_code": data["ods_code"],
            "name": data["name"],
            "kind": data["kind"],
            "region": data["region"],
            "parent": self.parent_organisation,
        }


class OrganisationEnrolForm(ContactFieldsMixin, OrganisationIdentityForm):
    preferred_window = forms.ChoiceField(
        label="When would you prefer your mailboxes to move?",
        choices=Organisation.WindowPreference.choices,
        initial=Organisation.WindowPreference.ANY,
        widget=forms.RadioSelect,
        error_messages={"required": "Select when you would prefer your mailboxes to move"},
    )
    gates = forms.MultipleChoiceField(
        label="Readiness gates already met",
        choices=GATE_CHOICES,
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    notes = forms.CharField(label="Notes (optional)", required=False, widget=forms.Textarea, max_length=5000)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields.update(_contact_fields())

    def clean(self):
        cleaned = super().clean()
        self.clean_contacts(cleaned)
        return cleaned

    def service_kwargs(self) -> dict:
        data = self.cleaned_data
        return {
            **self.identity_kwargs(),
            "primary_contact": self.contact("primary"),
            "technical_contact": self.contact("technical"),
            "preferred_window": data["preferred_window"],
            "gates": data["gates"],
            "notes": data["notes"],
        }


class OrganisationInviteForm(OrganisationIdentityForm):
    invite_email = forms.EmailField(
        label="Email address of the person to invite",
        help_text="They will get a link to accept the invitation and become the organisation's admin",
        error_messages={
            "required": "Enter the email address of the person to invite",
            "invalid": EMAIL_MESSAGE,
        },
    )

    def service_kwargs(self) -> dict:
        return {**self.identity_kwargs(), "invite_email": self.cleaned_data["invite_email"]}


class OrganisationEditForm(ContactFieldsMixin, forms.Form):
    preferred_window = OrganisationEnrolForm.base_fields["preferred_window"]
    gates = forms.MultipleChoiceField(
        label="Readiness gates met", choices=GATE_CHOICES, required=False, widget=forms.CheckboxSelectMultiple
    )
    notes = forms.CharField(label="Notes (optional)", required=False, widget=forms.Textarea, max_length=5000)
    priority = forms.IntegerField(
        label="Planning priority",
        help_text="Lower numbers are planned first",
        min_value=0,
        max_value=32767,
        error_messages={
            "required": "Enter a priority",
            "invalid": "Enter the priority as a whole number, like 100",
            "min_value": "Enter a priority of 0 or more",
            "max_value": "Enter a priority of 32767 or less",
        },
    )

    def __init__(self, *args, organisation: Organisation, actor: User, **kwargs):
        self.organisation = organisation
        contacts = {c.role: c for c in organisation.contacts.all()}
        primary, technical = contacts.get("primary"), contacts.get("technical")
        kwargs.setdefault(
            "initial",
            {
                "preferred_window": organisation.preferred_window,
                "gates": [name for name in Organisation.GATES if getattr(organisation, name)],
                "notes": organisation.notes,
                "priority": organisation.priority,
                "primary_name": primary.name if primary else "",
                "primary_email": primary.email if primary else "",
                "primary_phone": primary.phone if primary else "",
                "technical_name": technical.name if technical else "",
                "technical_email": technical.email if technical else "",
                "technical_phone": technical.phone if technical else "",
            },
        )
        super().__init__(*args, **kwargs)
        self.fields.update(_contact_fields())
        if not actor.is_programme_office:
            del self.fields["priority"]

    def clean(self):
        cleaned = super().clean()
        self.clean_contacts(cleaned)
        return cleaned

    def service_data(self) -> dict:
        data = self.cleaned_data
        gates = set(data["gates"])
        result = {name: name in gates for name in Organisation.GATES}
        result.update(
            preferred_window=data["preferred_window"],
            notes=data["notes"],
            primary_contact=self.contact("primary"),
            technical_contact=self.contact("technical"),
        )
        if "priority" in self.fields:
            result["priority"] = data["priority"]
        return result


class BlackoutForm(forms.Form):
    starts_on = DatePartsField(label="Starts on", label_text="start date", required=False)
    ends_on = DatePartsField(label="Ends on", label_text="end date", required=False)
    reason = forms.CharField(label="Reason (optional)", max_length=200, required=False)

    def clean(self):
        cleaned = super().clean()
        starts, ends = cleaned.get("starts_on"), cleaned.get("ends_on")
        if self.errors:
            return cleaned
        if (starts or ends or cleaned.get("reason")) and not starts:
            self.add_error("starts_on", "Enter the start date")
        if (starts or ends or cleaned.get("reason")) and not ends:
            self.add_error("ends_on", "Enter the end date")
        if starts and ends and ends < starts:
            self.add_error("ends_on", "The end date must be the same as or after the start date")
        return cleaned


class BaseBlackoutFormSet(forms.BaseFormSet):
    """Start/end/reason rows. Blank rows are ignored; new periods cannot be in the past; no overlaps."""

    def __init__(self, *args, existing: list[tuple] = (), **kwargs):
        # Periods already saved may lie in the past (last winter's freeze); only new ones are refused.
        self.existing = {(start, end) for start, end, *_ in existing}
        super().__init__(*args, **kwargs)

    def get_form_kwargs(self, index):
        # Every row is cleaned, blank or not: a row whose data equals its initial value must not be skipped
        # (Django skips "unchanged" extra rows, which would silently drop a saved period). Blank rows clean
        # to nothing, since every field is optional and BlackoutForm.clean only asks for pairs.
        return {**super().get_form_kwargs(index), "empty_permitted": False}

    def clean(self):
        if any(self.errors):
            return
        today = timezone.localdate()
        periods = []
        for form in self.forms:
            starts, ends = form.cleaned_data.get("starts_on"), form.cleaned_data.get("ends_on")
            if not (starts and ends):
                continue
            if (starts, ends) not in self.existing and ends < today:
                form.add_error("ends_on", "A new blackout period cannot be in the past")
                continue
            if (starts, ends) not in self.existing and starts < today:
                form.add_error("starts_on", "A new blackout period cannot start in the past")
                continue
            periods.append((starts, ends, form))
        periods.sort(key=lambda p: p[0])
        for (s1, e1, _), (s2, _e2, form2) in zip(periods, periods[1:], strict=False):
            if s2 <= e1:
                form2.add_error(
                    "starts_on",
                    f"This period overlaps the one from {s1.day} {s1:%B %Y} to {e1.day} {e1:%B %Y}",
                )
        if any(self.errors):
            raise forms.ValidationError("Blackout periods must not overlap or be in the past")

    def blackouts(self) -> list[BlackoutData]:
        result = []
        for form in self.forms:
            data = getattr(form, "cleaned_data", {})
            if data.get("starts_on") and data.get("ends_on"):
                result.append(BlackoutData(data["starts_on"], data["ends_on"], data.get("reason", "")))
        return sorted(result, key=lambda b: b.starts_on)


BlackoutFormSet = forms.formset_factory(BlackoutForm, formset=BaseBlackoutFormSet, extra=2, max_num=20)


def blackout_formset(data=None, *, organisation: Organisation | None = None) -> BaseBlackoutFormSet:
    existing = []
    if organisation is not None:
        existing = [(b.starts_on, b.ends_on, b.reason) for b in organisation.blackouts.all()]
    initial = [{"starts_on": s, "ends_on": e, "reason": r} for s, e, r in existing]
    return BlackoutFormSet(data, prefix="blackouts", initial=initial, existing=existing)


class OrganisationFilterForm(forms.Form):
    q = forms.CharField(label="ODS code or name starts with", required=False, max_length=200)
    status = forms.ChoiceField(
        label="Status",
        required=False,
        choices=FieldChoices.with_blank(Organisation.Status.choices, "Any status"),
    )
    stage = forms.ChoiceField(
        label="Stage",
        required=False,
        choices=FieldChoices.with_blank(Organisation.Stage.choices, "Any stage"),
    )
    region = forms.ChoiceField(
        label="Region",
        required=False,
        choices=FieldChoices.with_blank(Organisation.Region.choices, "Any region"),
    )


class InventoryFilterForm(forms.Form):
    """An organisation's inventory: by state, kind, and an address or display-name prefix."""

    q = forms.CharField(label="Address or name starts with", required=False, max_length=254)
    state = forms.ChoiceField(
        label="State", required=False, choices=FieldChoices.with_blank(Mailbox.State.choices, "Any state")
    )
    kind = forms.ChoiceField(
        label="Kind", required=False, choices=FieldChoices.with_blank(Mailbox.Kind.choices, "Any kind")
    )


# --- accounts ----------------------------------------------------------------------------------------------


class AccountCreateForm(forms.Form):
    first_name = forms.CharField(
        label="First name", max_length=150, error_messages={"required": "Enter your first name"}
    )
    last_name = forms.CharField(
        label="Last name", max_length=150, error_messages={"required": "Enter your last name"}
    )
    email = forms.EmailField(
        label="Email address",
        help_text="You will use this to sign in",
        error_messages={"required": "Enter your email address", "invalid": EMAIL_MESSAGE},
    )
    password1 = forms.CharField(
        label="Create a password",
        widget=forms.PasswordInput,
        strip=False,
        help_text="At least 12 characters. Avoid common words and passwords that are all numbers",
        error_messages={"required": "Create a password"},
    )
    password2 = forms.CharField(
        label="Enter the password again",
        widget=forms.PasswordInput,
        strip=False,
        error_messages={"required": "Enter the password again"},
    )

    def clean_email(self):
        email = self.cleaned_data["email"].strip().lower()
        if User.objects.filter(username__iexact=email).exists():
            raise forms.ValidationError("An account with this email address already exists. Sign in first")
        return email

    def clean(self):
        cleaned = super().clean()
        p1, p2 = cleaned.get("password1"), cleaned.get("password2")
        if p1 and p2 and p1 != p2:
            self.add_error("password2", "The passwords do not match")
        elif p1:
            user = User(
                username=cleaned.get("email", ""),
                email=cleaned.get("email", ""),
                first_name=cleaned.get("first_name", ""),
                last_name=cleaned.get("last_name", ""),
            )
            try:
                password_validation.validate_password(p1, user)
            except forms.ValidationError as error:
                self.add_error("password1", error)
        return cleaned


# --- imports -----------------------------------------------------------------------------------------------


class ImportUploadForm(forms.Form):
    file = forms.FileField(
        label="Upload a CSV file",
        error_messages={"required": "Select a CSV file", "empty": "The selected file is empty"},
    )
    import_valid_rows = forms.BooleanField(
        label="Import the valid rows even if some rows have errors", required=False
    )
    complete = forms.BooleanField(
        label="This file lists every mailbox of the organisation: show me the ones it leaves out, to retire them",
        required=False,
    )

    def clean_file(self):
        upload = self.cleaned_data["file"]
        if not upload.name.lower().endswith((".csv", ".txt")):
            raise forms.ValidationError("The selected file must be a CSV")
        limit = settings.INVENTORY_UPLOAD_MAX_BYTES
        if upload.size > limit:
            raise forms.ValidationError(f"The selected file must be smaller than {limit // (1024 * 1024)} MB")
        return upload


IMPORT_KINDS = {kind.value: kind for kind in ImportJob.Kind}


# --- API tokens --------------------------------------------------------------------------------------------


class ApiTokenForm(forms.Form):
    EXPIRY_CHOICES = [("30", "30 days"), ("90", "90 days"), ("365", "1 year")]

    name = forms.CharField(
        label="Name",
        max_length=100,
        help_text="What the token is for, like 'Directory sync script'",
        error_messages={"required": "Enter a name for the token"},
    )
    scopes = forms.MultipleChoiceField(
        label="What the token may do",
        choices=ApiToken.Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one thing the token may do"},
    )
    expires_in_days = forms.ChoiceField(label="Expires after", choices=EXPIRY_CHOICES, initial="90")

    def __init__(self, *args, scopes: list[str] | None = None, **kwargs):
        """`scopes`: the ones the user's role can use (services.tokens.token_scopes_for); only those offered."""
        super().__init__(*args, **kwargs)
        if scopes is not None:
            self.fields["scopes"].choices = [c for c in ApiToken.Scope.choices if c[0] in scopes]

    def expires_at(self) -> datetime.datetime:
        return timezone.now() + datetime.timedelta(days=int(self.cleaned_data["expires_in_days"]))
