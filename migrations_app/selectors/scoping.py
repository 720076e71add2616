"""Organisation scoping, in one place. Every page, API view, task and command asks here what a user may see
and change; nothing else filters by role.

- programme office: everything, and may change everything;
- trust admin: only the organisations they administer (user.organisations), and may change those;
- viewer: everything, read-only.
"""

from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet

from migrations_app.auth_backends import ORGANISATION_IDS, organisation_ids_of
from migrations_app.models import (
    Event,
    ImportJob,
    Mailbox,
    MailboxCounter,
    Organisation,
    ReadinessCheck,
    User,
    Webhook,
)


def organisations_visible_to(user: User) -> QuerySet[Organisation]:
    if not user.is_authenticated or not user.is_active:
        return Organisation.objects.none()
    if user.is_programme_office or user.is_viewer:
        return Organisation.objects.all()
    if user.is_trust_admin:
        return _own_organisations(user)
    return Organisation.objects.none()


def organisations_administered_by(user: User) -> QuerySet[Organisation]:
    """The organisations whose data this user may change."""
    if not user.is_authenticated or not user.is_active:
        return Organisation.objects.none()
    if user.is_programme_office:
        return Organisation.objects.all()
    if user.is_trust_admin:
        return _own_organisations(user)
    return Organisation.objects.none()


def _own_organisations(user: User) -> QuerySet[Organisation]:
    """A trust admin's organisations: by id when the request already knows them (auth_backends)."""
    kept = getattr(user, ORGANISATION_IDS, None)
    if kept is not None:
        return Organisation.objects.filter(pk__in=kept)
    return Organisation.objects.filter(admins=user)


def _own_organisation_ids(user: User) -> list[int]:
    """A trust admin's organisation ids, as a list for `organisation_id IN (...)`. A list rather than a
    subquery: for an admin of one organisation PostgreSQL then reads "organisation = X ... ORDER BY id" straight
    off the (organisation, ..., id) indexes and stops after a page, instead of fetching and sorting every row
    of the trust for each page. Read from the membership table alone: joining organisation made PostgreSQL
    hash all 22,000 of them (12 ms a request, bench/api.py)."""
    if not (user.is_authenticated and user.is_trust_admin):
        return []
    kept = getattr(user, ORGANISATION_IDS, None)  # the signed-in user's, read with it (auth_backends)
    if kept is not None:
        return list(kept)
    return organisation_ids_of(user.pk)


def mailboxes_visible_to(user: User) -> QuerySet[Mailbox]:
    if user.is_authenticated and (user.is_programme_office or user.is_viewer):
        return Mailbox.objects.all()
    return Mailbox.objects.filter(organisation_id__in=_own_organisation_ids(user))


def scope_key(user: User) -> str:
    """Who sees the same figures: one key for everyone who sees the whole programme, one per set of
    organisations for trust admins (a shared cache of figures is keyed by it, never by the user)."""
    if user.is_authenticated and user.is_active and (user.is_programme_office or user.is_viewer):
        return "all"
    ids = _own_organisation_ids(user) if user.is_authenticated and user.is_active else []
    return "orgs:" + ",".join(str(i) for i in sorted(ids)) if ids else "none"


def import_jobs_visible_to(user: User) -> QuerySet[ImportJob]:
    if user.is_authenticated and (user.is_programme_office or user.is_viewer):
        return ImportJob.objects.all()
    return ImportJob.objects.filter(organisation_id__in=_own_organisation_ids(user))


def events_visible_to(user: User) -> QuerySet[Event]:
    if user.is_authenticated and (user.is_programme_office or user.is_viewer):
        return Event.objects.all()
    return Event.objects.filter(organisation_id__in=_own_organisation_ids(user))


def webhooks_visible_to(user: User) -> QuerySet[Webhook]:
    """Webhooks carry an organisation's integration settings: only those who administer it see them."""
    return Webhook.objects.filter(organisation__in=organisations_administered_by(user))


def counters_visible_to(user: User) -> QuerySet[MailboxCounter]:
    """The mailbox counters of the organisations the user sees (the status pages' counts)."""
    if user.is_authenticated and (user.is_programme_office or user.is_viewer):
        return MailboxCounter.objects.all()
    return MailboxCounter.objects.filter(organisation_id__in=organisations_visible_to(user).values("pk"))


def can_administer(user: User, organisation: Organisation) -> bool:
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_programme_office:
        return True
    return organisation.pk in _own_organisation_ids(user)  # [] unless a trust admin


def require_administer(user: User, organisation: Organisation) -> None:
    if not can_administer(user, organisation):
        raise PermissionDenied(f"You do not administer {organisation.ods_code}")


def require_programme_office(user: User) -> None:
    if not (user.is_authenticated and user.is_programme_office):
        raise PermissionDenied("Only the programme office can do this")


def require_planner(user: User) -> None:
    if not (user.is_authenticated and user.is_programme_office):
        raise PermissionDenied("Only the programme office can plan waves")


def readiness_checks_visible_to(user: User) -> QuerySet[ReadinessCheck]:
    """Checks of the organisations the user sees; a chosen-set or wave check is the programme's (programme
    office and viewers), or the requester's own."""
    if user.is_authenticated and (user.is_programme_office or user.is_viewer):
        return ReadinessCheck.objects.all()
    if not user.is_authenticated:
        return ReadinessCheck.objects.none()
    return ReadinessCheck.objects.filter(
        Q(organisation_id__in=_own_organisation_ids(user)) | Q(organisation__isnull=True, requested_by=user)
    )


def support_requests_visible_to(user: User):
    """Support requests name a person: the programme office and the organisation's own admins see them (not
    viewers, not other trusts)."""
    from migrations_app.models import SupportRequest

    if user.is_authenticated and user.is_programme_office:
        return SupportRequest.objects.all()
    return SupportRequest.objects.filter(organisation_id__in=_own_organisation_ids(user))
