"""Enrolment, invitations and organisation details: every write about an organisation goes through here.

Pages and the API call these; both get the same permission checks (PermissionDenied -> 403) and the same
validation (django ValidationError keyed by field name, so a form can show each message by its field).
"""

import hashlib
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from migrations_app.models import (
    ODS_CODE_PATTERN,
    BlackoutPeriod,
    Contact,
    Invitation,
    Organisation,
    User,
)
from migrations_app.selectors.scoping import can_administer, require_administer, require_programme_office
from migrations_app.services.events import event_record

ODS_CODE_MESSAGE = "Enter an ODS code of 1 to 9 letters and digits, like RJ1 or A81001"
# Parents are a short chain (practice -> trust -> care board); anything longer is a data error or a loop.
MAX_PARENT_DEPTH = 10


@dataclass(frozen=True)
class ContactData:
    name: str
    email: str
    phone: str = ""


@dataclass(frozen=True)
class BlackoutData:
    starts_on: date
    ends_on: date
    reason: str = ""


class OrganisationConflict(ValidationError):
    """The ODS code is taken (enrolled, or pre-created): a conflict with what exists, not a malformed request
    (the API answers 409 `conflict`; pages show it on the field like any other error)."""


def invitation_token_hash(token: str) -> str:
    """Only this hash is stored: a leaked database does not leak working invitation links."""
    return hashlib.sha256(token.encode()).hexdigest()


def _day(value) -> str:
    return f"{value.day} {value:%B %Y}"


# --- validation shared by enrolment and updates -------------------------------------------------------------


def _normalise_ods_code(ods_code: str) -> str:
    code = (ods_code or "").strip().upper()
    if not re.fullmatch(ODS_CODE_PATTERN, code):
        raise ValidationError({"ods_code": ODS_CODE_MESSAGE})
    return code


def _check_parent(organisation: Organisation | None, parent: Organisation | None, ods_code: str) -> None:
    if parent is None:
        return
    if parent.ods_code == ods_code or (organisation is not None and parent.pk == organisation.pk):
        raise ValidationError({"parent": "An organisation cannot be its own parent"})
    if organisation is None or organisation.pk is None:
        return
    # Walk up from the new parent: meeting this organisation again would make a loop.
    current, depth = parent, 0
    while current is not None and depth < MAX_PARENT_DEPTH:
        if current.parent_id == organisation.pk:
            raise ValidationError({"parent": f"{parent.ods_code} is already under {ods_code}"})
        current, depth = current.parent, depth + 1


def _check_contact(field: str, contact: ContactData | None, *, required: bool) -> None:
    if contact is None:
        if required:
            raise ValidationError({field: "Enter a contact name and email address"})
        return
    if not contact.name.strip():
        raise ValidationError({field: "Enter the contact's name"})
    try:
        validate_email(contact.email)
    except ValidationError:
        raise ValidationError(
            {field: "Enter an email address in the correct format, like name@example.nhs.uk"}
        ) from None


def _check_blackouts(blackouts: Sequence[BlackoutData]) -> None:
    for blackout in blackouts:
        if blackout.ends_on < blackout.starts_on:
            raise ValidationError({"blackouts": "A blackout period cannot end before it starts"})
    ordered = sorted(blackouts, key=lambda b: b.starts_on)
    for earlier, later in zip(ordered, ordered[1:], strict=False):
        if later.starts_on <= earlier.ends_on:
            raise ValidationError(
                {
                    "blackouts": f"Blackout periods cannot overlap: {_day(earlier.starts_on)} to {_day(earlier.ends_on)} "
                    f"and {_day(later.starts_on)} to {_day(later.ends_on)}"
                }
            )


def _choice(field: str, value: str, choices) -> str:
    if value not in choices.values:
        raise ValidationError({field: f"Select a valid {field.replace('_', ' ')}"})
    return value


def _save_contact(organisation: Organisation, role: str, contact: ContactData | None) -> None:
    if contact is None:
        Contact.objects.filter(organisation=organisation, role=role).delete()
        return
    Contact.objects.update_or_create(
        organisation=organisation,
        role=role,
        defaults={
            "name": contact.name.strip(),
            "email": contact.email.strip(),
            "phone": contact.phone.strip(),
        },
    )


