"""Tiny helpers that read settings from the environment and fail loudly on a bad value."""

import os

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def load_env_file(path) -> None:
    """KEY=VALUE lines (blank lines and # comments skipped) into the environment, never over a variable that is
    already set. `make run` writes var/.env so that manage.py commands run later on that checkout act on the
    same portal (its DEBUG, database, broker and cache) without retyping them."""
    try:
        text = open(path, encoding="utf-8").read()  # noqa: PTH123, SIM115
    except FileNotFoundError:
        return
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        os.environ.setdefault(key.strip(), value.strip())


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use 1/0, true/false, yes/no)")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a whole number") from None


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from None


def env_rates(name: str) -> dict[str, float]:
    """`CODE=rate,CODE=rate` (probabilities between 0 and 1), e.g. SIMULATED_FAILURE_RATES=THROTTLED=0.03."""
    rates = {}
    for item in env_list(name):
        code, _, rate = item.partition("=")
        try:
            rates[code.strip()] = float(rate)
        except ValueError:
            raise ImproperlyConfigured(
                f"{name}: {item!r} is not CODE=rate (a number between 0 and 1)"
            ) from None
    return rates


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]
