"""What import_mailboxes and import_permissions share: arguments, a progress bar, the report, the exit code."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from migrations_app.models import ImportJob, Organisation


class ImportCommand(BaseCommand):
    what = "inventory"

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path)
        parser.add_argument(
            "--org", metavar="CODE", help="the organisation's ODS code; without it, a national file"
        )
        parser.add_argument(
            "--import-valid-rows",
            action="store_true",
            help="import the valid rows even if some rows have errors (by default a file with errors imports nothing)",
        )

    def run_import(self, **kwargs):
        raise NotImplementedError

    def handle(self, *args, file: Path, org: str | None, import_valid_rows: bool, **options):
        organisation = None
        if org:
            try:
                organisation = Organisation.objects.get(ods_code=org.strip().upper())
            except Organisation.DoesNotExist:
                raise CommandError(f"No organisation with ODS code {org!r}") from None
        if not file.is_file():
            raise CommandError(f"No such file: {file}")
        size = file.stat().st_size
        bar = tqdm(
            total=size, unit="B", unit_scale=True, desc=f"{self.what} {file.name}", file=self.stderr._out
        )

        def progress(done: int, total: int) -> None:
            bar.update(done - bar.n)

        try:
            with file.open("rb") as source:
                result = self.run_import(
                    source=source,
                    organisation=organisation,
                    actor=None,
                    import_valid_rows=import_valid_rows,
                    progress=progress,
                    total_bytes=size,
                )
        finally:
            bar.close()
        self.print_summary(result)
        for error in result.errors:
            column = f" [{error.column}]" if error.column else ""
            self.stdout.write(
                f"line {error.line}{column}: {error.message}" + (f" ({error.value})" if error.value else "")
            )
        if result.error_count > len(result.errors):
            self.stdout.write(f"... and {result.error_count - len(result.errors)} more errors")
        if result.status == ImportJob.Status.REJECTED:
            raise CommandError(
                f"Nothing was imported: the file has {result.error_count} error(s). Fix them, or run again with "
                "--import-valid-rows to import the valid rows."
            )

    def print_summary(self, result) -> None:
        self.stdout.write(
            f"{result.status}: {result.rows_total} rows, {result.rows_valid} valid, {result.created} created, "
            f"{result.updated} updated, {result.unchanged} unchanged, {result.error_count} errors"
        )
        ignored = result.summary.get("ignored_columns")
        if ignored:
            self.stdout.write(f"warning: columns the portal does not use were ignored: {', '.join(ignored)}")
