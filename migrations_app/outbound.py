"""Outbound HTTP to a URL a person typed: the one place the server fetches such a URL (webhooks, the Graph
endpoint's graph_url, the switch engineer's webhook switcher). Server-side request forgery is refused here.

The rules (docs/adr/019-outbound-requests.md):
- https only; http only for a host named in OUTBOUND_ALLOWED_HTTP_HOSTS (a receiver on the same private
  network, or the tests' loopback receiver);
- port 443 only, unless OUTBOUND_ALLOWED_PORTS names another for that host ("hooks.example.nhs.uk:8443");
- no credentials in the URL;
- the name is resolved once, at send time, and EVERY address it resolves to must be public: loopback, private,
  link-local (the cloud metadata address 169.254.169.254 among them), unique-local, carrier-grade NAT,
  multicast, reserved and unspecified addresses are refused, in IPv4 and IPv6, including IPv4-mapped, NAT64
  and 6to4 addresses that embed an IPv4 one. A host named in OUTBOUND_ALLOWED_INTERNAL_HOSTS may resolve to
  an internal address (set by the programme office, never by a trust);
- the connection goes to the address that was checked (no second resolution, so a DNS answer that changes
  between check and connect cannot redirect it), with the original name as TLS SNI, certificate name and Host;
- redirects are never followed; the answer's body is never read back to the caller: only the status code and
  its reason phrase, and errors are reduced to a short reason (no internal detail comes back to a trust).
"""

import functools
import ipaddress
import os
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from django.conf import settings

__all__ = [
    "OutboundRefused",
    "outbound_setting",
    "system_resolver",
    "OutboundResult",
    "Destination",
    "address_is_internal",
    "outbound_check_url",
    "outbound_resolve",
    "outbound_request",
]

# NAT64 (RFC 6052): 64:ff9b::/96 carries an IPv4 address in its last 32 bits.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Carrier-grade NAT (RFC 6598): not "private" in every Python version, never a public receiver.
_SHARED = ipaddress.ip_network("100.64.0.0/10")


class OutboundRefused(ValueError):
    """The URL may not be fetched; str() is a reason fit to show the person who typed it."""


