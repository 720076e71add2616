"""The PowerShell switcher's WinRM connection (real pypsrp) passes the outbound rules at send time: a switch
server name that resolves to an internal address it was not allowed is refused with no connection made."""

from __future__ import annotations

import pytest

from migrations_app import outbound
from migrations_app.engines.base import PermanentError
from migrations_app.switchers.powershell import Session, client, error_from_transport
from tests.tcp_listener import Listener


@pytest.fixture
def listener():
    made = Listener("127.0.0.1")
    yield made
    made.close()


@pytest.mark.parametrize("address", ["127.0.0.1", "10.20.30.40", "169.254.169.254"])
def test_a_switch_server_that_rebinds_to_an_internal_address_is_refused(
    settings, monkeypatch, listener, address
):
    host = "ex01.rebind.example"
    settings.OUTBOUND_ALLOWED_PORTS = [f"{host}:{listener.port}"]
    monkeypatch.setattr(outbound, "resolver", lambda name, port: [address] if name == host else [])
    with pytest.raises(Exception) as caught:
        Session(
            client("pypsrp"),
            server=host,
            username="svc",
            password="pw",
            auth="basic",
            port=listener.port,
            ssl=True,
        )
    error = error_from_transport(caught.value)
    assert isinstance(error, PermanentError) and "internal network" in error.message
    assert listener.connections == 0


def test_an_allowed_switch_server_is_reached_at_the_checked_address(settings, monkeypatch, listener):
    """The control: allowed by the programme office (its network named), the same open connects once."""
    host = "ex01.rebind.example"
    settings.OUTBOUND_ALLOWED_PORTS = [f"{host}:{listener.port}"]
    settings.OUTBOUND_ALLOWED_INTERNAL_HOSTS = [host]
    monkeypatch.setattr(outbound, "resolver", lambda name, port: ["127.0.0.1"] if name == host else [])
    with pytest.raises(Exception):  # noqa: B017 - the listener speaks no TLS; only the connection matters
        Session(
            client("pypsrp"),
            server=host,
            username="svc",
            password="pw",
            auth="basic",
            port=listener.port,
            ssl=True,
        )
    assert listener.connections >= 1
