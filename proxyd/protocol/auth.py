"""Authentication plugins: scrambles to send and checks of what clients send.

mysql_native_password: SHA1(password) XOR SHA1(scramble + SHA1(SHA1(password))).
caching_sha2_password fast path: SHA256(password) XOR SHA256(SHA256(SHA256(password)) + scramble).
Its full path sends the password in clear over TLS or RSA-encrypted (OAEP) with the
server's public key, XORed with the scramble first.
https://dev.mysql.com/doc/dev/mysql-server/latest/page_caching_sha2_authentication_exchanges.html
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

NATIVE_PASSWORD = b"mysql_native_password"
CACHING_SHA2_PASSWORD = b"caching_sha2_password"
CLEAR_PASSWORD = b"mysql_clear_password"

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


def check_native(response: bytes, scramble: bytes, password: bytes) -> bool:
    return hmac.compare_digest(response, scramble_native(password, scramble))


def check_caching_sha2(response: bytes, scramble: bytes, password: bytes) -> bool:
    return hmac.compare_digest(response, scramble_caching_sha2(password, scramble))


def rsa_encrypt_password(password: bytes, scramble: bytes, public_key_pem: bytes) -> bytes:
    """caching_sha2_password / sha256_password full path without TLS."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    key = serialization.load_pem_public_key(public_key_pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("server public key is not an RSA key")
    plain = password + b"\x00"
    salted = bytes(c ^ scramble[i % len(scramble)] for i, c in enumerate(plain))
    return key.encrypt(
        salted,
        padding.OAEP(
            mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None
        ),
    )
