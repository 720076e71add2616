"""Organisation scoping, in one place. Every page, API view, task and command asks here what a user may see
and change; nothing else filters by role.

- programme office: everything, and may change everything;
- trust admin: only the organisations they administer (user.organisations), and may change those;
- viewer: everything, read-only.
"""

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet

from migrations_app.models import Event, ImportJob, Mailbox, MailboxCounter, Organisation, User


def organisations_visible_to(user: User) -> QuerySet[Organisation]:
    if not user.is_authenticated or not user.is_active:
        return Organisation.objects.none()
    if user.is_programme_office or user.is_viewer:
        return Organisation.objects.all()
    if user.is_trust_admin:
        return Organisation.objects.filter(admins=user)
    return Organisation.objects.none()


def organisations_administered_by(user: User) -> QuerySet[Organisation]:
    """The organisations whose data this user may change."""
    if not user.is_authenticated or not user.is_active:
        return Organisation.objects.none()
    if user.is_programme_office:
        return Organisation.objects.all()
    if user.is_trust_admin:
        return Organisation.objects.filter(admins=user)
    return Organisation.objects.none()


def mailboxes_visible_to(user: User) -> QuerySet[Mailbox]:
    if user.is_authenticated and (user.is_programme_office or user.is_viewer):
        return Mailbox.objects.all()
    return Mailbox.objects.filter(organisation__in=organisations_visible_to(user))


def import_jobs_visible_to(user: User) -> QuerySet[ImportJob]:
    if user.is_authenticated and (user.is_programme_office or user.is_viewer):
        return ImportJob.objects.all()
    return ImportJob.objects.filter(organisation__in=organisations_visible_to(user))


def events_visible_to(user: User) -> QuerySet[Event]:
    if user.is_authenticated and (user.is_programme_office or user.is_viewer):
        return Event.objects.all()
    return Event.objects.filter(organisation__in=organisations_visible_to(user))


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
    return user.is_trust_admin and user.organisations.filter(pk=organisation.pk).exists()


def require_administer(user: User, organisation: Organisation) -> None:
    if not can_administer(user, organisation):
        raise PermissionDenied(f"You do not administer {organisation.ods_code}")


def require_programme_office(user: User) -> None:
    if not (user.is_authenticated and user.is_programme_office):
        raise PermissionDenied("Only the programme office can do this")
