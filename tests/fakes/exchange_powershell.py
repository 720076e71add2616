"""A fake Exchange 2013 remote PowerShell endpoint, at the pypsrp client boundary (docs/adr/013-the-switch.md).

It offers pypsrp's three classes with their signatures — `WSMan(server, username=, password=, path=, ...)`,
`RunspacePool(wsman, configuration_name=)` with open()/close(), `PowerShell(pool)` with add_cmdlet(),
add_parameters(), invoke(), had_errors and streams.error holding pypsrp's own ErrorRecord objects — and answers
Set-Mailbox / Get-Mailbox as Exchange does: unknown identities give ManagementObjectNotFoundException records, an
account without the Mail Recipients role does not see the cmdlet (CommandNotFoundException), a bad password is
pypsrp's AuthenticationError, and a runspace over the throttling policy's PowerShellMaxConcurrency is the
WS-Management fault Exchange sends. Mailbox data lives in files under FAKE_EXCHANGE_DIR, so Celery worker processes
and the test (or benchmark) share one Exchange; FAKE_EXCHANGE_CMDLET_SECONDS is the time each cmdlet takes.

Select it with SWITCH_POWERSHELL_CLIENT=tests.fakes.exchange_powershell.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from pypsrp.complex_objects import ErrorRecord, GenericComplexObject
from pypsrp.exceptions import AuthenticationError, WSManFaultError

ROUTING = "ForwardingSmtpAddress"
KEEP = "DeliverToMailboxAndForward"

_open_lock = threading.Lock()
_open: dict[str, int] = {}  # open runspace pools per account, in this process


def _dir() -> Path:
    return Path(os.environ["FAKE_EXCHANGE_DIR"])


def _key(identity: str) -> str:
    return identity.strip().lower().replace("/", "_")


class FakeExchange:
    """The test's handle on the fake: its mailboxes, its calls, its failure switches."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        (self.dir / "mailboxes").mkdir(parents=True, exist_ok=True)

    def add_mailbox(self, identity: str) -> None:
        self._write(identity, {ROUTING: None, KEEP: False})

    def add_mailboxes(self, identities) -> None:
        for identity in identities:
            self.add_mailbox(identity)

    def mailbox(self, identity: str) -> dict | None:
        path = self.dir / "mailboxes" / f"{_key(identity)}.json"
        return json.loads(path.read_text()) if path.exists() else None

    def routed_to(self, identity: str) -> str | None:
        return (self.mailbox(identity) or {}).get(ROUTING)

    def calls(self, cmdlet: str | None = None) -> list[dict]:
        path = self.dir / "calls.log"
        rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        return [r for r in rows if cmdlet is None or r["cmdlet"] == cmdlet]

    def set_credentials(self, username: str, password: str) -> None:
        (self.dir / "credentials.json").write_text(json.dumps({"username": username, "password": password}))

    def remove_role(self) -> None:
        """The account loses the Mail Recipients role: Set-Mailbox and Get-Mailbox are no longer visible."""
        (self.dir / "no-role").write_text("1")

    def busy_for(self, opens: int) -> None:
        """The next `opens` runspace pools are refused as over PowerShellMaxConcurrency."""
        (self.dir / "busy").write_text(str(opens))

    def _write(self, identity: str, data: dict) -> None:
        path = self.dir / "mailboxes" / f"{_key(identity)}.json"
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, path)


class WSMan:
    def __init__(self, server, max_envelope_size=153600, operation_timeout=20, port=None, username=None,
                 password=None, ssl=True, path="wsman", auth="negotiate", cert_validation=True, **kwargs):  # fmt: skip
        self.server = server
        self.username = username
        self.password = password
        self.path = path
        self.auth = auth


