"""import_permissions FILE [--org CODE] [--import-valid-rows]: affinity groups from a permissions CSV."""

from migrations_app.management.import_command import ImportCommand
from migrations_app.services.affinity import permissions_import


class Command(ImportCommand):
    help = (
        "Import a mailbox permissions CSV (mailbox, delegate, right) and group delegates with their mailboxes"
    )
    what = "permissions"

    def run_import(self, **kwargs):
        return permissions_import(**kwargs)

    def print_summary(self, result) -> None:
        super().print_summary(result)
        summary = result.summary
        if not summary:
            return
        self.stdout.write(f"Mailboxes in groups from this file: {summary['mailboxes_grouped']}")
        for group in summary["largest_groups"][:10]:
            self.stdout.write(
                f"  {group['group']}: {group['mailboxes']} mailboxes, {group['bytes']:,} bytes, "
                f"{group['organisations']} organisation(s)"
            )
        if summary["groups_over_capacity"]:
            self.stdout.write(
                self.style.WARNING(
                    f"{summary['groups_over_capacity']} group(s) are larger than one evening wave "
                    f"({summary['wave_capacity']} mailboxes): split their permissions or plan a weekend wave."
                )
            )
