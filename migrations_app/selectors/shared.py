"""Figures kept for a moment in the shared cache (Redis in production) for everyone who asks meanwhile: the
live wave fragment, its figures, the programme's support rate. The callers say for how long and under which
key (one per set of organisations where the figures are scoped, never one per user)."""

from collections.abc import Callable
from typing import TypeVar

from django.core.cache import cache

T = TypeVar("T")


def kept_shared(key: str, seconds: int, compute: Callable[[], T]) -> T:
    """compute()'s value, read from the cache when someone computed it under `key` in the last `seconds`."""
    value = cache.get(key)
    if value is None:
        value = compute()
        cache.set(key, value, seconds)
    return value