class RunspacePool:
    def __init__(self, connection, configuration_name="Microsoft.PowerShell", min_runspaces=1, max_runspaces=1,
                 **kwargs):  # fmt: skip
        self.connection = connection
        self.configuration_name = configuration_name
        self.opened = False

    def open(self) -> None:
        root = _dir()
        assert self.connection.path == "PowerShell", "Exchange's endpoint is https://<server>/PowerShell"
        assert self.configuration_name == "Microsoft.Exchange", (
            "Exchange's configuration is Microsoft.Exchange"
        )
        creds = root / "credentials.json"
        if creds.exists():
            expected = json.loads(creds.read_text())
            if (self.connection.username, self.connection.password) != (
                expected["username"],
                expected["password"],
            ):
                raise AuthenticationError(
                    f"Failed to authenticate the user {self.connection.username} with basic"
                )
        busy = root / "busy"
        with _open_lock:
            if busy.exists() and int(busy.read_text() or 0) > 0:
                busy.write_text(str(int(busy.read_text()) - 1))
                raise _max_connections(self.connection)
            limit = int(os.environ.get("FAKE_EXCHANGE_MAX_RUNSPACES", "18"))
            user = self.connection.username or ""
            if _open.get(user, 0) >= limit:
                raise _max_connections(self.connection, limit)
            _open[user] = _open.get(user, 0) + 1
        self.opened = True

    def close(self) -> None:
        if self.opened:
            with _open_lock:
                _open[self.connection.username or ""] -= 1
            self.opened = False


def _max_connections(connection, limit: int = 18) -> WSManFaultError:
    message = (
        "Fail to create a runspace because you have exceeded the maximum number of connections allowed : "
        f"{limit} for the policy party : MaxConcurrency. Please close existing runspace and try again."
    )
    return WSManFaultError(None, connection.server, message, None, None, None)


def open_runspaces() -> int:
    with _open_lock:
        return sum(_open.values())


class PowerShell:
    def __init__(self, runspace_pool):
        self.pool = runspace_pool
        self.commands: list[tuple[str, dict]] = []
        self.had_errors = False
        self.streams = SimpleNamespace(error=[])
        self.output: list = []

    def add_cmdlet(self, cmdlet, use_local_scope=None):
        self.commands.append((cmdlet, {}))
        return self

    def add_parameters(self, parameters):
        self.commands[-1][1].update(parameters)
        return self

    def add_script(self, script, use_local_scope=None):
        raise AssertionError("Exchange's endpoint runs in no-language mode: scripts are refused")

    def invoke(self, input=None, add_to_history=False, invocation_settings=None):  # noqa: A002
        assert self.pool.opened, "the runspace pool is not open"
        time.sleep(float(os.environ.get("FAKE_EXCHANGE_CMDLET_SECONDS", "0")))
        fake = FakeExchange(_dir())
        for cmdlet, params in self.commands:
            self._run(fake, cmdlet, params)
        return self.output

    def _run(self, fake: FakeExchange, cmdlet: str, params: dict) -> None:
        identity = str(params.get("Identity", ""))
        with open(fake.dir / "calls.log", "a") as log:  # one short line per call: O_APPEND keeps lines whole
            log.write(
                json.dumps({"cmdlet": cmdlet, "identity": identity, ROUTING: params.get(ROUTING)}) + "\n"
            )
        if (fake.dir / "no-role").exists():
            return self._error(
                "CommandNotFoundException",
                f"The term '{cmdlet}' is not recognized as the name of a cmdlet, function, script file, or "
                "operable program.",
            )
        mailbox = fake.mailbox(identity)
        if mailbox is None:
            return self._error(
                "ManagementObjectNotFoundException",
                f"The operation couldn't be performed because object '{identity}' couldn't be found on "
                "'dc01.nhs.local'.",
            )
        if cmdlet == "Set-Mailbox":
            if ROUTING in params:
                address = params[ROUTING]
                mailbox[ROUTING] = f"smtp:{address}" if address else None
            if KEEP in params:
                mailbox[KEEP] = bool(params[KEEP])
            fake._write(identity, mailbox)
        elif cmdlet == "Get-Mailbox":
            obj = GenericComplexObject()
            obj.adapted_properties = {
                "Identity": identity,
                "PrimarySmtpAddress": identity,
                ROUTING: mailbox.get(ROUTING),
                KEEP: mailbox.get(KEEP, False),
            }
            self.output.append(obj)
        else:
            return self._error("CommandNotFoundException", f"The term '{cmdlet}' is not recognized")

    def _error(self, reason: str, message: str) -> None:
        self.had_errors = True
        self.streams.error.append(
            ErrorRecord(reason=reason, message=message, fq_error=f"[Server=EX01] {reason}", category=13)
        )
