import pytest
from cryptography.fernet import Fernet

from migrations_app.fields import SecretDecryptionError
from migrations_app.models import Endpoint


def test_an_old_key_still_decrypts_after_rotation(db, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.PORTAL_ENCRYPTION_KEYS = [old]
    endpoint = Endpoint.objects.create(
        name="imap-source", kind="imap", role="source", secret="s3cret-password"
    )
    settings.PORTAL_ENCRYPTION_KEYS = [new, old]
    assert Endpoint.objects.get(pk=endpoint.pk).secret == "s3cret-password"


def test_a_value_no_key_decrypts_raises_instead_of_leaking_ciphertext(db, settings):
    settings.PORTAL_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    endpoint = Endpoint.objects.create(
        name="imap-source", kind="imap", role="source", secret="s3cret-password"
    )
    settings.PORTAL_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(SecretDecryptionError):
        Endpoint.objects.get(pk=endpoint.pk)
