"""API tokens for scripts: made, shown once, stored hashed, revoked. Authentication reads them in
api/authentication.py; nothing else writes them."""

import datetime
import hashlib
import secrets
from collections.abc import Iterable

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from migrations_app.models import ApiToken, User
from migrations_app.services.events import event_record

TOKEN_PREFIX = "mcp_"  # noqa: S105 (a label, not a secret)
# The part of the token after "mcp_" and before "_" that we keep in clear to find the row.
PREFIX_CHARS = 12
# last_used_at is written at most this often per token, so a busy script does not write on every request.
LAST_USED_EVERY = datetime.timedelta(minutes=1)


def token_scopes_for(user: User) -> list[str]:
    """The scopes a token of `user` can use: a viewer only reads, a trust admin reads and writes (approving a
    wave is the programme office's), the programme office everything."""
    if user.is_programme_office:
        return list(ApiToken.Scope.values)
    if user.is_trust_admin:
        return [ApiToken.Scope.READ, ApiToken.Scope.WRITE]
    return [ApiToken.Scope.READ]


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_token(raw: str) -> tuple[str, str] | None:
    """("prefix", "secret") from "mcp_<prefix>_<secret>", or None for anything else."""
    if not raw.startswith(TOKEN_PREFIX):
        return None
    prefix, sep, secret = raw[len(TOKEN_PREFIX) :].partition("_")
    if not sep or len(prefix) != PREFIX_CHARS or not secret:
        return None
    return prefix, secret


@transaction.atomic
def token_create(
    *, user: User, name: str, scopes: Iterable[str], expires_at: datetime.datetime | None
) -> tuple[ApiToken, str]:
    """A new token for `user`; returns the row and the raw token, which is never available again."""
    if not user.is_active:
        raise PermissionDenied("This account is not active")
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Enter a name for the token"})
    scopes = sorted(set(scopes))
    if not scopes:
        raise ValidationError({"scopes": "Choose at least one scope"})
    unknown = set(scopes) - set(ApiToken.Scope.values)
    if unknown:
        raise ValidationError({"scopes": f"Unknown scopes: {', '.join(sorted(unknown))}"})
    beyond = set(scopes) - set(token_scopes_for(user))
    if beyond:
        raise ValidationError({"scopes": f"Your role cannot use these scopes: {', '.join(sorted(beyond))}"})
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError({"expires_at": "The expiry must be in the future"})
    prefix = secrets.token_hex(PREFIX_CHARS // 2)
    secret = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        name=name[:100],
        prefix=prefix,
        secret_hash=token_hash(secret),
        scopes=scopes,
        expires_at=expires_at,
    )
    event_record(
        action="api_token.created",
        actor=user,
        subject=f"{token.name} ({prefix})",
        data={
            "token": token.pk,
            "scopes": scopes,
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
    )
    return token, f"{TOKEN_PREFIX}{prefix}_{secret}"


@transaction.atomic
def token_revoke(*, token: ApiToken, actor: User) -> ApiToken:
    """Revoke a token now. Its owner (or the programme office) may; a second revoke changes nothing."""
    if token.user_id != actor.pk and not actor.is_programme_office:
        raise PermissionDenied("You can only revoke your own tokens")
    updated = ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    token.refresh_from_db()
    if updated:
        event_record(
            action="api_token.revoked",
            actor=actor,
            subject=f"{token.name} ({token.prefix})",
            data={"token": token.pk, "owner": token.user.get_username()},
        )
    return token


def token_authenticate(raw: str) -> ApiToken | None:
    """The live token for a raw bearer value, or None (unknown, wrong secret, revoked, expired, inactive
    user). Records last use at most once a minute per token, with a conditional UPDATE."""
    parts = split_token(raw)
    if parts is None:
        return None
    prefix, secret = parts
    token = ApiToken.objects.select_related("user").filter(prefix=prefix).first()
    if token is None or not secrets.compare_digest(token.secret_hash, token_hash(secret)):
        return None
    now = timezone.now()
    if token.is_revoked or token.is_expired(now) or not token.user.is_active:
        return None
    if token.last_used_at is None or token.last_used_at < now - LAST_USED_EVERY:
        stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - LAST_USED_EVERY)
        ApiToken.objects.filter(stale, pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
    return token
