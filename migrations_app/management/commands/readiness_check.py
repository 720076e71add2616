"""Run a readiness check (engine pre-flight) from the command line, through the same service as the pages:

python manage.py readiness_check RJ1 RRV        # these organisations' mailboxes, one check each
python manage.py readiness_check --unchecked    # every mailbox in the programme never checked yet
python manage.py readiness_check RJ1 --here     # in this process, not by the workers (no worker needed)

Without --here the checks are queued for the workers and this command returns at once; the organisation page
and /api/v1/readiness-checks/<id>/ show their progress.
"""

from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from migrations_app.models import Organisation
from migrations_app.services.readiness.checks import readiness_check_dispatch, readiness_check_start


class Command(BaseCommand):
    help = "Run a readiness check of organisations' mailboxes, or of every mailbox never checked"

    def add_arguments(self, parser):
        parser.add_argument("ods_codes", nargs="*", help="ODS codes")
        parser.add_argument("--unchecked", action="store_true", help="every mailbox never checked yet")
        parser.add_argument("--here", action="store_true", help="run the pre-flight in this process")

    def handle(self, *args, ods_codes, unchecked, here, **options):
        if bool(ods_codes) == bool(unchecked):
            raise CommandError("Name the organisations (ODS codes), or give --unchecked")
        scopes = [{"unchecked": True}] if unchecked else []
        if ods_codes:
            codes = {c.upper() for c in ods_codes}
            organisations = list(Organisation.objects.filter(ods_code__in=codes).order_by("ods_code"))
            missing = codes - {o.ods_code for o in organisations}
            if missing:
                raise CommandError(f"No organisation with ODS code {', '.join(sorted(missing))}")
            scopes = [{"organisation": o} for o in organisations]
        for scope in scopes:
            if here:
                with transaction.atomic():
                    check = readiness_check_start(actor=None, queue=False, **scope)
                check = readiness_check_dispatch(check_id=check.pk, inline=True)
                self.stdout.write(
                    self.style.SUCCESS(
                        f"Check {check.pk}: {check.total} mailboxes, {check.ready} ready, {check.blocked} blocked"
                        + (f", {check.unchecked} not checked" if check.unchecked else "")
                    )
                )
            else:
                with transaction.atomic():
                    check = readiness_check_start(actor=None, **scope)
                self.stdout.write(
                    f"Check {check.pk} queued for the workers: /api/v1/readiness-checks/{check.pk}/"
                )
