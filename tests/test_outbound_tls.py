"""The outbound rules' TLS path against a real TLS listener: the connection goes to the address that was checked,
yet the TLS server name (SNI) is the name, and the certificate is verified against that name and the trusted CA.
The certificates are made here (a test CA and a server certificate for one name); the name resolves to the
listener through outbound's resolver hook."""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import threading

import httpx
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from migrations_app import outbound
from migrations_app.outbound import outbound_request
from migrations_app.outbound_transport import outbound_session

NAME = "graph.sni.example"


def _key():
    return ec.generate_private_key(ec.SECP256R1())


def _pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _certificate(subject: str, key, issuer_name: x509.Name, issuer_key, *, ca: bool, san: str | None = None):
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(san)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A test CA, and a server certificate it issued for NAME."""
    directory = tmp_path_factory.mktemp("pki")
    ca_key = _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Portal test CA")])
    ca = _certificate("Portal test CA", ca_key, ca_name, ca_key, ca=True)
    server_key = _key()
    server = _certificate(NAME, server_key, ca_name, ca_key, ca=False, san=NAME)
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (directory / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (directory / "server.key").write_bytes(_pem(server_key))
    return directory


class TLSListener:
    """A TLS server on 127.0.0.1 that records the SNI name of every handshake and answers 200."""

    def __init__(self, pki):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(pki / "server.pem", pki / "server.key")
        self.server_names: list[str | None] = []
        self.context.sni_callback = lambda sock, name, ctx: self.server_names.append(name)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            raw.settimeout(3)
            try:
                with self.context.wrap_socket(raw, server_side=True) as conn:
                    self.requests.append(self._read_request(conn))
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            except (OSError, ssl.SSLError):
                pass  # a client that refused our certificate hangs up mid-handshake

    @staticmethod
    def _read_request(conn) -> bytes:
        """The whole request, head and body (a client may write its body after its head: answering and closing
        after the first read would cut it off mid-write)."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        return data if not length else head + b"\r\n\r\n" + body

    def close(self):
        self.sock.close()


@pytest.fixture
def tls_listener(pki, settings, monkeypatch):
    listener = TLSListener(pki)
    for name in (NAME, "wrong.sni.example"):
        settings.OUTBOUND_ALLOWED_PORTS = [*settings.OUTBOUND_ALLOWED_PORTS, f"{name}:{listener.port}"]
        settings.OUTBOUND_ALLOWED_INTERNAL_HOSTS = [*settings.OUTBOUND_ALLOWED_INTERNAL_HOSTS, name]
    # both names resolve to the listener, through the hook outbound asks (and only it)
    real = outbound.resolver
    monkeypatch.setattr(
        outbound,
        "resolver",
        lambda host, port: ["127.0.0.1"] if host in (NAME, "wrong.sni.example") else real(host, port),
    )
    yield listener
    listener.close()


def test_the_requests_transport_sends_the_name_as_sni_and_verifies_the_certificate(pki, tls_listener):
    session = outbound_session()
    response = session.get(f"https://{NAME}:{tls_listener.port}/v1.0/me", verify=str(pki / "ca.pem"))
    assert (response.status_code, response.text) == (200, "ok")
    assert tls_listener.server_names == [NAME]
    request = tls_listener.requests[0].decode()
    assert request.startswith("GET /v1.0/me HTTP/1.1")
    assert f"host: {NAME}:{tls_listener.port}" in request.lower()
    assert response.url == f"https://{NAME}:{tls_listener.port}/v1.0/me"


def test_a_certificate_for_another_name_fails_verification(pki, tls_listener):
    """The connection reaches the same listener, but its certificate is for NAME, not the name asked for."""
    session = outbound_session()
    with pytest.raises(requests.exceptions.SSLError, match="(?i)hostname|match"):
        session.get(f"https://wrong.sni.example:{tls_listener.port}/", verify=str(pki / "ca.pem"))
    assert tls_listener.server_names == ["wrong.sni.example"]
    assert tls_listener.requests == []  # nothing was sent over a connection that failed verification


def test_a_certificate_from_an_untrusted_ca_fails_verification(tls_listener):
    """Without the test CA (the system's trust store only), the same name and listener are refused."""
    with pytest.raises(requests.exceptions.SSLError, match="(?i)certificate verify failed"):
        outbound_session().get(f"https://{NAME}:{tls_listener.port}/")
    assert tls_listener.requests == []


def _httpx_trusting(pki, monkeypatch):
    context = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    client = httpx.Client(follow_redirects=False, trust_env=False, verify=context)
    monkeypatch.setattr(outbound, "_client", lambda: client)


def test_the_webhook_sender_sends_the_name_as_sni_and_verifies_it(pki, tls_listener, monkeypatch):
    _httpx_trusting(pki, monkeypatch)
    result = outbound_request("POST", f"https://{NAME}:{tls_listener.port}/hook", content=b"{}")
    assert (result.status, result.reason) == (200, "OK")
    assert tls_listener.server_names == [NAME]


def test_the_webhook_sender_refuses_a_certificate_for_another_name(pki, tls_listener, monkeypatch):
    _httpx_trusting(pki, monkeypatch)
    result = outbound_request("POST", f"https://wrong.sni.example:{tls_listener.port}/hook", content=b"{}")
    assert result.status is None and "TLS" in result.reason
    assert tls_listener.server_names == ["wrong.sni.example"] and tls_listener.requests == []


def test_exchanges_adapter_verifies_a_cas_against_its_private_ca_by_name(pki, tls_listener, monkeypatch):
    """exchangelib's sessions: the endpoint's ca_file is found by the CAS's name (not the address connected
    to), and a CAS without one is checked against the system's trust store (and refused here)."""
    from exchangelib.protocol import BaseProtocol

    from migrations_app.engines import ews_transport

    ews_transport.install_exchange_adapter()
    monkeypatch.setitem(ews_transport._ca_files, NAME, str(pki / "ca.pem"))
    session = requests.Session()
    session.mount("https://", BaseProtocol.HTTP_ADAPTER_CLS())
    response = session.get(f"https://{NAME}:{tls_listener.port}/EWS/Exchange.asmx")
    assert response.status_code == 200 and tls_listener.server_names == [NAME]
    monkeypatch.delitem(ews_transport._ca_files, NAME)
    with pytest.raises(requests.exceptions.SSLError):
        session.get(f"https://{NAME}:{tls_listener.port}/EWS/Exchange.asmx")
