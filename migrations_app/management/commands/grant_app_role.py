"""grant_app_role ROLE: give the portal's least-privileged database role what it needs, run as the migration
role after `migrate` (README, "Database roles")."""

from django.core.management.base import BaseCommand, CommandError

from migrations_app.services.db_roles import app_role_grant


class Command(BaseCommand):
    help = (
        "Grant the portal's database role read/write on its tables, and only SELECT/INSERT on the audit trail"
    )

    def add_arguments(self, parser):
        parser.add_argument("role", help="the role the portal connects as (it must own no table)")

    def handle(self, *args, role, **options):
        try:
            statements = app_role_grant(role=role)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        for statement in statements:
            self.stdout.write(statement)
