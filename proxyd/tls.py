"""TLS: towards clients (the ``tls:`` section, its SSL context, the encryption layer) and
towards the server (``backend.tls``, MySQL's ``--ssl-mode``).

A MySQL client asks for TLS with an SSLRequest packet in the middle of the login, then
starts its TLS handshake on the same socket, often in the same TCP segment. The layer
here is sans-IO (an ``ssl.SSLObject`` over two memory BIOs, as h11 would have it): the
session feeds it whatever bytes came after the SSLRequest, so nothing the client sent
early is lost, and the client adapter (proxyd/frontend.py) swaps in a TLSTransport that
encrypts what the session and the server connections write.

Contexts are built from the files when the config is loaded: ``--check`` and a reload
(SIGHUP) read the certificate and key again, so a rotated certificate is used for every
new connection while connections already encrypted go on with theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import os
import ssl
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from proxyd.config_fields import Section, choice, string

TLS_MODES = ("allow", "require", "disabled")
TLS_KEYS = ("cert", "key", "ca", "mode")
_CHUNK = 16 * 1024  # a TLS record's most; larger reads allocate (and mmap) for nothing


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """The ``tls:`` section (towards clients)."""

    mode: str = "disabled"
    cert: str | None = None
    key: str | None = None
    ca: str | None = None
    # Built from the files at load time; None when mode is disabled.
    context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)

    @property
    def required(self) -> bool:
        return self.mode == "require"


def parse_tls(top: Section, config_dir: str) -> TLSConfig:
    if top.data.get("tls") is None:
        return TLSConfig()
    section = top.section("tls", TLS_KEYS)
    cert, key, ca = (_path(section, name, config_dir) for name in ("cert", "key", "ca"))
    mode = section.get("mode", choice(TLS_MODES), "allow" if cert else "disabled")
    if mode == "disabled":
        return TLSConfig(mode, cert, key, ca)
    if cert is None:
        raise section.error("cert", f"missing (tls.mode {mode} needs a certificate)")
    return TLSConfig(mode, cert, key, ca, server_context(section, cert, key, ca))


def server_context(section: Section, cert: str, key: str | None, ca: str | None) -> ssl.SSLContext:
    """The standard library's secure server defaults, TLS 1.2 at least; client certificates
    verified against ``ca`` when a client presents one."""
    for name, file in (("cert", cert), ("key", key), ("ca", ca)):
        if file is not None:
            _readable(section, name, file)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise section.error(
            "cert", f"{cert}{' or ' + key if key else ''}: not a usable certificate and key ({exc})"
        ) from None
    expiry = _expiry(cert)
    if expiry is not None and expiry < datetime.datetime.now(datetime.timezone.utc):
        raise section.error(
            "cert", f"{cert}: the certificate expired on {expiry:%Y-%m-%d %H:%M} UTC"
        )
    if ca is not None:
        try:
            context.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise section.error("ca", f"{ca}: not a usable CA file ({exc})") from None
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def _expiry(cert: str) -> datetime.datetime | None:
    """When the first certificate of the file stops being valid (the file loaded already)."""
    try:
        with open(cert, "rb") as f:
            return x509.load_pem_x509_certificates(f.read())[0].not_valid_after_utc
    except (OSError, ValueError, IndexError):
        return None


class TLSError(Exception):
    """The peer's TLS handshake or records failed; the message says why."""

    def __init__(self, message: str, refused_certificate: bool = False) -> None:
        super().__init__(message)
        self.refused_certificate = refused_certificate  # verification failed


class TLSLayer:
    """TLS over bytes: ``receive`` ciphertext, get plaintext; ``send`` plaintext, get
    ciphertext. No socket. Server side towards clients; client side towards the server,
    where ``start()`` gives the first flight. (The same layer on both sides: measured
    in bench/RESULTS.md, it costs less CPU per query than the loop's start_tls.)"""

    __slots__ = ("_incoming", "_obj", "_outgoing", "closed", "handshaken")

    def __init__(
        self, context: ssl.SSLContext, server_side: bool = True, server_hostname: str | None = None
    ) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._obj = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side, server_hostname=server_hostname
        )
        self.handshaken = False
        self.closed = False  # the peer sent close_notify

    def start(self) -> bytes:
        """The client's first handshake flight (ClientHello), to send."""
        try:
            self._obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as exc:
            raise TLSError(exc.reason or str(exc)) from None
        return self._outgoing.read()

    @property
    def ssl_object(self) -> ssl.SSLObject:
        return self._obj

    def receive(self, data: bytes) -> tuple[bytes, bytes]:
        """(plaintext for the session, ciphertext to send back: handshake, alerts)."""
        self._incoming.write(data)
        try:
            if not self.handshaken:
                try:
                    self._obj.do_handshake()
                except ssl.SSLWantReadError:
                    return b"", self._outgoing.read()
                self.handshaken = True
            chunks = []
            while True:
                try:
                    chunk = self._obj.read(_CHUNK)
                except ssl.SSLWantReadError:
                    break
                except ssl.SSLZeroReturnError:
                    self.closed = True
                    break
                if not chunk:
                    break
                chunks.append(chunk)
        except ssl.SSLCertVerificationError as exc:
            raise TLSError(exc.verify_message or str(exc), refused_certificate=True) from None
        except ssl.SSLError as exc:
            raise TLSError(exc.reason or str(exc)) from None
        return b"".join(chunks), self._outgoing.read()

    def send(self, data: bytes | bytearray | memoryview) -> bytes:
        view = memoryview(data)
        while view:
            written = self._obj.write(view)
            view = view[written:]
        return self._outgoing.read()

    def close_notify(self) -> bytes:
        with contextlib.suppress(ssl.SSLError):
            self._obj.unwrap()
        return self._outgoing.read()


