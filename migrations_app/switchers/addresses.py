"""Is a URL a person typed safe for the workers to fetch? Only public addresses: never loopback, private,
link-local (cloud metadata), shared, multicast or reserved ones, unless the host is listed in
WEBHOOK_ALLOWED_HTTP_HOSTS (test receivers on loopback).

A small check of our own, written while the security work (an SSRF-safe sender for services/webhooks) was not on
main yet: when it lands, this module should call it instead. It checks every address the name resolves to just
before the request; a name that resolves differently a moment later (DNS rebinding) is not caught here."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError


def _internal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or ip in ipaddress.ip_network("100.64.0.0/10")
    )


def check_public_url(url: str, *, field: str = "url", resolve: bool = True) -> str:
    """The URL, trimmed; ValidationError (on `field`) when it is not https://, carries credentials, or names an
    internal address. resolve=False checks only literal addresses (forms, without a DNS lookup per keystroke)."""
    url = url.strip()
    parts = urlsplit(url)
    host = parts.hostname or ""
    allowed = host in settings.WEBHOOK_ALLOWED_HTTP_HOSTS
    if parts.scheme not in {"https", "http"} or not host:
        raise ValidationError({field: "Enter an https:// URL"})
    if parts.username or parts.password:
        raise ValidationError({field: "Put no credentials in the URL: the signature authenticates us"})
    if parts.scheme == "http" and not (settings.DEBUG or allowed):
        raise ValidationError({field: "Use https://"})
    if allowed:
        return url
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        if not resolve:
            return url
        try:
            infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
        except OSError as exc:
            raise ValidationError({field: f"{host} does not resolve: {exc}"}) from exc
        addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    if any(_internal(ip) for ip in addresses):
        raise ValidationError({field: f"{host} is an internal address: the portal sends only to public ones"})
    return url
