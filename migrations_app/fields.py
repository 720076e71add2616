"""A text field encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256).

Keys come from settings.PORTAL_ENCRYPTION_KEYS, newest first: every key decrypts, the first encrypts, so a
key can be rotated by putting the new one in front (and re-saving rows at leisure). Unlike the packaged
alternatives we looked at, a value that no key decrypts raises instead of being handed back as ciphertext,
and the keys are independent of SECRET_KEY (docs/adr/004-credentials-at-rest.md).
"""

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            f"PORTAL_ENCRYPTION_KEYS holds a key that is not a Fernet key: {exc}"
        ) from None


def fernet() -> MultiFernet:
    return _fernet(tuple(settings.PORTAL_ENCRYPTION_KEYS))


class SecretDecryptionError(Exception):
    pass


class EncryptedTextField(models.TextField):
    """Stores ciphertext; Python sees plain text. Never filter on it: the ciphertext is salted."""

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return fernet().encrypt(value.encode()).decode()

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        try:
            return fernet().decrypt(value.encode()).decode()
        except InvalidToken:
            raise SecretDecryptionError(
                "A stored credential cannot be decrypted with PORTAL_ENCRYPTION_KEYS: was a key removed?"
            ) from None
