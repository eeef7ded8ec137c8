"""MariaDB's client_ed25519 login: an Ed25519 signature of the server's 32-byte scramble.

MariaDB's auth_ed25519 plugin derives the key from the password as RFC 8032 derives it
from a seed, except that the whole password of any length is hashed (SHA-512) where the
RFC hashes a 32-byte seed; so library implementations, which take only 32-byte seeds,
do not fit, and the signature is computed here from RFC 8032 section 5.1 (sign only, in
extended coordinates). It runs once per server login, a few milliseconds in Python.
https://mariadb.com/kb/en/authentication-plugin-ed25519/
"""

from __future__ import annotations

import hashlib

_P = 2**255 - 19  # the field
_L = 2**252 + 27742317777372353535851937790883648493  # the group order
_D = -121665 * pow(121666, _P - 2, _P) % _P

Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z


def _add(p: Point, q: Point) -> Point:
    a = (p[1] - p[0]) * (q[1] - q[0]) % _P
    b = (p[1] + p[0]) * (q[1] + q[0]) % _P
    c = 2 * p[3] * q[3] * _D % _P
    d = 2 * p[2] * q[2] % _P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % _P, g * h % _P, f * g % _P, e * h % _P)


def _multiply(scalar: int, point: Point) -> Point:
    result: Point = (0, 1, 1, 0)  # the neutral element
    while scalar:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def _base() -> Point:
    y = 4 * pow(5, _P - 2, _P) % _P
    # x from y: x^2 = (y^2 - 1) / (d y^2 + 1), the even root
    u, v = (y * y - 1) % _P, (_D * y * y + 1) % _P
    x = u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P) % _P
    if (v * x * x - u) % _P:
        x = x * pow(2, (_P - 1) // 4, _P) % _P
    if x & 1:
        x = _P - x
    return (x, y, 1, x * y % _P)


_B = _base()


def _encode(point: Point) -> bytes:
    z_inverse = pow(point[2], _P - 2, _P)
    x, y = point[0] * z_inverse % _P, point[1] * z_inverse % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _hash_int(*parts: bytes) -> int:
    return int.from_bytes(hashlib.sha512(b"".join(parts)).digest(), "little")


def public_key(password: bytes) -> bytes:
    """The 32-byte public key of a password (what the server stores, base64-encoded)."""
    return _encode(_multiply(_secret(password)[0], _B))


def _secret(password: bytes) -> tuple[int, bytes]:
    digest = hashlib.sha512(password).digest()
    scalar = int.from_bytes(digest[:32], "little")
    scalar &= (1 << 254) - 8
    scalar |= 1 << 254
    return scalar, digest[32:]


def sign(password: bytes, message: bytes) -> bytes:
    """The 64-byte signature (R, S) of ``message`` with the key of ``password``."""
    scalar, prefix = _secret(password)
    public = _encode(_multiply(scalar, _B))
    nonce = _hash_int(prefix, message) % _L
    r = _encode(_multiply(nonce, _B))
    s = (nonce + _hash_int(r, public, message) * scalar) % _L
    return r + s.to_bytes(32, "little")
