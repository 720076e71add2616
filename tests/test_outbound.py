"""Server-side request forgery: the rules of migrations_app/outbound.py on a table of addresses, with a real
listener on loopback proving that a refused URL never gets as far as a connection."""

import socket

import pytest

from migrations_app.outbound import (
    OutboundRefused,
    address_is_internal,
    outbound_check_url,
    outbound_request,
)
from tests.tcp_listener import Listener


@pytest.fixture
def listener():
    made = Listener("127.0.0.1")
    yield made
    made.close()


@pytest.fixture
def listener6():
    try:
        made = Listener("::1")
    except OSError:
        pytest.skip("this machine has no IPv6 loopback")
    yield made
    made.close()


def _allow_port(settings, host, port):
    settings.OUTBOUND_ALLOWED_PORTS = [*settings.OUTBOUND_ALLOWED_PORTS, f"{host}:{port}"]


# Every spelling the system resolver turns into the IPv4 loopback address.
LOOPBACK_V4_SPELLINGS = [
    "127.0.0.1",
    "127.1",
    "127.0.1",
    "2130706433",
    "0x7f000001",
    "0x7f.0.0.1",
    "0177.0.0.1",
    "017700000001",
    "127.000.000.001",
    "localhost",
    "LOCALHOST",
    "localhost.",
]
LOOPBACK_V6_SPELLINGS = ["[::1]", "[0:0:0:0:0:0:0:1]", "[0000::0001]"]
MAPPED_SPELLINGS = ["[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[0:0:0:0:0:ffff:127.0.0.1]"]


@pytest.mark.parametrize("host", LOOPBACK_V4_SPELLINGS)
def test_it_never_connects_to_ipv4_loopback_in_any_spelling(settings, listener, host):
    _allow_port(settings, host.lower().rstrip("."), listener.port)
    _allow_port(settings, host.lower(), listener.port)
    with pytest.raises(OutboundRefused, match="internal network"):
        outbound_request("POST", f"https://{host}:{listener.port}/hook", content=b"{}")
    assert listener.connections == 0


@pytest.mark.parametrize("host", LOOPBACK_V6_SPELLINGS)
def test_it_never_connects_to_ipv6_loopback_in_any_spelling(settings, listener6, host):
    _allow_port(settings, host, listener6.port)
    with pytest.raises(OutboundRefused, match="internal network"):
        outbound_request("POST", f"https://{host}:{listener6.port}/hook", content=b"{}")
    assert listener6.connections == 0


@pytest.mark.parametrize("host", MAPPED_SPELLINGS)
def test_it_refuses_ipv4_mapped_loopback(settings, host):
    _allow_port(settings, host, 8443)
    with pytest.raises(OutboundRefused, match="internal network"):
        outbound_request("POST", f"https://{host}:8443/hook")


def test_the_listener_does_see_a_connection_when_the_programme_office_allows_the_host(settings, listener):
    """The control for the table above: the same request, allowed, reaches the listener (so 0 means refused)."""
    _allow_port(settings, "127.0.0.1", listener.port)
    settings.OUTBOUND_ALLOWED_INTERNAL_HOSTS = ["127.0.0.1"]
    result = outbound_request("POST", f"https://127.0.0.1:{listener.port}/hook", content=b"{}")
    assert listener.connections == 1 and result.status is None  # the listener speaks no TLS


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.255.254",
        "0.0.0.0",  # noqa: S104
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "224.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fe80::1",
        "fd00:ec2::254",  # AWS metadata over IPv6 (unique-local)
        "fc00::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
        "ff02::1",
        "::127.0.0.1",  # IPv4-compatible (deprecated)
    ],
)
def test_internal_addresses_are_recognised(address):
    assert address_is_internal(address)


@pytest.mark.parametrize("address", ["8.8.8.8", "51.140.0.1", "2a00:1450:4009:81a::200e", "2603:1026::1"])
def test_public_addresses_are_allowed(address):
    assert not address_is_internal(address)


@pytest.mark.parametrize(
    "url, reason",
    [
        ("http://hooks.example.nhs.uk/x", "https"),
        ("ftp://hooks.example.nhs.uk/x", "https"),
        ("https://user:pw@hooks.example.nhs.uk/x", "credentials"),
        ("https://hooks.example.nhs.uk:8443/x", "port 443"),
        ("https://hooks.example.nhs.uk:6379/x", "port 443"),
        ("https://169.254.169.254/latest/meta-data/", "internal"),
        ("https://[fd00:ec2::254]/", "internal"),
        ("https://10.1.2.3/", "internal"),
        ("https://0x7f.1/", "internal"),
        ("https://metadata.google.internal/", "internal"),
        ("https://localhost/", "internal"),
        ("https://hooks.example.nhs.uk:99999/", "Not a URL"),
    ],
)
def test_the_form_of_a_url_is_checked_when_it_is_saved(url, reason):
    with pytest.raises(OutboundRefused, match=reason):
        outbound_check_url(url)


def test_another_port_is_allowed_only_for_the_named_host(settings):
    settings.OUTBOUND_ALLOWED_PORTS = ["hooks.example.nhs.uk:8443"]
    assert (
        outbound_check_url(" https://hooks.example.nhs.uk:8443/x ") == "https://hooks.example.nhs.uk:8443/x"
    )
    with pytest.raises(OutboundRefused, match="port 443"):
        outbound_check_url("https://other.example.nhs.uk:8443/x")


