"""Peer tokens at rest: Fernet (AES-128-CBC + HMAC-SHA256) under a key derived from the FORGE's SECRET_KEY.

The key is HKDF-SHA256 over ``SECRET_KEY`` with a purpose-specific ``info``, so it is never the secret itself
and never reused for anything else. Changing ``SECRET_KEY`` makes stored peer tokens unreadable: the peer then
shows a clear error asking for the token again (``peer add`` with the same name, or "Replace token").
"""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

from anvil_forge.core.exceptions import ApplicationError

_SALT = b"anvil-forge peering"
_INFO = b"anvil_forge.peering.token-encryption/1"


class TokenUnreadable(ApplicationError):
    """A stored peer token cannot be decrypted (SECRET_KEY changed, or the row was tampered with)."""


@lru_cache(maxsize=4)
def _fernet(secret_key: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=_INFO).derive(secret_key.encode("utf-8"))
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt_token(raw: str) -> str:
    """The token, encrypted for storage (ASCII, authenticated; a new random IV each time)."""
    return _fernet(settings.SECRET_KEY).encrypt(raw.encode("utf-8")).decode("ascii")


def decrypt_token(stored: str, *, peer_name: str = "") -> str:
    """The token back from :func:`encrypt_token`; :class:`TokenUnreadable` when it cannot be."""
    try:
        return _fernet(settings.SECRET_KEY).decrypt(stored.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError, ValueError) as exc:
        raise TokenUnreadable(
            f"The stored token of peer {peer_name or '?'} cannot be decrypted (was SECRET_KEY changed?). "
            "Enter the peer token again."
        ) from exc
