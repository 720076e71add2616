"""Imports of mailbox inventories (and, through the reader and staging, of permissions), by concern:

- reader: one streaming pass over the file's bytes, the header, counts, errors and results;
- staging: valid rows into a TEMP table (COPY on PostgreSQL), and the import lock;
- inventory: validation of inventory rows (the file to the staging table or straight into the mailbox table);
- upsert: the set-based upsert of staged rows into the mailbox table;
- national: the initial load straight into the mailbox table, indexes built afterwards;
- jobs: uploads as jobs, inline or by a worker, their progress, retries and the stalled-job sweep.

The names other modules use are re-exported here.
"""

from migrations_app.services.imports.inventory import (
    INVENTORY_OPTIONAL,
    INVENTORY_REQUIRED,
    inventory_import,
    run_import,
)
from migrations_app.services.imports.jobs import (
    _progress_key,
    import_job_create,
    import_job_fail_stalled,
    import_job_retry_valid_rows,
    import_job_run,
    import_job_stalled,
    import_progress,
)
from migrations_app.services.imports.reader import (
    EMAIL_RE,
    MAX_REPORTED_ERRORS,
    ImportResult,
    Progress,
    RowError,
    _Errors,
    _Lines,
    _Reader,
    normalise_header,
    read_header,
)
from migrations_app.services.imports.staging import (
    MAILBOX,
    STAGING_BATCH_ROWS,
    Staging,
    StagingColumn,
    lock_mailbox_imports,
)

__all__ = [
    "EMAIL_RE",
    "INVENTORY_OPTIONAL",
    "INVENTORY_REQUIRED",
    "MAILBOX",
    "MAX_REPORTED_ERRORS",
    "STAGING_BATCH_ROWS",
    "ImportResult",
    "Progress",
    "RowError",
    "Staging",
    "StagingColumn",
    "_Errors",
    "_Lines",
    "_Reader",
    "_progress_key",
    "import_job_create",
    "import_job_fail_stalled",
    "import_job_retry_valid_rows",
    "import_job_run",
    "import_job_stalled",
    "import_progress",
    "inventory_import",
    "lock_mailbox_imports",
    "normalise_header",
    "read_header",
    "run_import",
]