def _fake_dns(monkeypatch, answers: dict[str, list[list[str]]]):
    """Replace the resolver: each call for a name returns the next answer in its list (DNS rebinding)."""
    real = socket.getaddrinfo
    calls: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        if host in answers:
            calls.append(host)
            seq = answers[host]
            addresses = seq.pop(0) if len(seq) > 1 else seq[0]
            return [
                (
                    socket.AF_INET6 if ":" in a else socket.AF_INET,
                    socket.SOCK_STREAM,
                    6,
                    "",
                    (a, port, 0, 0) if ":" in a else (a, port),
                )
                for a in addresses
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return calls


def test_a_name_that_resolves_to_loopback_is_refused(settings, monkeypatch, listener):
    _fake_dns(monkeypatch, {"hooks.attacker.example": [["127.0.0.1"]]})
    _allow_port(settings, "hooks.attacker.example", listener.port)
    with pytest.raises(OutboundRefused, match="internal network"):
        outbound_request("POST", f"https://hooks.attacker.example:{listener.port}/")
    assert listener.connections == 0


def test_a_name_with_one_internal_address_among_public_ones_is_refused(settings, monkeypatch, listener):
    _fake_dns(monkeypatch, {"hooks.attacker.example": [["51.140.0.1", "127.0.0.1"]]})
    _allow_port(settings, "hooks.attacker.example", listener.port)
    with pytest.raises(OutboundRefused, match="internal network"):
        outbound_request("POST", f"https://hooks.attacker.example:{listener.port}/")
    assert listener.connections == 0


def test_it_connects_to_the_address_it_checked_with_the_name_as_host(settings, monkeypatch, listener):
    """DNS rebinding: the second answer would point elsewhere, but there is no second lookup."""
    calls = _fake_dns(monkeypatch, {"hooks.trust.example": [["127.0.0.1"], ["10.9.9.9"]]})
    settings.OUTBOUND_ALLOWED_HTTP_HOSTS = ["hooks.trust.example"]
    settings.OUTBOUND_ALLOWED_INTERNAL_HOSTS = ["hooks.trust.example"]
    _allow_port(settings, "hooks.trust.example", listener.port)
    result = outbound_request("POST", f"http://hooks.trust.example:{listener.port}/in?x=1", content=b"{}")
    assert (result.status, result.reason) == (204, "No Content")
    assert calls == ["hooks.trust.example"]
    request = listener.requests[0].decode()
    assert request.startswith("POST /in?x=1 HTTP/1.1")
    assert f"host: hooks.trust.example:{listener.port}" in request.lower()


def test_it_follows_no_redirect_and_reads_no_body(settings):
    redirect = Listener(
        "127.0.0.1",
        answer=b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/\r\nContent-Length: 12\r\n\r\nsecret-token",
    )
    try:
        settings.OUTBOUND_ALLOWED_HTTP_HOSTS = ["127.0.0.1"]
        settings.OUTBOUND_ALLOWED_INTERNAL_HOSTS = ["127.0.0.1"]
        _allow_port(settings, "127.0.0.1", redirect.port)
        result = outbound_request("POST", f"http://127.0.0.1:{redirect.port}/")
        assert (result.status, result.reason) == (302, "Found")
        assert redirect.connections == 1 and "secret" not in repr(result)
    finally:
        redirect.close()


def test_a_named_private_network_is_reachable_but_never_loopback_or_metadata(settings, monkeypatch):
    """Exchange servers on HSCN: the programme office names the network; no network naming opens loopback,
    link-local (the metadata address) or the unspecified address, even one that spans everything."""
    from migrations_app import outbound
    from migrations_app.outbound import outbound_resolve

    answers = {
        "cas.trust.example": "10.20.1.5",
        "evil.example": "127.0.0.1",
        "meta.example": "169.254.169.254",
    }
    monkeypatch.setattr(outbound, "resolver", lambda host, port: [answers[host]])
    with pytest.raises(OutboundRefused, match="internal network"):
        outbound_resolve("https://cas.trust.example/EWS/Exchange.asmx")
    settings.OUTBOUND_ALLOWED_INTERNAL_NETWORKS = ["10.20.0.0/16", "0.0.0.0/0", "not a network"]
    assert outbound_resolve("https://cas.trust.example/EWS/Exchange.asmx").addresses == ("10.20.1.5",)
    for host in ("evil.example", "meta.example"):
        with pytest.raises(OutboundRefused, match="internal network"):
            outbound_resolve(f"https://{host}/")
    assert outbound_check_url("https://10.20.9.9/EWS/Exchange.asmx")  # a literal in the network, when saved
    with pytest.raises(OutboundRefused, match="internal network"):
        outbound_check_url("https://169.254.169.254/")


def test_without_django_settings_the_exceptions_come_from_the_environment(monkeypatch):
    """The copy benchmarks run the engines as plain Python: the same names, from the environment."""
    from django.conf import LazySettings

    from migrations_app import outbound

    monkeypatch.setattr(outbound, "settings", LazySettings())  # not configured
    monkeypatch.setenv("OUTBOUND_ALLOWED_PORTS", "a.example:8443, b.example:9443")
    assert outbound.outbound_setting("OUTBOUND_ALLOWED_PORTS") == ["a.example:8443", "b.example:9443"]
    monkeypatch.delenv("OUTBOUND_ALLOWED_INTERNAL_HOSTS", raising=False)
    assert outbound.outbound_setting("OUTBOUND_ALLOWED_INTERNAL_HOSTS") == []