class TLSTransport(asyncio.Transport):
    """What the session and server connections write to once a client speaks TLS: the
    client's own transport, with each write encrypted. Reading and flow control stay
    with the socket's transport (whose protocol is still the client session)."""

    def __init__(self, raw: asyncio.Transport, layer: TLSLayer) -> None:
        super().__init__()
        self._raw = raw
        self._layer = layer

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._raw.is_closing():
            self._raw.write(self._layer.send(data))

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def is_closing(self) -> bool:
        return self._raw.is_closing()

    def close(self) -> None:
        if not self._raw.is_closing():
            self._raw.write(self._layer.close_notify())
        self._raw.close()

    def abort(self) -> None:
        self._raw.abort()

    def pause_reading(self) -> None:
        self._raw.pause_reading()

    def resume_reading(self) -> None:
        self._raw.resume_reading()

    def is_reading(self) -> bool:
        return self._raw.is_reading()

    def get_write_buffer_size(self) -> int:
        return self._raw.get_write_buffer_size()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._raw.set_write_buffer_limits(high, low)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "ssl_object":
            return self._layer.ssl_object
        if name == "peercert":
            return self._layer.ssl_object.getpeercert()
        if name == "cipher":
            return self._layer.ssl_object.cipher()
        return self._raw.get_extra_info(name, default)

    def can_write_eof(self) -> bool:
        return False


# --- towards the server -----------------------------------------------------------------

BACKEND_TLS_MODES = ("disabled", "preferred", "required", "verify_ca", "verify_identity")
BACKEND_TLS_KEYS = ("mode", "ca", "cert", "key", "server_name")


@dataclass(frozen=True, slots=True)
class BackendTLSConfig:
    """``backend.tls``: MySQL's --ssl-mode, towards the server."""

    mode: str = "preferred"
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    server_name: str | None = None  # the name verify_identity checks (default: the host)
    context: ssl.SSLContext | None = field(default=None, compare=False, repr=False)

    @property
    def login_mode(self) -> str:
        """What the login asks of the server: disabled, preferred or required."""
        return self.mode if self.mode in ("disabled", "preferred") else "required"


def parse_backend_tls(backend: Section, config_dir: str) -> BackendTLSConfig:
    section = backend.section("tls", BACKEND_TLS_KEYS)
    mode = section.get("mode", choice(BACKEND_TLS_MODES), "preferred")
    ca, cert, key = (_path(section, name, config_dir) for name in ("ca", "cert", "key"))
    server_name = section.get("server_name", string, None)
    if mode == "disabled":
        return BackendTLSConfig(mode, ca, cert, key, server_name)
    for name, file in (("ca", ca), ("cert", cert), ("key", key)):
        if file is not None:
            _readable(section, name, file)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if mode in ("preferred", "required"):
        # Encrypted, not authenticated (MySQL's meaning of these modes).
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.check_hostname = mode == "verify_identity"
        try:
            if ca is None:
                context.load_default_certs()
            else:
                context.load_verify_locations(cafile=ca)
        except (OSError, ssl.SSLError) as exc:
            raise section.error("ca", f"{ca}: not a usable CA file ({exc})") from None
    if cert is not None:
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as exc:
            raise section.error(
                "cert", f"{cert}: not a usable certificate and key ({exc})"
            ) from None
    elif key is not None:
        raise section.error("key", "given without backend.tls.cert")
    return BackendTLSConfig(mode, ca, cert, key, server_name, context)


def _path(section: Section, name: str, config_dir: str) -> str | None:
    """A file named in the section; relative to the config file's directory."""
    value = section.get(name, string, None)
    return None if value is None else os.path.join(config_dir, os.path.expanduser(value))


def _readable(section: Section, name: str, file: str) -> None:
    try:
        with open(file, "rb"):
            pass
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise section.error(name, f"{file}: {reason}") from None
