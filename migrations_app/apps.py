from django.apps import AppConfig
from django.db.models.signals import post_migrate


class MigrationsAppConfig(AppConfig):
    name = "migrations_app"
    verbose_name = "Mailbox migration"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # the signed-in user's kept copy is forgotten when it changes, in every process (signals)
        from migrations_app import auth_backends  # noqa: F401
        from migrations_app.services.counters import counters_ensure_sqlite_triggers

        # schema upkeep, not business logic: see counters_ensure_sqlite_triggers
        post_migrate.connect(counters_ensure_sqlite_triggers, sender=self)
