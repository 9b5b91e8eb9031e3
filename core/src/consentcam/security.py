"""Secrets: password hashes (argon2), random capabilities stored only as hashes, encryption of device
credentials and the deployment's signing key, both derived from the one deployment key."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified against when the email is unknown, so that a failed login costs the same either way. Made on first
    use, not at import: hashing costs a noticeable fraction of a second, and every CLI command imports this module."""
    return _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _dummy_hash(), password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def new_secret(prefix: str = "", nbytes: int = 32) -> str:
    """A random capability (at least 128 bits; 256 by default) for tokens, links and keys."""
    return prefix + secrets.token_urlsafe(nbytes)


def digest(secret: str) -> str:
    """What is stored of a capability: its SHA-256. Lookups go by digest, so no secret is compared."""
    return hashlib.sha256(secret.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def one_time_password() -> str:
    return secrets.token_urlsafe(12)


class Keyring:
    """Keys derived from the deployment key, each for one purpose."""

    def __init__(self, deployment_key: bytes) -> None:
        self._root = deployment_key
        self._derived: dict[tuple[bytes, int], bytes] = {}

    def _derive(self, purpose: bytes, length: int = 32) -> bytes:
        # Derived once per purpose: a request fanning out to 10,000 cameras derives one key, not 10,000.
        key = (purpose, length)
        if key not in self._derived:
            self._derived[key] = HKDF(algorithm=hashes.SHA256(), length=length, salt=b"consentcam", info=purpose).derive(self._root)
        return self._derived[key]

    def _fernet(self) -> Fernet:
        return Fernet(base64.urlsafe_b64encode(self._derive(b"credentials-at-rest")))

    def encrypt(self, plaintext: str) -> str:
        return self._fernet().encrypt(plaintext.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet().decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("stored credentials cannot be decrypted with this deployment key") from exc

    def signing_key(self) -> Ed25519PrivateKey:
        return Ed25519PrivateKey.from_private_bytes(self._derive(b"ed25519-signing"))

    def verify_key(self) -> Ed25519PublicKey:
        return self.signing_key().public_key()

    def hmac(self, purpose: bytes, message: bytes) -> str:
        return hmac.digest(self._derive(purpose), message, "sha256").hex()  # one-shot: 10,000 tokens a request
