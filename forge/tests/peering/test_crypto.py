"""Peer tokens at rest: encrypted with a key derived from SECRET_KEY, unreadable under another key."""

import pytest

from anvil_forge.peering.crypto import TokenUnreadable, decrypt_token, encrypt_token

RAW = "anvil_peer_" + "S3cr3t" * 8


def test_encrypted_token_round_trips_and_never_contains_the_token():
    stored = encrypt_token(RAW)
    assert RAW not in stored and "S3cr3t" not in stored
    assert decrypt_token(stored) == RAW


def test_each_encryption_uses_a_fresh_iv():
    assert encrypt_token(RAW) != encrypt_token(RAW)


def test_token_stored_under_another_secret_key_is_refused_with_a_clear_message(settings):
    stored = encrypt_token(RAW)
    settings.SECRET_KEY = "another-secret-key-" + "y" * 40
    with pytest.raises(TokenUnreadable, match=r"cannot be decrypted.*SECRET_KEY"):
        decrypt_token(stored, peer_name="eu")


def test_tampered_ciphertext_is_refused():
    stored = encrypt_token(RAW)
    tampered = stored[:-6] + ("A" if stored[-6] != "A" else "B") + stored[-5:]
    with pytest.raises(TokenUnreadable):
        decrypt_token(tampered)
