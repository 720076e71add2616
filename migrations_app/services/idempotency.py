"""Safe retries of POST requests: the first response to an `Idempotency-Key` is kept and handed back to every
retry of the same request, per user, for API_IDEMPOTENCY_TTL_HOURS.

The unique (user, key) constraint is the lock: of two concurrent duplicates only one INSERT succeeds, the
other sees the row and is told the first is still in flight (409). The reservation is committed at once
(it runs outside the request's work), so a concurrent duplicate on another process sees it too."""

import datetime
import hashlib
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from migrations_app.models import IdempotencyKey, User

# Headers of the first response that a replay repeats (Content-Type and the Location of a created job).
KEPT_HEADERS = ("Content-Type", "Location", "Retry-After")


@dataclass(frozen=True)
class Reservation:
    """What to do with a request: `row` is ours to run (and complete or release) when `outcome` is "run";
    otherwise "replay" (row holds the first response), "in_flight" or "mismatch"."""

    outcome: str
    row: IdempotencyKey


def idempotency_fingerprint(*, method: str, path: str, query: str, content_type: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.upper(), path, query, content_type.split(";")[0].strip().lower()):
        digest.update(part.encode())
        digest.update(b"\0")
    digest.update(body)
    return digest.hexdigest()


def _ttl() -> datetime.timedelta:
    return datetime.timedelta(hours=settings.API_IDEMPOTENCY_TTL_HOURS)


def _abandoned(now: datetime.datetime) -> Q:
    """Expired rows, and reservations whose request died before completing (so the key is not stuck)."""
    stale = now - datetime.timedelta(seconds=settings.API_IDEMPOTENCY_IN_FLIGHT_SECONDS)
    return Q(expires_at__lte=now) | Q(response_status__isnull=True, created_at__lt=stale)


def idempotency_reserve(*, user: User, key: str, fingerprint: str, method: str, path: str) -> Reservation:
    now = timezone.now()
    for _ in range(2):
        try:
            with transaction.atomic():
                row = IdempotencyKey.objects.create(
                    user=user,
                    key=key,
                    fingerprint=fingerprint,
                    method=method,
                    path=path[:2000],
                    created_at=now,
                    expires_at=now + _ttl(),
                )
            return Reservation("run", row)
        except IntegrityError:
            pass
        row = IdempotencyKey.objects.filter(user=user, key=key).first()
        if row is None:  # released between our INSERT and this read: try once more
            continue
        if IdempotencyKey.objects.filter(_abandoned(now), pk=row.pk).delete()[0]:
            continue
        if row.fingerprint != fingerprint:
            return Reservation("mismatch", row)
        return Reservation("in_flight" if row.in_flight else "replay", row)
    return Reservation("in_flight", row)


def idempotency_complete(*, row: IdempotencyKey, status: int, headers: dict[str, str], body: bytes) -> None:
    IdempotencyKey.objects.filter(pk=row.pk).update(
        response_status=status,
        response_headers={k: v for k, v in headers.items() if k in KEPT_HEADERS},
        response_body=body,
        completed_at=timezone.now(),
    )


def idempotency_release(*, row: IdempotencyKey) -> None:
    """Forget a reservation whose request did no work (refused, throttled, crashed): a retry may run."""
    IdempotencyKey.objects.filter(pk=row.pk, response_status__isnull=True).delete()


def idempotency_keys_purge() -> int:
    """Delete expired keys (beat, hourly). One indexed DELETE."""
    return IdempotencyKey.objects.filter(_abandoned(timezone.now())).delete()[0]
