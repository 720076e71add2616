"""People and API access: the portal's users (role, organisations), API tokens and idempotency keys."""

import datetime

from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """A person who signs in. Local accounts now; Entra ID accounts are keyed by `entra_oid` later."""

    class Role(models.TextChoices):
        PROGRAMME_OFFICE = "programme_office", "Programme office"
        TRUST_ADMIN = "trust_admin", "Trust admin"
        VIEWER = "viewer", "Read-only viewer"

    role = models.CharField(max_length=20, choices=Role.choices, default=Role.VIEWER)
    # The organisations a trust admin administers (a user may administer several).
    organisations = models.ManyToManyField(
        "Organisation",
        blank=True,
        related_name="admins",
        help_text="Organisations this trust admin administers",
    )
    entra_oid = models.CharField(max_length=64, null=True, blank=True, unique=True, editable=False)

    @property
    def is_programme_office(self) -> bool:
        return self.is_active and (self.role == self.Role.PROGRAMME_OFFICE or self.is_superuser)

    @property
    def is_trust_admin(self) -> bool:
        return self.is_active and self.role == self.Role.TRUST_ADMIN

    @property
    def is_viewer(self) -> bool:
        return self.is_active and self.role == self.Role.VIEWER


class ApiToken(models.Model):
    """A per-user token for scripts. Only a short prefix (for lookup) and the SHA-256 of the secret are kept:
    the raw token is shown once, when it is made (services.tokens.token_create)."""

    class Scope(models.TextChoices):
        READ = "read", "Read"
        WRITE = "write", "Write"
        APPROVE = "approve", "Approve waves"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    scopes = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "-created_at"], name="apitoken_user_idx")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix})"

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    def is_expired(self, now: datetime.datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes


class IdempotencyKey(models.Model):
    """The first response to a POST sent with an `Idempotency-Key` header, kept for a day so a retry of the
    same request gets it back instead of doing the work twice (api/idempotency.py, services/idempotency.py).

    One row per (user, key): the unique constraint is what stops two concurrent duplicates from both running.
    A row with no response yet is a request still in flight."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    # SHA-256 of method, path, query string, content type and body: the same key with another request is refused.
    fingerprint = models.CharField(max_length=64)
    method = models.CharField(max_length=10)
    path = models.CharField(max_length=2000)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_headers = models.JSONField(default=dict, blank=True)
    response_body = models.BinaryField(blank=True, default=b"")
    created_at = models.DateTimeField()
    completed_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotencykey_user_key_unique")]
        indexes = [models.Index(fields=["expires_at"], name="idempotencykey_expires_idx")]

    def __str__(self) -> str:
        return f"{self.method} {self.path} ({self.key})"

    @property
    def in_flight(self) -> bool:
        return self.response_status is None
