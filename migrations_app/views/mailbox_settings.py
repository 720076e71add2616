"""The mailbox settings CSV (what the exchange engine moved, and what it could not, with the reason) for an
organisation or a wave: what the tenant's Exchange admin grants by hand. A trust admin gets only their own
organisation's mailboxes (another organisation is a 404; in a shared wave, only their share)."""

from django.contrib.auth.decorators import login_required

from migrations_app.models import Mailbox
from migrations_app.selectors.mailbox_settings import OUTCOMES, SETTINGS_CSV_HEADER, settings_csv_rows
from migrations_app.selectors.scoping import mailboxes_visible_to
from migrations_app.views._csv import csv_response
from migrations_app.views.organisations import _visible_organisation
from migrations_app.views.waves import _visible_wave


def _outcome(request) -> str:
    outcome = request.GET.get("outcome", "skipped")
    return outcome if outcome in OUTCOMES else "skipped"


@login_required
def organisation_settings_csv(request, ods_code: str):
    organisation = _visible_organisation(request, ods_code)
    mailboxes = Mailbox.objects.filter(organisation=organisation)
    outcome = _outcome(request)
    return csv_response(
        f"{organisation.ods_code}-mailbox-settings-{outcome}.csv",
        SETTINGS_CSV_HEADER,
        settings_csv_rows(mailboxes, outcome),
    )


@login_required
def wave_settings_csv(request, pk: int):
    wave = _visible_wave(request, pk)
    mailboxes = mailboxes_visible_to(request.user).filter(wave=wave)
    outcome = _outcome(request)
    return csv_response(
        f"wave-{wave.pk}-mailbox-settings-{outcome}.csv",
        SETTINGS_CSV_HEADER,
        settings_csv_rows(mailboxes, outcome),
    )
