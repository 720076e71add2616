"""Entra ID sign-in settings, read from the environment and checked loudly at start (README: "Sign-in with
Entra ID"). Entra is on only when ENTRA_TENANT_ID, ENTRA_CLIENT_ID and exactly one credential are set:

    ENTRA_CLIENT_SECRET                        a client secret, or
    ENTRA_CLIENT_CERTIFICATE (+ _THUMBPRINT)   a PEM file with the private key (and the certificate, from
                                               which the SHA-1 thumbprint is taken when none is given), or
    ENTRA_CLIENT_PFX (+ _PFX_PASSPHRASE)       a PKCS#12 file, opened here with `cryptography`

Setting some of these and not the others is a mistake, not "off": the start stops and names what is missing.
"""

from __future__ import annotations

import re
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from portal.env import env_bool, env_str

_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DOMAIN = re.compile(r"^[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_THUMBPRINT = re.compile(r"^[0-9A-F]{40}$")
MULTI_TENANT = {"common", "organizations", "consumers"}


def _read(name: str, path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ImproperlyConfigured(f"{name}={path!r} cannot be read: {exc.strerror}") from None


def _certificate_credential() -> dict:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.serialization import pkcs12

    pem_path, pfx_path = env_str("ENTRA_CLIENT_CERTIFICATE"), env_str("ENTRA_CLIENT_PFX")
    if pfx_path:
        passphrase = env_str("ENTRA_CLIENT_PFX_PASSPHRASE").encode() or None
        try:
            key, certificate, _ = pkcs12.load_key_and_certificates(
                _read("ENTRA_CLIENT_PFX", pfx_path), passphrase
            )
        except ValueError:
            raise ImproperlyConfigured(
                "ENTRA_CLIENT_PFX cannot be opened: wrong ENTRA_CLIENT_PFX_PASSPHRASE, or not a PKCS#12 file"
            ) from None
        if key is None or certificate is None:
            raise ImproperlyConfigured("ENTRA_CLIENT_PFX must hold both the private key and its certificate")
    else:
        data = _read("ENTRA_CLIENT_CERTIFICATE", pem_path)
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise ImproperlyConfigured(
                "ENTRA_CLIENT_CERTIFICATE must be a PEM file with an unencrypted private key"
            ) from None
        certificate = None
        if b"BEGIN CERTIFICATE" in data:
            certificate = x509.load_pem_x509_certificate(data[data.index(b"-----BEGIN CERTIFICATE") :])
    thumbprint = env_str("ENTRA_CLIENT_CERTIFICATE_THUMBPRINT").replace(":", "").strip().upper()
    if not thumbprint and certificate is not None:
        thumbprint = certificate.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - Entra's x5t is SHA-1
    if not _THUMBPRINT.match(thumbprint):
        raise ImproperlyConfigured(
            "ENTRA_CLIENT_CERTIFICATE_THUMBPRINT must be the certificate's SHA-1 thumbprint (40 hex digits), "
            "or the PEM file must include the certificate"
        )
    credential = {
        "private_key": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        "thumbprint": thumbprint,
    }
    if certificate is not None:
        credential["public_certificate"] = certificate.public_bytes(serialization.Encoding.PEM).decode()
    return credential


def entra_settings() -> dict | None:
    """None when Entra sign-in is off; otherwise what services.entra needs. Raises on a half configuration."""
    tenant = env_str("ENTRA_TENANT_ID").strip()
    client_id = env_str("ENTRA_CLIENT_ID").strip()
    secret = env_str("ENTRA_CLIENT_SECRET")
    credentials = [
        n for n in ("ENTRA_CLIENT_SECRET", "ENTRA_CLIENT_CERTIFICATE", "ENTRA_CLIENT_PFX") if env_str(n)
    ]
    if not (tenant or client_id or credentials):
        return None
    missing = [n for n, v in (("ENTRA_TENANT_ID", tenant), ("ENTRA_CLIENT_ID", client_id)) if not v]
    if not credentials:
        missing.append("ENTRA_CLIENT_SECRET, ENTRA_CLIENT_CERTIFICATE or ENTRA_CLIENT_PFX")
    if missing:
        raise ImproperlyConfigured(f"Entra ID sign-in is half configured: set {' and '.join(missing)}")
    if len(credentials) > 1:
        raise ImproperlyConfigured(f"Entra ID sign-in takes one credential, not {' and '.join(credentials)}")
    if tenant.lower() in MULTI_TENANT:
        raise ImproperlyConfigured(
            f"ENTRA_TENANT_ID={tenant!r} would let any Microsoft tenant sign in: use your tenant ID (a GUID)"
        )
    if not (_GUID.match(tenant) or _DOMAIN.match(tenant)):
        raise ImproperlyConfigured(f"ENTRA_TENANT_ID={tenant!r} is not a tenant ID (GUID) or domain")
    if not _GUID.match(client_id):
        raise ImproperlyConfigured(
            f"ENTRA_CLIENT_ID={client_id!r} is not an application (client) ID (a GUID)"
        )
    host = env_str("ENTRA_AUTHORITY_HOST", "login.microsoftonline.com").strip().lower()
    if not _DOMAIN.match(host):
        raise ImproperlyConfigured(f"ENTRA_AUTHORITY_HOST={host!r} is not a host name")
    redirect_uri = env_str("ENTRA_REDIRECT_URI").strip()
    if redirect_uri and not redirect_uri.startswith(("https://", "http://localhost", "http://127.0.0.1")):
        raise ImproperlyConfigured("ENTRA_REDIRECT_URI must be https:// (http only for localhost)")
    return {
        "tenant_id": tenant,
        "client_id": client_id,
        "credential": secret if secret else _certificate_credential(),
        "authority": f"https://{host}/{tenant}",
        "redirect_uri": redirect_uri,
        "organisations_claim": env_str("ENTRA_ORGANISATIONS_CLAIM").strip(),
        "allow_local_sign_in": env_bool("ENTRA_ALLOW_LOCAL_SIGN_IN", False),
        "http_client": None,  # tests put a requests Session here (MSAL's http_client)
    }
