from django.apps import AppConfig


class MigrationsAppConfig(AppConfig):
    name = "migrations_app"
    verbose_name = "Mailbox migration"
    default_auto_field = "django.db.models.BigAutoField"
