"""Every request the engines and switchers make to an address a person typed passes the outbound rules when it
is sent, not only when the endpoint was saved: a name that resolves to loopback, a private network or the cloud
metadata address at that moment is refused with no connection made (DNS rebinding after saving). The normal
path against the fakes goes through the same rules, allowed as the programme office would allow a host."""

from __future__ import annotations

import time

import pytest
import urllib3.util.connection

from migrations_app import outbound
from migrations_app.engines import EndpointSpec
from migrations_app.engines.base import NETWORK, PermanentError
from migrations_app.engines.ews_source import EwsMailbox
from migrations_app.engines.graph_client import GraphClient
from migrations_app.engines.graph_import_target import GraphImportTarget
from migrations_app.outbound_transport import OutboundRefusedError
from tests.engines.exchange_fixtures import exchange_endpoint, fake_ews, fake_graph  # noqa: F401
from tests.engines.exchange_fixtures import graph_endpoint as import_endpoint
from tests.engines.graph_fixtures import fake, graph_endpoint  # noqa: F401
from tests.tcp_listener import Listener

INTERNAL = ["127.0.0.1", "10.20.30.40", "169.254.169.254"]


@pytest.fixture
def listener():
    made = Listener("127.0.0.1")
    yield made
    made.close()


@pytest.fixture
def connects(monkeypatch):
    """Every TCP connection urllib3 tries to open (so 10.x and 169.254.169.254 are proven untouched too)."""
    seen: list[tuple] = []
    real = urllib3.util.connection.create_connection

    def spy(address, *args, **kwargs):
        seen.append(address)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", spy)
    monkeypatch.setattr("urllib3.connection.connection.create_connection", spy)
    return seen


def _rebind(monkeypatch, name: str, address: str) -> list[str]:
    """The name resolves to `address` at send time (whatever it resolved to when the endpoint was saved)."""
    asked: list[str] = []
    real = outbound.resolver

    def resolver(host, port):
        if host == name:
            asked.append(host)
            return [address]
        return real(host, port)

    monkeypatch.setattr(outbound, "resolver", resolver)
    return asked


def _allow_port(settings, host: str, port: int) -> None:
    settings.OUTBOUND_ALLOWED_PORTS = [*settings.OUTBOUND_ALLOWED_PORTS, f"{host}:{port}"]


def _graph_spec(graph_url: str) -> EndpointSpec:
    return EndpointSpec(
        kind="graph",
        host="contoso.onmicrosoft.com",
        username="client",
        password="secret",
        options={"graph_url": graph_url},
    )


@pytest.mark.parametrize("address", INTERNAL)
def test_the_graph_engine_refuses_a_graph_url_that_rebinds_to_an_internal_address(
    settings, monkeypatch, listener, connects, address
):
    host = "graph.rebind.example"
    _allow_port(settings, host, listener.port)
    asked = _rebind(monkeypatch, host, address)
    client = GraphClient(_graph_spec(f"https://{host}:{listener.port}"), "alice@trust.nhs.uk")
    with pytest.raises(PermanentError, match="internal network") as caught:
        client.request("GET", "users/alice@trust.nhs.uk", authorize=False)
    assert caught.value.code == NETWORK
    assert asked == [host]  # resolved at send time
    assert listener.connections == 0 and connects == []


def test_the_graph_engine_reaches_a_public_address_it_checked(settings, monkeypatch, listener, connects):
    """The control: with the listener's address allowed for this name, the same request connects once, to the
    address that was checked, with the name as Host."""
    host = "graph.rebind.example"
    _allow_port(settings, host, listener.port)
    settings.OUTBOUND_ALLOWED_INTERNAL_HOSTS = [host]
    settings.OUTBOUND_ALLOWED_HTTP_HOSTS = [host]
    _rebind(monkeypatch, host, "127.0.0.1")
    client = GraphClient(_graph_spec(f"http://{host}:{listener.port}"), "alice@trust.nhs.uk")
    response = client.request("GET", "users/alice", authorize=False, ok=(204,))
    assert response.status_code == 204 and response.url.startswith(f"http://{host}:")
    assert listener.connections == 1 and connects == [("127.0.0.1", listener.port)]
    assert f"host: {host}:{listener.port}" in listener.requests[0].decode().lower()


