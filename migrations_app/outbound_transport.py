"""The outbound rules (migrations_app/outbound.py) for code that speaks through `requests`: the Graph engine
(GraphClient and MSAL), the Graph import writer's importUrl, exchangelib's EWS sessions and pypsrp's WinRM
session. Every request, at the moment it is sent, resolves its host once through outbound's resolver, is
refused (no connection made) when any address is internal, and is sent to the address that was checked, with
the name kept as TLS SNI, as the name the certificate is verified against, and as Host. Saving an endpoint
only checks the URL's form; this is what stops a name that rebinds to 127.0.0.1 or 169.254.169.254 after it
was saved.

Mount `OutboundAdapter` on a session (`outbound_session()` does, for http:// and https://), or make it the base
of a library's adapter class (exchangelib's `BaseProtocol.HTTP_ADAPTER_CLS`). Redirects a session follows are
sent through the adapter again, so every hop is checked the same way. Proxies from the environment are never
used: a proxy would resolve the name again.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

from migrations_app.outbound import OutboundRefused, outbound_resolve

__all__ = ["OutboundAdapter", "OutboundRefusedError", "outbound_session"]


class OutboundRefusedError(requests.exceptions.ConnectionError):
    """The outbound rules refused the URL; nothing was sent. A requests exception, so a library's own error
    handling sees a connection that could not be made; str() is outbound's reason."""


class OutboundAdapter(HTTPAdapter):
    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        try:
            destination = outbound_resolve(request.url)
        except OutboundRefused as exc:
            raise OutboundRefusedError(f"{exc} ({urlsplit(request.url).hostname})", request=request) from exc
        address = destination.addresses[0]
        literal = f"[{address}]" if ":" in address else address
        parts = urlsplit(request.url)
        default_port = 443 if destination.scheme == "https" else 80
        authority = (
            destination.host if destination.port == default_port else f"{destination.host}:{destination.port}"
        )
        wire = request.copy()
        wire.url = urlunsplit(
            (destination.scheme, f"{literal}:{destination.port}", parts.path or "/", parts.query, "")
        )
        wire.headers["Host"] = authority
        wire.outbound_name = destination.host
        response = super().send(wire, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=None)
        # The caller (cookies, redirects, MSAL, exchangelib) sees the request it made, by name.
        response.url = request.url
        response.request = request
        return response

    def build_connection_pool_key_attributes(self, request, verify, cert=None):
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(request, verify, cert)
        name = getattr(request, "outbound_name", None)
        if name and host_params.get("scheme") == "https":
            # SNI and the certificate check use the name, not the address connected to. Both are part of
            # urllib3's pool key, so a pool (and its kept-alive connections) is per (address, name).
            pool_kwargs["server_hostname"] = name
            if verify is not False:
                pool_kwargs["assert_hostname"] = name
        return host_params, pool_kwargs


def outbound_session(session: requests.Session | None = None) -> requests.Session:
    """A requests session (a new one, or the one given) whose every request obeys the outbound rules."""
    session = session if session is not None else requests.Session()
    session.trust_env = False  # no proxy from the environment: it would resolve the name again
    adapter = OutboundAdapter()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