def _replace_blackouts(organisation: Organisation, blackouts: Sequence[BlackoutData]) -> None:
    organisation.blackouts.all().delete()
    BlackoutPeriod.objects.bulk_create(
        BlackoutPeriod(organisation=organisation, starts_on=b.starts_on, ends_on=b.ends_on, reason=b.reason)
        for b in blackouts
    )


def _contact_snapshot(organisation: Organisation) -> dict[str, tuple]:
    return {c.role: (c.name, c.email, c.phone) for c in organisation.contacts.all()}


def _blackout_snapshot(organisation: Organisation) -> list[tuple]:
    return [(b.starts_on, b.ends_on, b.reason) for b in organisation.blackouts.order_by("starts_on", "id")]


# --- enrolment ---------------------------------------------------------------------------------------------


@transaction.atomic
def organisation_enrol(
    *,
    actor: User,
    ods_code: str,
    name: str,
    kind: str,
    region: str,
    primary_contact: ContactData,
    parent: Organisation | None = None,
    technical_contact: ContactData | None = None,
    preferred_window: str = Organisation.WindowPreference.ANY,
    blackouts: Sequence[BlackoutData] = (),
    gates: Iterable[str] = (),
    notes: str = "",
) -> Organisation:
    """A trust admin (or the programme office) enrols an organisation, or completes a pre-created one."""
    if not (actor.is_trust_admin or actor.is_programme_office):
        raise PermissionDenied("Only trust admins and the programme office can enrol an organisation")
    ods_code = _normalise_ods_code(ods_code)
    if not name.strip():
        raise ValidationError({"name": "Enter the organisation's name"})
    _choice("kind", kind, Organisation.Kind)
    _choice("region", region, Organisation.Region)
    _choice("preferred_window", preferred_window, Organisation.WindowPreference)
    _check_contact("primary_contact", primary_contact, required=True)
    _check_contact("technical_contact", technical_contact, required=False)
    _check_blackouts(blackouts)
    gates = set(gates)
    unknown = gates - set(Organisation.GATES)
    if unknown:
        raise ValidationError({"gates": f"Unknown readiness gates: {', '.join(sorted(unknown))}"})

    existing = Organisation.objects.select_for_update().filter(ods_code=ods_code).first()
    if existing is not None:
        # A pre-created organisation is completed by the admin its invitation made (or the programme office);
        # anyone else, and any second enrolment, is refused without revealing more than the code is taken.
        if existing.status != Organisation.Status.INVITED or not can_administer(actor, existing):
            raise OrganisationConflict(
                {
                    "ods_code": f"{ods_code} is already enrolled. If you need to manage it, "
                    "ask the programme office to add you as an admin"
                }
            )
        organisation = existing
        from_state = existing.status
    else:
        organisation = Organisation(ods_code=ods_code)
        from_state = ""

    _check_parent(organisation if organisation.pk else None, parent, ods_code)
    organisation.name = name.strip()
    organisation.kind = kind
    organisation.region = region
    organisation.parent = parent
    organisation.preferred_window = preferred_window
    organisation.notes = notes
    organisation.status = Organisation.Status.ENROLLED
    organisation.enrolled_at = timezone.now()
    for gate in Organisation.GATES:
        setattr(organisation, gate, gate in gates)
    try:
        with transaction.atomic():
            organisation.save()
    except IntegrityError:
        # Two people enrolled the same new code at the same moment; the other one won.
        raise OrganisationConflict(
            {"ods_code": f"{ods_code} is already enrolled. Ask the programme office to add you as an admin"}
        ) from None

    _save_contact(organisation, Contact.Role.PRIMARY, primary_contact)
    _save_contact(organisation, Contact.Role.TECHNICAL, technical_contact)
    _replace_blackouts(organisation, blackouts)
    if actor.is_trust_admin:
        actor.organisations.add(organisation)

    event_record(
        action="organisation.enrolled",
        actor=actor,
        organisation=organisation,
        subject=organisation.ods_code,
        from_state=from_state,
        to_state=organisation.status,
        message=f"{actor.get_username()} enrolled {organisation}",
        data={"gates": sorted(gates), "blackouts": len(blackouts), "completed_invitation": bool(from_state)},
    )
    return organisation


