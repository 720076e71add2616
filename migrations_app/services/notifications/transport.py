"""The Notify client's HTTP transport: one kept-alive connection per sending thread, one write per request.

notifications-python-client builds every request (the JWT, the headers, the JSON body) and reads every answer
(its APIError from Notify's error bodies); only the sending is done here, with the standard library's
http.client instead of a requests session. Measured against the fake Notify on this machine (a VM where every
system call and every wake-up of the other side is dear), the portal's CPU per message was 520-570 us through
urllib3, which writes the headers and the body in two system calls and re-parses the URL, the pool key and the
headers on every request; http.client sends the request in one write (headers and body together, also what
keeps Nagle's algorithm from holding the body back) and reuses the parsed URL: 320 us. The JWT the client
signs for every request depends only on the second it is made in (Notify's iat, epoch seconds), so
backends.py signs it once a second per thread: the same token the client would have made.

What the client's own transport (requests) gave us and this keeps:
- HTTPS_PROXY / NO_PROXY from the environment (a CONNECT tunnel through the proxy), read once;
- the CA bundle of REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE, else certifi's, with the host name checked;
- the timeout, for connecting and for each read;
- an answer other than 2xx raised as the client's HTTPError, built from a requests.Response exactly as the
  client does, so APIError's status_code and message are Notify's.

A kept-alive connection the server has closed while it was idle (Notify closes idle ones) is noticed before it
is reused (a zero-timeout poll says it is readable: the server's FIN) and replaced. A request that fails on the
wire is not retried here: the sender puts the message back in the queue (sending.py), so nothing is lost and
nothing is sent twice by this layer.
"""

from __future__ import annotations

import http.client
import os
import select
import ssl
import time
from urllib.parse import urlsplit

# A connection idle for longer than this is checked before it is reused (below it, a server closing it in
# between is too unlikely to pay a system call per request for).
CHECK_AFTER_IDLE_SECONDS = 1.0


class _OneWrite:
    """http.client writes a request's headers and its body in two system calls; this writes a body given as
    bytes together with the headers, in one. The rest of http.client's request is unchanged."""

    def _send_output(self, message_body=None, encode_chunked=False):
        if isinstance(message_body, bytes) and not encode_chunked:
            self._buffer.extend((b"", b""))
            message = b"\r\n".join(self._buffer) + message_body
            del self._buffer[:]
            self.send(message)
            return
        super()._send_output(message_body, encode_chunked=encode_chunked)


class _HTTPConnection(_OneWrite, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_OneWrite, http.client.HTTPSConnection):
    pass


def _ca_bundle() -> str:
    import certifi

    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()


class KeptAliveConnection:
    """One HTTP(S) connection to one origin, reopened when it has to be. Not thread-safe: one per thread."""

    def __init__(self, base_url: str, *, timeout: float):
        import requests

        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"Not an http(s) URL: {base_url!r}")
        self.scheme, self.host = parts.scheme, parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.timeout = timeout
        proxy = requests.utils.get_environ_proxies(base_url).get(parts.scheme)
        self.proxy = urlsplit(proxy if "://" in (proxy or "") else f"http://{proxy}") if proxy else None
        self._context = ssl.create_default_context(cafile=_ca_bundle()) if self.scheme == "https" else None
        self._connection: http.client.HTTPConnection | None = None
        self._last_used = 0.0

    def _open(self) -> http.client.HTTPConnection:
        if self.proxy is not None:
            host, port = self.proxy.hostname, self.proxy.port or 80
        else:
            host, port = self.host, self.port
        if self.scheme == "https":
            connection = _HTTPSConnection(host, port, timeout=self.timeout, context=self._context)
        else:
            connection = _HTTPConnection(host, port, timeout=self.timeout)
        if self.proxy is not None and self.scheme == "https":
            connection.set_tunnel(self.host, self.port)  # a plain-HTTP proxy takes the absolute URL instead
        return connection

    def _usable(self) -> http.client.HTTPConnection:
        connection = self._connection
        idle = time.monotonic() - self._last_used > CHECK_AFTER_IDLE_SECONDS
        if connection is not None and connection.sock is not None and idle:
            readable, _, _ = select.select([connection.sock], [], [], 0)
            if readable:  # the server closed it (or sent something unasked): start afresh
                connection.close()
                connection = None
        if connection is None:
            connection = self._connection = self._open()
        return connection

    def request(self, method: str, url: str, *, body: bytes | None, headers: dict) -> tuple[int, dict, bytes]:
        """Send one request and read its whole answer: (status, headers, body)."""
        parts = urlsplit(url)
        if f"{parts.scheme}://{parts.netloc}" != self.origin:
            raise ValueError(f"{url!r} is not on {self.origin}")
        if self.proxy is not None and self.scheme == "http":
            target = url  # a plain-HTTP proxy is asked for the absolute URL
        else:
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection = self._usable()
        try:
            connection.request(method, target, body=body, headers=headers)
            response = connection.getresponse()
            data = response.read()
        except BaseException:
            connection.close()
            self._connection = None
            raise
        if response.will_close:
            connection.close()
            self._connection = None
        self._last_used = time.monotonic()
        return response.status, dict(response.getheaders()), data

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
