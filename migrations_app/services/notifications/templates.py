"""The words for each moment. The programme office edits them and previews each with a real mailbox before
switching it on; until then nothing is scheduled for that moment.

Placeholders are written as GOV.UK Notify writes them, in double brackets. The portal fills them in and hands
Notify the finished subject and body (the Notify template for each moment is just ((subject)) and ((body))),
so what the preview shows is exactly what is sent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from migrations_app.models import Mailbox, Moment, NotificationTemplate, OrganisationNotice, User, Wave
from migrations_app.selectors.scoping import require_administer, require_programme_office
from migrations_app.services.events import event_record
from migrations_app.services.planning import LONDON

PLACEHOLDERS = ("name", "address", "organisation", "window", "paragraph", "help_url")
# The digest to an organisation's contacts (digest.py fills these in when it is sent).
DIGEST_PLACEHOLDERS = ("organisation", "wave", "window", "occasion", "summary", "portal_url", "help_url")
_PLACEHOLDER = re.compile(r"\(\(([a-z_]+)\)\)")

_AFTER = (
    "Your mailbox ((address)) has moved to Exchange Online.\n\n"
    "What to do now:\n"
    "* On your phone, open the mail app and sign in again with your work address and password.\n"
    "* Your address has not changed. Mail sent to your old mailbox is delivered to the new one.\n"
    "* Your mail, calendar and contacts have moved with you.\n\n"
    "((paragraph))\n\nIf something is not right, ask for help: ((help_url))"
)
DEFAULTS: dict[str, tuple[str, str]] = {
    Moment.FIRST: (
        "Your NHS mailbox moves on ((window))",
        "Dear ((name)),\n\nYour mailbox ((address)) at ((organisation)) moves to Exchange Online on ((window)). "
        "You do not need to do anything now. We will remind you a few days before.\n\n((paragraph))\n\n"
        "Questions: ((help_url))",
    ),
    Moment.REMINDER: (
        "Reminder: your NHS mailbox moves on ((window))",
        "Dear ((name)),\n\nYour mailbox ((address)) moves on ((window)). Keep working as usual; you may be asked to "
        "sign in again on your phone afterwards.\n\n((paragraph))\n\nQuestions: ((help_url))",
    ),
    Moment.DAY_OF: (
        "Your NHS mailbox moves tonight",
        "Dear ((name)),\n\nYour mailbox ((address)) moves today, ((window)). Leave your computer signed in. "
        "Tomorrow you may need to sign in again on your phone.\n\n((paragraph))",
    ),
    Moment.AFTER: ("Your NHS mailbox has moved: what to do now", "Dear ((name)),\n\n" + _AFTER),
    Moment.DELAYED: (
        "The move of your NHS mailbox is delayed",
        "Dear ((name)),\n\nThe move of your mailbox ((address)) did not finish as planned. Nothing is lost: you "
        "keep using your mailbox as before, and your IT team will tell you the new date.\n\n((paragraph))\n\n"
        "Questions: ((help_url))",
    ),
    Moment.UPDATE: (
        "New date for the move of your NHS mailbox: ((window))",
        "Dear ((name)),\n\nThe move of your mailbox ((address)) has a new date: ((window)). Ignore the date we "
        "gave you before.\n\n((paragraph))\n\nQuestions: ((help_url))",
    ),
    Moment.DIGEST: (
        "Mailbox moves at ((organisation)): ((occasion))",
        "Hello,\n\nThis is the summary for ((organisation)) of ((wave)), ((window)): ((occasion)).\n\n"
        "((summary))\n\nEach mailbox, what its owner was told and the addresses to fix are on your "
        "organisation's page in the migration portal: ((portal_url))\n\n"
        "Staff who need help after their move can ask at ((help_url))",
    ),
}


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


def template_for(moment: str) -> NotificationTemplate:
    """The stored template for a moment, or the default words (not saved, not switched on)."""
    template = NotificationTemplate.objects.filter(moment=moment).first()
    if template is None:
        subject, body = DEFAULTS[moment]
        template = NotificationTemplate(moment=moment, subject=subject, body=body, enabled=False)
    return template


def templates_all() -> list[NotificationTemplate]:
    stored = {t.moment: t for t in NotificationTemplate.objects.all()}
    return [stored.get(m) or template_for(m) for m in Moment.values]


def window_text(starts_at, ends_at) -> str:
    """'Friday 5 June 2026, 18:00 to Monday 8 June 2026, 06:00 (UK time)': always London time."""
    starts, ends = starts_at.astimezone(LONDON), ends_at.astimezone(LONDON)
    fmt = "%A %-d %B %Y, %H:%M"
    return f"{starts.strftime(fmt)} to {ends.strftime(fmt)} (UK time)"


def render(text: str, values: dict[str, str]) -> str:
    return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), text)


def personalisation(
    *, mailbox, organisation_name: str, paragraph: str, wave: Wave | None, window: str | None = None
) -> dict:
    """The owner's placeholders; `mailbox` needs its email and display_name, `window` is the wave's window
    text when the caller has it already (the sender renders it once per wave)."""
    if window is None:
        window = window_text(wave.starts_at, wave.ends_at) if wave else "a date to be agreed"
    return {
        "name": mailbox.display_name or mailbox.email,
        "address": mailbox.email,
        "organisation": organisation_name,
        "window": window,
        "paragraph": paragraph,
        "help_url": settings.PUBLIC_HELP_URL,
    }


def template_render(*, template: NotificationTemplate, values: dict[str, str]) -> Rendered:
    subject = render(template.subject, values).replace("\n", " ")
    body = re.sub(r"\n{3,}", "\n\n", render(template.body, values)).strip()
    return Rendered(subject=subject, body=body)


def placeholders_for(moment: str) -> tuple[str, ...]:
    return DIGEST_PLACEHOLDERS if moment == Moment.DIGEST else PLACEHOLDERS


def template_preview(*, moment: str, mailbox: Mailbox) -> Rendered:
    """What the mailbox's owner would get for this moment now: real name, organisation, window, paragraph.
    For the digest: what its organisation's contacts would get about its wave now, with today's figures (the
    summary after the move once the window is over, the reminder's before)."""
    organisation = mailbox.organisation
    if moment == Moment.DIGEST:
        from migrations_app.services.notifications.digest import digest_placeholders

        wave = Wave.objects.filter(pk=mailbox.wave_id).first() if mailbox.wave_id else None
        if wave is None:
            raise ValidationError("Preview the digest with a mailbox that is in a wave")
        about = Moment.AFTER if timezone.now() >= wave.ends_at else Moment.REMINDER
        values = digest_placeholders(organisation=organisation, wave=wave, moment=about)
        return template_render(template=template_for(moment), values=values)
    notice = OrganisationNotice.objects.filter(organisation=organisation).values_list("paragraph", flat=True)
    wave = Wave.objects.filter(pk=mailbox.wave_id).first() if mailbox.wave_id else None
    values = personalisation(
        mailbox=mailbox, organisation_name=organisation.name, paragraph=notice.first() or "", wave=wave
    )
    return template_render(template=template_for(moment), values=values)


def _check(text: str, field: str, allowed: tuple[str, ...]) -> None:
    unknown = sorted({name for name in _PLACEHOLDER.findall(text) if name not in allowed})
    if unknown:
        raise ValidationError(
            {field: f"Unknown placeholder(s): {', '.join(unknown)}. Use {', '.join(allowed)}"}
        )


@transaction.atomic
def template_update(*, moment: str, actor: User, subject: str, body: str) -> NotificationTemplate:
    """Change the words of a moment. A change switches the template off until it is previewed again."""
    require_programme_office(actor)
    if moment not in Moment.values:
        raise ValidationError(f"Unknown moment {moment}")
    subject, body = (subject or "").strip(), (body or "").strip()
    if not subject or not body:
        raise ValidationError("Give the template a subject and a body")
    _check(subject, "subject", placeholders_for(moment))
    _check(body, "body", placeholders_for(moment))
    template, _ = NotificationTemplate.objects.update_or_create(
        moment=moment,
        defaults={
            "subject": subject,
            "body": body,
            "enabled": False,
            "previewed_at": None,
            "updated_by": actor,
        },
    )
    event_record(action="notification.template_changed", actor=actor, subject=template.get_moment_display())
    return template


@transaction.atomic
def template_previewed(*, moment: str, actor: User) -> NotificationTemplate:
    """Record that the programme office looked at the template with real data (needed to switch it on)."""
    require_programme_office(actor)
    template = template_for(moment)
    template.previewed_at = timezone.now()
    template.updated_by = actor
    template.save()
    return template


@transaction.atomic
def template_switch(*, moment: str, actor: User, enabled: bool) -> NotificationTemplate:
    require_programme_office(actor)
    template = template_for(moment)
    if enabled and template.previewed_at is None:
        raise ValidationError("Preview the template with a real mailbox before switching it on")
    template.enabled = enabled
    template.updated_by = actor
    template.save()
    event_record(
        action="notification.template_on" if enabled else "notification.template_off",
        actor=actor,
        subject=template.get_moment_display(),
    )
    return template


@transaction.atomic
def organisation_notice_set(*, organisation, actor: User, paragraph: str) -> OrganisationNotice:
    """The paragraph an organisation adds to its staff's notifications (its own service desk, its app)."""
    require_administer(actor, organisation)
    paragraph = (paragraph or "").strip()
    if len(paragraph) > 2000:
        raise ValidationError({"paragraph": "Keep the paragraph under 2,000 characters"})
    if _PLACEHOLDER.search(paragraph):
        raise ValidationError({"paragraph": "The paragraph cannot contain placeholders"})
    notice, _ = OrganisationNotice.objects.update_or_create(
        organisation=organisation, defaults={"paragraph": paragraph}
    )
    event_record(
        action="organisation.notice_changed",
        actor=actor,
        organisation=organisation,
        subject=organisation.ods_code,
    )
    return notice