@pytest.mark.parametrize("address", INTERNAL)
def test_msal_is_refused_when_entra_rebinds(monkeypatch, connects, address):
    """MSAL's calls to Entra (its authority host is an endpoint option) go through the same rules."""
    _rebind(monkeypatch, "login.microsoftonline.com", address)
    spec = EndpointSpec(
        kind="graph", host=f"tenant-{address}.example", username="client", password="secret", options={}
    )
    with pytest.raises(PermanentError, match="internal network"):
        GraphClient(spec, "alice@trust.nhs.uk").token()
    assert connects == []


@pytest.mark.parametrize("address", INTERNAL)
def test_the_import_writer_refuses_an_import_url_that_rebinds(
    settings,
    monkeypatch,
    fake_graph,  # noqa: F811
    listener,
    connects,
    address,
):
    """The importUrl comes from Microsoft's answer; it is checked when the item is POSTed to it."""
    fake_graph.add_user("alice@trust.onmicrosoft.com")
    client = GraphClient(
        import_endpoint(fake_graph), "alice@trust.onmicrosoft.com", http_client=fake_graph.session()
    )
    target = GraphImportTarget(client, "alice@trust.onmicrosoft.com")
    target.mailbox_id()  # the normal path: through the rules to the allowed fake
    host = "import.rebind.example"
    _allow_port(settings, host, listener.port)
    _rebind(monkeypatch, host, address)
    target._session = (f"https://{host}:{listener.port}/api/gbeta/importItem/token", time.time() + 3600)
    connects.clear()
    with pytest.raises(PermanentError, match="internal network"):
        target.import_item("inbox-id", b"Subject: hi\r\n\r\nhello\r\n")
    assert listener.connections == 0 and connects == []


@pytest.mark.parametrize("address", INTERNAL)
def test_the_exchange_reader_refuses_a_cas_that_rebinds(settings, monkeypatch, listener, connects, address):
    host = "cas.rebind.example"
    _allow_port(settings, host, listener.port)
    _rebind(monkeypatch, host, address)
    spec = EndpointSpec(
        kind="exchange",
        host=host,
        port=listener.port,
        security="tls",
        username="svc",
        password="pw",
        options={"auth": "basic"},
    )
    with pytest.raises(PermanentError, match="internal network") as caught:
        EwsMailbox(spec, "alice@trust.nhs.uk").check()
    assert caught.value.code == NETWORK
    assert listener.connections == 0 and connects == []


def test_the_exchange_reader_reaches_the_allowed_fake_through_the_rules(fake_ews, connects):  # noqa: F811
    fake_ews.add_mailbox("alice@trust.nhs.uk")
    mailbox = EwsMailbox(exchange_endpoint(fake_ews), "alice@trust.nhs.uk")
    mailbox.well_known()
    assert connects and all(address == ("127.0.0.1", fake_ews.port) for address in connects)


def test_the_fakes_are_refused_unless_the_test_allows_them(settings, fake):  # noqa: F811
    """The fakes get no back door: without the programme office's exception their loopback address is
    refused like any other."""
    settings.OUTBOUND_ALLOWED_INTERNAL_HOSTS = []
    with pytest.raises(OutboundRefusedError, match="internal network"):
        fake.session().get(f"https://graph.microsoft.com/v1.0/users/{fake.tenant_id}")


def test_the_exchange_fake_is_refused_unless_allowed(settings, fake_ews):  # noqa: F811
    settings.OUTBOUND_ALLOWED_HTTP_HOSTS = []
    with pytest.raises(PermanentError, match="https"):
        EwsMailbox(exchange_endpoint(fake_ews), "alice@trust.nhs.uk").check()
