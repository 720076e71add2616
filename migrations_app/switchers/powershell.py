"""The exchange-powershell switcher: Exchange 2013's remote PowerShell through pypsrp (docs/adr/013-the-switch.md).

    switch     Set-Mailbox -Identity <id> -ForwardingSmtpAddress <user@tenant.mail.onmicrosoft.com>
                           -DeliverToMailboxAndForward $false
    read back  Get-Mailbox -Identity <id>   (ForwardingSmtpAddress, DeliverToMailboxAndForward)
    unswitch   Set-Mailbox -Identity <id> -ForwardingSmtpAddress $null -DeliverToMailboxAndForward $false

Exchange's endpoint (https://<server>/PowerShell, configuration Microsoft.Exchange) runs in no-language mode, so
every call is one cmdlet with its parameters (`add_cmdlet` / `add_parameters`), never a script. Exchange limits
the runspaces one account may hold (throttling policy PowerShellMaxConcurrency), so each worker process keeps a
pool of at most `sessions` open runspace pools per endpoint and account, reused from call to call; a batch of
mailboxes is shared out over them, one session switching many mailboxes one after another.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

from migrations_app.outbound_transport import OutboundRefusedError, outbound_session
from migrations_app.switchers.base import (
    ACCESS_DENIED,
    MAILBOX_NOT_FOUND,
    NETWORK,
    SERVER_BUSY,
    SWITCH_FAILED,
    EngineError,
    Outcome,
    PermanentError,
    RetryableError,
    Routing,
    Switcher,
    SwitchTarget,
)

logger = logging.getLogger(__name__)

CONFIGURATION_NAME = "Microsoft.Exchange"
PATH = "PowerShell"

# ErrorCategory_Reason (the .NET exception's type name) of Exchange's error records, by what they mean to us.
_NOT_FOUND_REASONS = {"ManagementObjectNotFoundException"}
# RBAC hides the cmdlets and parameters an account's roles lack: they are "not recognized" / "cannot be found".
_DENIED_REASONS = {"UnauthorizedAccessException", "CommandNotFoundException", "ParameterBindingException"}
_BUSY_REASONS = {"ADTransientException", "ServerUnavailableException", "TransientException"}
_BUSY_WORDS = ("maximum number of connections", "throttl", "server is busy", "too many")


def client(name: str) -> SimpleNamespace:
    """The pypsrp classes the switcher drives: WSMan, RunspacePool, PowerShell. "pypsrp" is the real client;
    any other name is a module offering the same three (the tests' fake, at this boundary)."""
    if name == "pypsrp":
        from pypsrp.powershell import PowerShell, RunspacePool
        from pypsrp.wsman import WSMan

        return SimpleNamespace(WSMan=WSMan, RunspacePool=RunspacePool, PowerShell=PowerShell)
    module = importlib.import_module(name)
    return SimpleNamespace(WSMan=module.WSMan, RunspacePool=module.RunspacePool, PowerShell=module.PowerShell)


def error_from_record(record: Any) -> EngineError:
    """An Exchange error record (pypsrp ErrorRecord) as a stable code."""
    reason = getattr(record, "reason", "") or ""
    message = getattr(record, "message", "") or str(record)
    if reason in _NOT_FOUND_REASONS:
        return PermanentError(MAILBOX_NOT_FOUND, message)
    if reason in _DENIED_REASONS or "access denied" in message.lower():
        return PermanentError(ACCESS_DENIED, message)
    if reason in _BUSY_REASONS or any(word in message.lower() for word in _BUSY_WORDS):
        return RetryableError(SERVER_BUSY, message, retry_after=30)
    return PermanentError(SWITCH_FAILED, f"{reason}: {message}" if reason else message)


def error_from_transport(exc: Exception) -> EngineError:
    """What opening or using a session raised (pypsrp's transport and WS-Management faults, requests' network
    errors) as a stable code."""
    if isinstance(exc, EngineError):
        return exc
    from pypsrp.exceptions import AuthenticationError, WinRMTransportError, WSManFaultError

    text = str(exc)
    if isinstance(exc, OutboundRefusedError):  # the outbound rules refused the address: configuration
        return PermanentError(SWITCH_FAILED, f"refused: {text}")
    if isinstance(exc, AuthenticationError):
        return PermanentError(ACCESS_DENIED, text)
    if isinstance(exc, WinRMTransportError):
        if exc.code in (401, 403):
            return PermanentError(ACCESS_DENIED, text)
        if exc.code in (429, 500, 502, 503, 504) or any(w in text.lower() for w in _BUSY_WORDS):
            return RetryableError(SERVER_BUSY, text, retry_after=30)
        return PermanentError(SWITCH_FAILED, text)
    if isinstance(exc, WSManFaultError):
        if any(word in text.lower() for word in _BUSY_WORDS):  # over PowerShellMaxConcurrency, among others
            return RetryableError(SERVER_BUSY, text, retry_after=30)
        if "access is denied" in text.lower():
            return PermanentError(ACCESS_DENIED, text)
        return PermanentError(SWITCH_FAILED, text)
    if isinstance(exc, (OSError, ConnectionError)) or type(exc).__module__.startswith("requests"):
        return RetryableError(NETWORK, text)
    return PermanentError(SWITCH_FAILED, f"{type(exc).__name__}: {text}")


def _outbound_transport(wsman: Any) -> None:
    """pypsrp's WinRM transport gets a requests session built as pypsrp builds it (auth, certificate checks),
    with the outbound adapter mounted on it: the server's name resolved once per request and checked, the
    connection made to that address with the name as SNI and Host (migrations_app/outbound_transport.py). The
    address and port must be allowed by the programme office like any other internal service."""
    transport = getattr(wsman, "transport", None)
    if transport is not None and hasattr(transport, "_build_session"):
        transport.session = outbound_session(transport._build_session())


class Session:
    """One open runspace pool on Exchange's PowerShell endpoint."""

    def __init__(self, classes: SimpleNamespace, *, server: str, username: str, password: str, **wsman: Any):
        self.classes = classes
        self.wsman = classes.WSMan(server, username=username, password=password, path=PATH, **wsman)
        _outbound_transport(self.wsman)
        self.pool = classes.RunspacePool(self.wsman, configuration_name=CONFIGURATION_NAME)
        self.pool.open()

    def run(self, cmdlet: str, parameters: dict[str, Any]) -> list:
        """One cmdlet; its output objects, or the first error record as a stable code (the session stays
        usable: an error record is the cmdlet's failure, not the session's)."""
        ps = self.classes.PowerShell(self.pool)
        ps.add_cmdlet(cmdlet).add_parameters(parameters)
        output = ps.invoke()
        if ps.had_errors:
            errors = list(getattr(ps.streams, "error", []) or [])
            if errors:
                raise error_from_record(errors[0])
            raise PermanentError(SWITCH_FAILED, f"{cmdlet} reported an error without a record")
        return output

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.pool.close()


class SessionPool:
    """Up to `size` sessions to one endpoint as one account, opened when first needed and reused; a session
    whose transport failed is dropped (and a new one opened for the next caller)."""

    def __init__(self, opener: Callable[[], Session], size: int):
        self.opener = opener
        self.size = size
        self.idle: list[Session] = []
        self.open_count = 0
        self.cond = threading.Condition()

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        with self.cond:
            while not self.idle and self.open_count >= self.size:
                self.cond.wait()
            session = self.idle.pop() if self.idle else None
            if session is None:
                self.open_count += 1
        if session is None:
            try:
                session = self.opener()
            except BaseException:
                with self.cond:
                    self.open_count -= 1
                    self.cond.notify()
                raise
        healthy = False
        try:
            yield session
            healthy = True
        finally:
            with self.cond:
                if healthy:
                    self.idle.append(session)
                else:
                    self.open_count -= 1
                self.cond.notify()
            if not healthy:
                session.close()

    def close(self) -> None:
        with self.cond:
            idle, self.idle = self.idle, []
            self.open_count -= len(idle)
        for session in idle:
            session.close()


_POOLS: dict[tuple, SessionPool] = {}
_POOLS_LOCK = threading.Lock()


def _pool(key: tuple, opener: Callable[[], Session], size: int) -> SessionPool:
    with _POOLS_LOCK:
        pool = _POOLS.get(key)
        if pool is None or pool.size != size:
            pool = _POOLS[key] = SessionPool(opener, size)
        return pool


def close_pools() -> None:
    """Close every idle session of this process (worker shutdown, tests)."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.close()


def _address(value: Any) -> str:
    """ForwardingSmtpAddress reads back as a ProxyAddress ("smtp:user@domain") or a plain address."""
    text = str(value or "").strip()
    if ":" in text and text.split(":", 1)[0].lower() == "smtp":
        text = text.split(":", 1)[1]
    return text.lower()


def _properties(obj: Any) -> dict[str, Any]:
    """A deserialised Exchange object's properties (pypsrp puts them in adapted or extended properties)."""
    if isinstance(obj, dict):
        return obj
    return {
        **(getattr(obj, "adapted_properties", None) or {}),
        **(getattr(obj, "extended_properties", None) or {}),
    }


class ExchangePowerShellSwitcher(Switcher):
    method = "exchange-powershell"

    def __init__(
        self,
        *,
        address: str,
        username: str,
        secret: str,
        sessions: int = 8,
        client_name: str = "pypsrp",
        auth: str = "basic",
        port: int | None = None,
        cert_validation: bool = True,
        **_: Any,
    ):
        self.sessions = max(1, sessions)
        classes = client(client_name)
        wsman = {"auth": auth, "port": port, "ssl": True, "cert_validation": cert_validation}

        def opener() -> Session:
            return Session(classes, server=address, username=username, password=secret, **wsman)

        self.pool = _pool((client_name, address, port, username, auth, secret), opener, self.sessions)

    # -- the three calls ---------------------------------------------------------------------------------

    def switch(self, targets: Sequence[SwitchTarget]) -> dict[int, Outcome]:
        def one(session: Session, target: SwitchTarget) -> Outcome:
            session.run(
                "Set-Mailbox",
                {
                    "Identity": target.identity,
                    "ForwardingSmtpAddress": target.routing_address,
                    "DeliverToMailboxAndForward": False,
                },
            )
            return Routing.TARGET

        return self._each(targets, one)

    def read_back(self, targets: Sequence[SwitchTarget]) -> dict[int, Outcome]:
        def one(session: Session, target: SwitchTarget) -> Outcome:
            output = session.run("Get-Mailbox", {"Identity": target.identity})
            if not output:
                raise PermanentError(MAILBOX_NOT_FOUND, f"Get-Mailbox found no {target.identity}")
            props = _properties(output[0])
            forwarded = _address(props.get("ForwardingSmtpAddress"))
            keeps_copy = str(props.get("DeliverToMailboxAndForward", False)).lower() == "true"
            if forwarded == target.routing_address.lower() and not keeps_copy:
                return Routing.TARGET
            return Routing.SOURCE

        return self._each(targets, one)

    def unswitch(self, targets: Sequence[SwitchTarget]) -> dict[int, Outcome]:
        def one(session: Session, target: SwitchTarget) -> Outcome:
            session.run(
                "Set-Mailbox",
                {
                    "Identity": target.identity,
                    "ForwardingSmtpAddress": None,
                    "DeliverToMailboxAndForward": False,
                },
            )
            return Routing.SOURCE

        return self._each(targets, one)

    # -- sharing a batch over the sessions -----------------------------------------------------------------

    def _each(self, targets: Sequence[SwitchTarget], one: Callable[[Session, SwitchTarget], Outcome]):
        if not targets:
            return {}
        lanes = min(self.sessions, len(targets))
        chunks = [list(targets[i::lanes]) for i in range(lanes)]
        results: dict[int, Outcome] = {}

        def run_chunk(chunk: list[SwitchTarget]) -> None:
            try:
                with self.pool.session() as session:
                    for target in chunk:
                        try:
                            results[target.mailbox_id] = one(session, target)
                        except EngineError as error:  # this mailbox's error record: the session is fine
                            results[target.mailbox_id] = error
            except Exception as exc:  # the session failed (transport): the rest of its chunk gets the error
                error = error_from_transport(exc)
                logger.warning("exchange powershell session failed: %s", error)
                for target in chunk:
                    results.setdefault(target.mailbox_id, error)

        if lanes == 1:
            run_chunk(chunks[0])
        else:
            with ThreadPoolExecutor(max_workers=lanes, thread_name_prefix="switch") as executor:
                list(executor.map(run_chunk, chunks))
        return results