@transaction.atomic
def organisation_precreate_and_invite(
    *,
    actor: User,
    ods_code: str,
    name: str,
    kind: str,
    region: str,
    invite_email: str,
    parent: Organisation | None = None,
) -> Invitation:
    """The programme office creates an organisation (status invited) and e-mails its admin a one-time link.

    The raw token is on the returned object as `token` (never saved) and in the e-mail; the database holds
    only its SHA-256 hash."""
    require_programme_office(actor)
    ods_code = _normalise_ods_code(ods_code)
    if not name.strip():
        raise ValidationError({"name": "Enter the organisation's name"})
    _choice("kind", kind, Organisation.Kind)
    _choice("region", region, Organisation.Region)
    invite_email = invite_email.strip()
    try:
        validate_email(invite_email)
    except ValidationError:
        raise ValidationError(
            {"invite_email": "Enter an email address in the correct format, like name@example.nhs.uk"}
        ) from None
    _check_parent(None, parent, ods_code)
    if Organisation.objects.filter(ods_code=ods_code).exists():
        raise OrganisationConflict({"ods_code": f"{ods_code} already exists in the portal"})
    try:
        with transaction.atomic():
            organisation = Organisation.objects.create(
                ods_code=ods_code,
                name=name.strip(),
                kind=kind,
                region=region,
                parent=parent,
                status=Organisation.Status.INVITED,
            )
    except IntegrityError:
        raise OrganisationConflict({"ods_code": f"{ods_code} already exists in the portal"}) from None

    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        organisation=organisation,
        email=invite_email,
        token_hash=invitation_token_hash(token),
        invited_by=actor,
        expires_at=timezone.now() + timedelta(days=settings.INVITATION_DAYS),
    )
    invitation.token = token  # for the caller only; not a model field, never saved

    link = settings.PORTAL_BASE_URL.rstrip("/") + reverse("invitation_accept", args=[token])
    subject = f"Enrol {organisation.name} in the mailbox migration portal"
    body = (
        f"You have been invited to enrol {organisation.name} ({organisation.ods_code}) in the mailbox "
        f"migration portal.\n\nOpen this link to accept the invitation:\n\n{link}\n\n"
        f"The link works once and expires on {_day(timezone.localtime(invitation.expires_at))}.\n"
    )
    # Sent only once the rows exist: a rolled-back invitation must not reach anyone's inbox.
    transaction.on_commit(
        lambda: send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [invite_email], fail_silently=False)
    )

    event_record(
        action="organisation.invited",
        actor=actor,
        organisation=organisation,
        subject=organisation.ods_code,
        to_state=organisation.status,
        message=f"{actor.get_username()} invited {invite_email} to enrol {organisation}",
        data={"email": invite_email, "invitation": invitation.pk},
    )
    return invitation


def invitation_for_token(token: str) -> Invitation | None:
    """The invitation a link points at, whatever its state (used or expired), or None."""
    return (
        Invitation.objects.select_related("organisation")
        .filter(token_hash=invitation_token_hash(token))
        .first()
    )


def invitation_problem(invitation: Invitation | None) -> str:
    """Why a link cannot be used, in words for the person holding it; "" if it can."""
    if invitation is None:
        return (
            "This invitation link is not valid. Check you copied the whole link from the email, "
            "or ask the programme office for a new invitation."
        )
    if invitation.accepted_at is not None:
        return "This invitation has already been used. Sign in, or ask the programme office for a new invitation."
    if invitation.expires_at <= timezone.now():
        return (
            f"This invitation expired on {_day(timezone.localtime(invitation.expires_at))}. "
            "Ask the programme office to send a new one."
        )
    return ""


@transaction.atomic
def invitation_accept(*, token: str, user: User) -> Organisation:
    """The holder of a valid link becomes a trust admin of the invited organisation. One use only."""
    if not user.is_authenticated or not user.is_active:
        raise PermissionDenied("Sign in to accept an invitation")
    invitation = (
        Invitation.objects.select_for_update()
        .select_related("organisation")
        .filter(token_hash=invitation_token_hash(token))
        .first()
    )
    problem = invitation_problem(invitation)
    if problem:
        raise ValidationError({"token": problem})
    # Conditional update: of two tabs accepting the same link at once, only one succeeds.
    now = timezone.now()
    used = Invitation.objects.filter(pk=invitation.pk, accepted_at__isnull=True).update(
        accepted_by=user, accepted_at=now
    )
    if not used:
        raise ValidationError({"token": invitation_problem(Invitation.objects.get(pk=invitation.pk))})

    organisation = invitation.organisation
    if not user.is_programme_office and user.role != User.Role.TRUST_ADMIN:
        user.role = User.Role.TRUST_ADMIN
        user.save(update_fields=["role"])
    user.organisations.add(organisation)
    event_record(
        action="invitation.accepted",
        actor=user,
        organisation=organisation,
        subject=organisation.ods_code,
        message=f"{user.get_username()} accepted the invitation to {organisation}",
        data={"invitation": invitation.pk, "email": invitation.email},
    )
    return organisation


