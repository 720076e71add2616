"""import_mailboxes FILE [--org CODE] [--import-valid-rows]: the inventory import from the command line.

Without --org the file is a national one (an ods_code column names each row's organisation): run by the
programme office's operators.
"""

from migrations_app.management.import_command import ImportCommand
from migrations_app.services.imports import inventory_import


class Command(ImportCommand):
    help = "Import a mailbox inventory CSV (email, display_name, kind, size_bytes, item_count, affinity_group[, target_upn])"
    what = "inventory"

    def run_import(self, **kwargs):
        return inventory_import(**kwargs)
