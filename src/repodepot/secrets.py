"""Encrypt secrets at rest (import and code host tokens) with a key derived from the secret key."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken

from repodepot.exceptions import RepodepotError


class SecretUnreadable(RepodepotError):
    """A stored secret cannot be decrypted (was the secret key changed?)."""

    code = "secret_unreadable"


class SecretBox:
    """Authenticated encryption (Fernet: AES-128-CBC + HMAC-SHA256) of short strings."""

    def __init__(self, secret_key: str) -> None:
        derived = hashlib.sha256(b"repodepot/secrets/v1\0" + secret_key.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def seal(self, plaintext: str) -> str:
        """Encrypt `plaintext`; the result is safe to store."""
        return self._fernet.encrypt(plaintext.encode()).decode()

    def open(self, sealed: str) -> str:
        """Decrypt what `seal` produced; raises SecretUnreadable."""
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            raise SecretUnreadable() from None
