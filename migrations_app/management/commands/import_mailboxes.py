"""import_mailboxes FILE [--org CODE] [--import-valid-rows] [--complete [--retire-leavers REASON]]: the inventory
import from the command line.

Without --org the file is a national one (an ods_code column names each row's organisation): run by the
programme office's operators. --complete (with --org): the file lists every mailbox of the organisation; the
ones it leaves out are listed, and retired only when --retire-leavers gives the reason.
"""

from django.core.management.base import CommandError

from migrations_app.management.import_command import ImportCommand
from migrations_app.models import ImportJob
from migrations_app.services.imports import inventory_import
from migrations_app.services.readiness.leavers import leavers_in_file, leavers_retire


class Command(ImportCommand):
    help = "Import a mailbox inventory CSV (email, display_name, kind, size_bytes, item_count, affinity_group[, target_upn])"
    what = "inventory"

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--complete",
            action="store_true",
            help="the file lists every mailbox of the organisation: list the ones it leaves out",
        )
        parser.add_argument(
            "--retire-leavers", metavar="REASON", help="with --complete: retire the ones it leaves out"
        )

    def handle(self, *args, complete: bool, retire_leavers: str | None, **options):
        if (complete or retire_leavers) and not options.get("org"):
            raise CommandError("--complete needs --org: a complete inventory is one organisation's")
        if retire_leavers and not complete:
            raise CommandError("--retire-leavers goes with --complete")
        self._complete = complete
        self._retire = retire_leavers
        super().handle(*args, **options)

    def run_import(self, **kwargs):
        result = inventory_import(**kwargs)
        if self._complete and result.status == ImportJob.Status.SUCCEEDED:
            source, organisation = kwargs["source"], kwargs["organisation"]
            source.seek(0)
            if self._retire:
                done = leavers_retire(
                    organisation=organisation, actor=None, source=source, reason=self._retire
                )
                self.stdout.write(f"{len(done.retirable)} mailbox(es) retired: not in the complete inventory")
            else:
                leavers = leavers_in_file(organisation=organisation, source=source)
                self.stdout.write(f"{leavers.count} mailbox(es) are not in this complete inventory:")
                for _, email, state in leavers.retirable + leavers.in_flight:
                    self.stdout.write(f"  {email} ({state})")
                if leavers.retirable:
                    self.stdout.write('Run again with --retire-leavers "reason" to retire them.')
            for _, email, state in done.in_flight if self._retire else []:
                self.stdout.write(f"  left as it is (being moved): {email} ({state})")
        return result
