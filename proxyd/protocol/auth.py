"""Authentication plugins: scrambles to send and checks of what clients send.

mysql_native_password: SHA1(password) XOR SHA1(scramble + SHA1(SHA1(password))).
caching_sha2_password fast path: SHA256(password) XOR SHA256(SHA256(SHA256(password)) + scramble).
Its full path sends the password in clear over TLS or RSA-encrypted (OAEP) with the
server's public key, XORed with the scramble first.
https://dev.mysql.com/doc/dev/mysql-server/latest/page_caching_sha2_authentication_exchanges.html

A server stores SHA1(SHA1(password)) for mysql_native_password ("*" + 40 hex digits in
mysql.user). That hash checks a native scramble answer, and the answer then yields
SHA1(password), which is all a native login to the server needs (Credentials).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.padding import OAEP

NATIVE_PASSWORD = b"mysql_native_password"
CACHING_SHA2_PASSWORD = b"caching_sha2_password"
CLEAR_PASSWORD = b"mysql_clear_password"
ED25519 = b"client_ed25519"  # MariaDB's; the server side is auth_ed25519

# caching_sha2_password AuthMoreData status bytes.
SHA2_FAST_AUTH_OK = b"\x03"
SHA2_PERFORM_FULL_AUTH = b"\x04"
SHA2_REQUEST_PUBLIC_KEY = b"\x02"


def new_scramble() -> bytes:
    """20 random bytes without NUL (clients treat the scramble as a C string)."""
    alphabet = bytes(range(1, 128))
    return bytes(secrets.choice(alphabet) for _ in range(20))


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def scramble_native(password: bytes, scramble: bytes) -> bytes:
    if not password:
        return b""
    stage1 = hashlib.sha1(password).digest()
    stage2 = hashlib.sha1(stage1).digest()
    return _xor(stage1, hashlib.sha1(scramble[:20] + stage2).digest())


def scramble_caching_sha2(password: bytes, scramble: bytes) -> bytes:
    if not password:
        return b""
    p1 = hashlib.sha256(password).digest()
    p2 = hashlib.sha256(p1).digest()
    return _xor(p1, hashlib.sha256(p2 + scramble[:20]).digest())


def scramble_native_from_sha1(password_sha1: bytes, scramble: bytes) -> bytes:
    """The native answer from SHA1(password) alone (what a checked answer yields)."""
    stage2 = hashlib.sha1(password_sha1).digest()
    return _xor(password_sha1, hashlib.sha1(scramble[:20] + stage2).digest())


def check_native(response: bytes, scramble: bytes, password: bytes) -> bool:
    return hmac.compare_digest(response, scramble_native(password, scramble))


def parse_native_hash(text: str) -> bytes:
    """``*`` + 40 hex digits (as mysql.user holds it) -> the 20 bytes; raise ValueError."""
    if len(text) != 41 or text[0] != "*":
        raise ValueError("expected '*' followed by 40 hex digits")
    return bytes.fromhex(text[1:])


@dataclass(frozen=True, slots=True)
class Credentials:
    """What proxyd knows of an account's password: the password itself, or only the
    server's mysql_native_password hash, SHA1(SHA1(password)) (``password`` None).
    An empty password is ``password=b""``."""

    password: bytes | None
    native_hash: bytes = b""  # SHA1(SHA1(password)); empty for an empty password

    @classmethod
    def of(cls, password: bytes) -> Credentials:
        digest = hashlib.sha1(hashlib.sha1(password).digest()).digest() if password else b""
        return cls(password, digest)

    @classmethod
    def of_hash(cls, native_hash: bytes) -> Credentials:
        return cls(b"" if not native_hash else None, native_hash)

    def check_native(self, response: bytes, scramble: bytes) -> bytes | None:
        """SHA1(password) if ``response`` is the right native answer (b"" for the empty
        password), else None."""
        if not self.native_hash:
            return b"" if not response else None
        if len(response) != 20:
            hmac.compare_digest(self.native_hash, self.native_hash)  # same cost either way
            return None
        candidate = _xor(response, hashlib.sha1(scramble[:20] + self.native_hash).digest())
        if hmac.compare_digest(hashlib.sha1(candidate).digest(), self.native_hash):
            return candidate
        return None

    def check_cleartext(self, password: bytes) -> bool:
        if self.password is not None:
            return hmac.compare_digest(password, self.password)
        digest = hashlib.sha1(hashlib.sha1(password).digest()).digest() if password else b""
        return hmac.compare_digest(digest, self.native_hash)


def check_caching_sha2(response: bytes, scramble: bytes, password: bytes) -> bool:
    return hmac.compare_digest(response, scramble_caching_sha2(password, scramble))


def _oaep() -> OAEP:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    sha1 = hashes.SHA1()
    return padding.OAEP(mgf=padding.MGF1(algorithm=sha1), algorithm=sha1, label=None)


def rsa_decrypt_password(encrypted: bytes, scramble: bytes, private_key: object) -> bytes:
    """The server side of rsa_encrypt_password; raise ValueError if it does not decrypt."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    salted = private_key.decrypt(encrypted, _oaep())
    plain = bytes(c ^ scramble[i % len(scramble)] for i, c in enumerate(salted))
    return plain[:-1] if plain.endswith(b"\x00") else plain


def rsa_encrypt_password(password: bytes, scramble: bytes, public_key_pem: bytes) -> bytes:
    """caching_sha2_password / sha256_password full path without TLS."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = serialization.load_pem_public_key(public_key_pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("server public key is not an RSA key")
    plain = password + b"\x00"
    salted = bytes(c ^ scramble[i % len(scramble)] for i, c in enumerate(plain))
    return key.encrypt(salted, _oaep())


def generate_rsa_key() -> Any:
    """A 2048-bit RSA private key, for caching_sha2_password's full path without TLS."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def load_rsa_key(pem: bytes) -> Any:
    """A PEM private key (``auth.rsa_key``); raise ValueError if it is not an RSA one."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key


def rsa_public_pem(private_key: Any) -> bytes:
    """The public half, as the PEM that caching_sha2_password clients expect."""
    from cryptography.hazmat.primitives import serialization

    public: bytes = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return public