def outbound_setting(name: str) -> list[str]:
    """One of the programme office's exceptions (OUTBOUND_ALLOWED_*). The engines also run as plain Python
    (the copy benchmarks, manage.py-less scripts): with Django not configured the same names are read from the
    environment, comma-separated, and an unset one allows nothing."""
    if settings.configured:
        return list(getattr(settings, name, []) or [])
    return [v.strip() for v in os.environ.get(name, "").split(",") if v.strip()]


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the host resolves to (the system resolver, asked once per request)."""
    infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    return [info[4][0] for info in infos]


# The resolver hook: outbound_resolve asks this, and only this, for a name's addresses. Tests replace it to make
# a name resolve where they need (a rebinding attacker's answer, a test TLS listener); production never does.
resolver = system_resolver


@dataclass(frozen=True)
class Destination:
    scheme: str
    host: str  # as typed (lower-cased), for SNI, the certificate check and Host
    port: int
    target: str  # path and query
    addresses: tuple[str, ...]  # every address the host resolved to, all checked


@dataclass(frozen=True)
class OutboundResult:
    status: int | None  # None when no answer came
    reason: str  # the reason phrase, or a short reason why there was no answer


def address_is_internal(address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True for any address that is not a public unicast one, in any spelling of IPv4 or IPv6."""
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return True
        embedded = ip.ipv4_mapped or (ip.sixtofour if ip.sixtofour else None)
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            return address_is_internal(embedded)
        if ip.teredo:
            return True
    elif ip in _SHARED:
        return True
    return (
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def _allowed_ports(host: str) -> set[int]:
    ports = {443}
    for entry in outbound_setting("OUTBOUND_ALLOWED_PORTS"):
        name, _, port = entry.rpartition(":")
        if name.strip("[]").lower() == host and port.isdigit():
            ports.add(int(port))
    return ports


def _host_allowed(host: str, setting: list[str]) -> bool:
    return host in {h.strip("[]").lower() for h in setting}


def outbound_check_url(url: str) -> str:
    """The URL's form: scheme, credentials, port, and a host that is not an internal address literal (in any
    spelling the system resolver accepts: 127.1, 0x7f000001, 2130706433, ::ffff:127.0.0.1). No DNS lookup
    (that happens at send time); returns the URL stripped of surrounding spaces."""
    url = url.strip()
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise OutboundRefused(f"Not a URL: {exc}") from exc
    host = (parts.hostname or "").lower()
    if parts.scheme not in {"https", "http"} or not host:
        raise OutboundRefused("Enter an https:// URL")
    if parts.username or parts.password:
        raise OutboundRefused("Put no credentials in the URL")
    if parts.scheme == "http" and not _host_allowed(host, outbound_setting("OUTBOUND_ALLOWED_HTTP_HOSTS")):
        raise OutboundRefused("Only https:// URLs are allowed")
    port = port or (443 if parts.scheme == "https" else 80)
    if parts.scheme == "https" and port not in _allowed_ports(host):
        raise OutboundRefused("Use port 443 (the programme office can allow another port for a named host)")
    if parts.scheme == "http" and port != 80 and port not in _allowed_ports(host):
        raise OutboundRefused("That port is not allowed for this host")
    if not _host_allowed(host, outbound_setting("OUTBOUND_ALLOWED_INTERNAL_HOSTS")):
        for address in _numeric_addresses(host, port):
            if address_is_internal(address) and not _in_allowed_network(address):
                raise OutboundRefused("That address is on an internal network")
        name = host.rstrip(".")
        if name == "localhost" or name.endswith((".localhost", ".local", ".internal")):
            raise OutboundRefused("That address is on an internal network")
    return url


def _in_allowed_network(address: str) -> bool:
    """An internal address inside a network the programme office names in OUTBOUND_ALLOWED_INTERNAL_NETWORKS
    (the private network the trusts' Exchange servers are reached on). Loopback, link-local (the metadata
    address), unspecified and multicast addresses are never allowed this way, whatever network is named."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast:
        return False
    for entry in outbound_setting("OUTBOUND_ALLOWED_INTERNAL_NETWORKS"):
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except (ValueError, TypeError):
            continue
    return False


def _numeric_addresses(host: str, port: int) -> list[str]:
    """The addresses of a host that is an address literal, without asking DNS; [] for a name."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        return []
    return [info[4][0] for info in infos]


def outbound_resolve(url: str) -> Destination:
    """Check the URL, resolve its host once and check every address it resolves to."""
    url = outbound_check_url(url)
    parts = urlsplit(url)
    host = parts.hostname.lower()
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = tuple(dict.fromkeys(resolver(host, port)))
    except (OSError, UnicodeError, ValueError) as exc:
        raise OutboundRefused("The host name does not resolve") from exc
    if not addresses:
        raise OutboundRefused("The host name does not resolve")
    if not _host_allowed(host, outbound_setting("OUTBOUND_ALLOWED_INTERNAL_HOSTS")) and any(
        "%" in a or (address_is_internal(a) and not _in_allowed_network(a)) for a in addresses
    ):
        raise OutboundRefused("That address is on an internal network")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return Destination(scheme=parts.scheme, host=host, port=port, target=target, addresses=addresses)


@functools.cache
def _client() -> httpx.Client:
    """One client per process (its pool and TLS context are reused); never follows redirects, never reads
    proxy settings from the environment (a proxy would resolve the name again)."""
    return httpx.Client(follow_redirects=False, trust_env=False)


def _short_reason(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "Timed out"
    if isinstance(exc, httpx.ConnectError):
        text = str(exc).lower()
        if "certificate" in text or "ssl" in text or "tls" in text:
            return "TLS handshake failed (certificate not trusted or wrong name)"
        return "Could not connect"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "The receiver broke the HTTP exchange"
    return "The request failed"


def outbound_request(
    method: str,
    url: str,
    *,
    content: bytes = b"",
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> OutboundResult:
    """One request to a checked address. Raises OutboundRefused when the rules refuse the URL (no connection
    is made); otherwise returns the status and reason, or no status and a short reason. The body of the
    answer is not read beyond what closing the connection needs."""
    destination = outbound_resolve(url)
    address = destination.addresses[0]
    literal = f"[{address}]" if ":" in address else address
    default_port = 443 if destination.scheme == "https" else 80
    authority = (
        destination.host if destination.port == default_port else f"{destination.host}:{destination.port}"
    )
    request_headers = {**(headers or {}), "Host": authority}
    extensions = {"sni_hostname": destination.host} if destination.scheme == "https" else {}
    try:
        with _client().stream(
            method,
            f"{destination.scheme}://{literal}:{destination.port}{destination.target}",
            content=content,
            headers=request_headers,
            timeout=httpx.Timeout(timeout),
            extensions=extensions,
        ) as response:
            return OutboundResult(status=response.status_code, reason=(response.reason_phrase or "")[:100])
    except httpx.HTTPError as exc:
        return OutboundResult(status=None, reason=_short_reason(exc))
