"""Mark inventoried mailboxes ready without pre-flight, so the demo programme can be planned:

python manage.py mailboxes_ready            # every organisation
python manage.py mailboxes_ready RJ1 RRV    # some
"""

from django.core.management.base import BaseCommand, CommandError

from migrations_app.models import Organisation
from migrations_app.services.programme import mailboxes_mark_ready


class Command(BaseCommand):
    help = "Mark inventoried mailboxes ready (a stand-in for pre-flight in demos and drills)"

    def add_arguments(self, parser):
        parser.add_argument("ods_codes", nargs="*", help="ODS codes (default: every organisation)")

    def handle(self, *args, ods_codes, **options):
        organisations = None
        if ods_codes:
            codes = {c.upper() for c in ods_codes}
            organisations = list(Organisation.objects.filter(ods_code__in=codes))
            missing = codes - {o.ods_code for o in organisations}
            if missing:
                raise CommandError(f"No organisation with ODS code {', '.join(sorted(missing))}")
        count = mailboxes_mark_ready(actor=None, organisations=organisations)
        self.stdout.write(self.style.SUCCESS(f"{count} mailboxes are ready to plan"))
