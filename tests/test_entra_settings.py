"""Entra ID settings (portal/entra.py): off when unset, loud when half set or wrong."""

import uuid

import pytest
from django.core.exceptions import ImproperlyConfigured

from portal.entra import entra_settings
from tests.identity.certificates import make_client_certificate
from tests.test_settings import PRODUCTION, _manage

TENANT, CLIENT = str(uuid.uuid4()), str(uuid.uuid4())
NAMES = [
    "ENTRA_TENANT_ID",
    "ENTRA_CLIENT_ID",
    "ENTRA_CLIENT_SECRET",
    "ENTRA_CLIENT_CERTIFICATE",
    "ENTRA_CLIENT_CERTIFICATE_THUMBPRINT",
    "ENTRA_CLIENT_PFX",
    "ENTRA_CLIENT_PFX_PASSPHRASE",
    "ENTRA_AUTHORITY_HOST",
    "ENTRA_REDIRECT_URI",
]


@pytest.fixture
def env(monkeypatch):
    for name in NAMES:
        monkeypatch.delenv(name, raising=False)

    def set_env(**values):
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return set_env


def test_it_is_off_without_any_setting(env):
    assert entra_settings() is None


def test_a_secret_turns_it_on_with_the_tenant_authority(env):
    env(ENTRA_TENANT_ID=TENANT, ENTRA_CLIENT_ID=CLIENT, ENTRA_CLIENT_SECRET="s3cret")
    config = entra_settings()
    assert config["authority"] == f"https://login.microsoftonline.com/{TENANT}"
    assert config["credential"] == "s3cret"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"ENTRA_TENANT_ID": TENANT}, "set ENTRA_CLIENT_ID and ENTRA_CLIENT_SECRET"),
        ({"ENTRA_CLIENT_SECRET": "x"}, "set ENTRA_TENANT_ID and ENTRA_CLIENT_ID"),
        (
            {"ENTRA_TENANT_ID": "common", "ENTRA_CLIENT_ID": CLIENT, "ENTRA_CLIENT_SECRET": "x"},
            "any Microsoft tenant",
        ),
        (
            {"ENTRA_TENANT_ID": "organizations", "ENTRA_CLIENT_ID": CLIENT, "ENTRA_CLIENT_SECRET": "x"},
            "any Microsoft tenant",
        ),
        (
            {"ENTRA_TENANT_ID": "not a tenant", "ENTRA_CLIENT_ID": CLIENT, "ENTRA_CLIENT_SECRET": "x"},
            "is not a tenant ID",
        ),
        (
            {"ENTRA_TENANT_ID": TENANT, "ENTRA_CLIENT_ID": "portal", "ENTRA_CLIENT_SECRET": "x"},
            "is not an application",
        ),
        (
            {
                "ENTRA_TENANT_ID": TENANT,
                "ENTRA_CLIENT_ID": CLIENT,
                "ENTRA_CLIENT_SECRET": "x",
                "ENTRA_CLIENT_PFX": "/a.pfx",
            },
            "takes one credential",
        ),
        (
            {"ENTRA_TENANT_ID": TENANT, "ENTRA_CLIENT_ID": CLIENT, "ENTRA_CLIENT_CERTIFICATE": "/nope.pem"},
            "cannot be read",
        ),
        (
            {
                "ENTRA_TENANT_ID": TENANT,
                "ENTRA_CLIENT_ID": CLIENT,
                "ENTRA_CLIENT_SECRET": "x",
                "ENTRA_REDIRECT_URI": "http://portal.nhs.uk/cb",
            },
            "must be https://",
        ),
    ],
)
def test_a_bad_or_half_configuration_stops_the_start(env, values, message):
    env(**values)
    with pytest.raises(ImproperlyConfigured, match=message):
        entra_settings()


def test_a_pem_certificate_gives_its_thumbprint(env, tmp_path):
    from cryptography.hazmat.primitives import hashes

    certificate, pem, _ = make_client_certificate()
    (tmp_path / "app.pem").write_bytes(pem)
    env(ENTRA_TENANT_ID=TENANT, ENTRA_CLIENT_ID=CLIENT, ENTRA_CLIENT_CERTIFICATE=str(tmp_path / "app.pem"))
    credential = entra_settings()["credential"]
    assert credential["thumbprint"] == certificate.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303
    assert "PRIVATE KEY" in credential["private_key"] and "CERTIFICATE" in credential["public_certificate"]


def test_a_key_without_certificate_needs_a_thumbprint(env, tmp_path):
    _, pem, _ = make_client_certificate()
    (tmp_path / "key.pem").write_bytes(pem.split(b"-----BEGIN CERTIFICATE")[0])
    env(ENTRA_TENANT_ID=TENANT, ENTRA_CLIENT_ID=CLIENT, ENTRA_CLIENT_CERTIFICATE=str(tmp_path / "key.pem"))
    with pytest.raises(ImproperlyConfigured, match="THUMBPRINT"):
        entra_settings()
    env(ENTRA_CLIENT_CERTIFICATE_THUMBPRINT="AB:" * 19 + "AB")
    assert entra_settings()["credential"]["thumbprint"] == "AB" * 20


def test_a_pfx_with_the_wrong_passphrase_is_named(env, tmp_path):
    _, _, pfx = make_client_certificate()
    (tmp_path / "app.pfx").write_bytes(pfx)
    env(
        ENTRA_TENANT_ID=TENANT,
        ENTRA_CLIENT_ID=CLIENT,
        ENTRA_CLIENT_PFX=str(tmp_path / "app.pfx"),
        ENTRA_CLIENT_PFX_PASSPHRASE="wrong",
    )
    with pytest.raises(ImproperlyConfigured, match="wrong ENTRA_CLIENT_PFX_PASSPHRASE"):
        entra_settings()


def test_the_portal_refuses_to_start_half_configured():
    result = _manage("check", env={**PRODUCTION, "ENTRA_TENANT_ID": TENANT})
    assert result.returncode != 0
    assert "Entra ID sign-in is half configured" in result.stderr
