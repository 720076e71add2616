"""Failed sign-ins slow and then stop a password guesser: per account and per client address, counted
atomically in the shared cache (migrations_app/ratelimit.py).

- From the SIGN_IN_SLOW_AFTER-th failure for an account, the next attempt for it must wait 2^(n - slow_after)
  seconds (1, 2, 4, ...): a person mistyping waits a moment, a script is slowed to a crawl.
- At SIGN_IN_MAX_FAILURES failures for an account, or SIGN_IN_MAX_FAILURES_PER_ADDRESS from one address, within
  SIGN_IN_LOCKOUT_SECONDS, that account (or address) is refused for SIGN_IN_LOCKOUT_SECONDS, even with the
  right password, and the lockout is written to the audit log (an Event).
- A successful sign-in clears the account's failures.

The refusal names no reason that would tell a guesser whether the account exists."""

import hashlib

from django.conf import settings
from django.core.cache import cache

from migrations_app.ratelimit import counter_incr
from migrations_app.services.events import event_record

REFUSED = "Too many failed sign-ins. Try again in {minutes} minutes"
WAIT = "Wait {seconds} seconds before trying again"


def _key(kind: str, ident: str) -> str:
    return f"signin:{kind}:{hashlib.sha256(ident.encode()).hexdigest()[:32]}"


def _account(username: str) -> str:
    return username.strip().lower()[:150]


def sign_in_refusal(*, username: str, address: str) -> str | None:
    """Why this attempt may not even be checked (locked out, or too soon after the last failure), or None."""
    account = _account(username)
    if cache.get(_key("locked", account)) or cache.get(_key("locked-address", address)):
        return REFUSED.format(minutes=max(1, settings.SIGN_IN_LOCKOUT_SECONDS // 60))
    wait = cache.get(_key("wait", account))
    if wait:
        return WAIT.format(seconds=wait)
    return None


def sign_in_failed(*, username: str, address: str) -> None:
    """Count one failure for the account and for the address; slow, then lock out, either."""
    account, window = _account(username), settings.SIGN_IN_LOCKOUT_SECONDS
    failures = counter_incr(_key("failures", account), window)
    from_address = counter_incr(_key("failures-address", address), window)
    if failures >= settings.SIGN_IN_MAX_FAILURES and cache.add(_key("locked", account), 1, window):
        event_record(
            action="sign_in.locked",
            subject=account,
            message=f"{failures} failed sign-ins: the account is refused for {window // 60} minutes",
            data={"scope": "account", "address": address, "failures": failures},
        )
    elif failures >= settings.SIGN_IN_SLOW_AFTER:
        wait = 2 ** (failures - settings.SIGN_IN_SLOW_AFTER)
        cache.set(_key("wait", account), wait, wait)
    if from_address >= settings.SIGN_IN_MAX_FAILURES_PER_ADDRESS and cache.add(
        _key("locked-address", address), 1, window
    ):
        event_record(
            action="sign_in.locked",
            subject=address,
            message=f"{from_address} failed sign-ins from this address: refused for {window // 60} minutes",
            data={"scope": "address", "address": address, "failures": from_address},
        )


def sign_in_succeeded(*, username: str) -> None:
    account = _account(username)
    cache.delete_many([_key("failures", account), _key("wait", account)])