@transaction.atomic
def account_create_and_accept_invitation(
    *, token: str, email: str, password: str, first_name: str = "", last_name: str = ""
) -> User:
    """Someone without an account follows an invitation link: create a local account and accept, together.

    An invalid or used link creates no account (the whole thing rolls back)."""
    email = email.strip().lower()
    if User.objects.filter(username__iexact=email).exists():
        raise ValidationError({"email": "An account with this email address already exists. Sign in first"})
    user = User(
        username=email,
        email=email,
        first_name=first_name.strip(),
        last_name=last_name.strip(),
        role=User.Role.TRUST_ADMIN,
    )
    user.set_password(password)
    user.save()
    invitation_accept(token=token, user=user)
    return user


# --- updates -----------------------------------------------------------------------------------------------

UPDATABLE_FIELDS = frozenset(
    {*Organisation.GATES, "preferred_window", "notes", "priority", "primary_contact", "technical_contact"}
    | {"blackouts"}
)


@transaction.atomic
def organisation_update(*, actor: User, organisation: Organisation, data: Mapping[str, Any]) -> Organisation:
    """Change gates, contacts, blackouts, window preference, notes; priority is the programme office's.

    `data` holds only the fields to change: gate names -> bool, "preferred_window", "notes", "priority",
    "primary_contact"/"technical_contact" -> ContactData (technical may be None to remove it),
    "blackouts" -> the complete new list of BlackoutData."""
    require_administer(actor, organisation)
    unknown = set(data) - UPDATABLE_FIELDS
    if unknown:
        raise ValueError(f"organisation_update cannot change: {', '.join(sorted(unknown))}")
    if "priority" in data and not actor.is_programme_office:
        raise PermissionDenied("Only the programme office can set an organisation's priority")

    organisation = Organisation.objects.select_for_update().get(pk=organisation.pk)
    changed: list[str] = []
    for field in (*Organisation.GATES, "notes"):
        if field in data and getattr(organisation, field) != data[field]:
            setattr(organisation, field, data[field])
            changed.append(field)
    if "preferred_window" in data:
        _choice("preferred_window", data["preferred_window"], Organisation.WindowPreference)
        if organisation.preferred_window != data["preferred_window"]:
            organisation.preferred_window = data["preferred_window"]
            changed.append("preferred_window")
    if "priority" in data:
        priority = data["priority"]
        if not isinstance(priority, int) or not 0 <= priority <= 32767:
            raise ValidationError({"priority": "Enter a priority between 0 and 32767"})
        if organisation.priority != priority:
            organisation.priority = priority
            changed.append("priority")
    if changed:
        organisation.save()

    contacts_before = _contact_snapshot(organisation)
    if "primary_contact" in data:
        _check_contact("primary_contact", data["primary_contact"], required=True)
        _save_contact(organisation, Contact.Role.PRIMARY, data["primary_contact"])
    if "technical_contact" in data:
        _check_contact("technical_contact", data["technical_contact"], required=False)
        _save_contact(organisation, Contact.Role.TECHNICAL, data["technical_contact"])
    contacts_after = _contact_snapshot(organisation)
    for role, field in (
        (Contact.Role.PRIMARY, "primary_contact"),
        (Contact.Role.TECHNICAL, "technical_contact"),
    ):
        if contacts_before.get(role) != contacts_after.get(role):
            changed.append(field)

    if "blackouts" in data:
        blackouts = list(data["blackouts"])
        _check_blackouts(blackouts)
        before = _blackout_snapshot(organisation)
        after = sorted((b.starts_on, b.ends_on, b.reason) for b in blackouts)
        if sorted(before) != after:
            _replace_blackouts(organisation, blackouts)
            changed.append("blackouts")

    if changed:
        event_record(
            action="organisation.updated",
            actor=actor,
            organisation=organisation,
            subject=organisation.ods_code,
            message=f"{actor.get_username()} changed {', '.join(changed)}",
            data={"changed": changed},
        )
    return organisation
