"""Where proxyd listens and connects: ``host:port`` (IPv4, bracketed IPv6) and Unix
sockets, parsed from the config with reasons a user can act on."""

from __future__ import annotations

from dataclasses import dataclass

from proxyd.config_fields import Section, describe, string


@dataclass(frozen=True, slots=True)
class Address:
    host: str  # IPv6 literals are stored without brackets, ready for socket calls
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, value: object) -> Address:
        """Parse ``host:port`` or ``[ipv6]:port``; raise ValueError with a reason."""
        if not isinstance(value, str):
            raise ValueError(f"expected 'host:port', got {describe(value)}")
        text = value.strip()
        host, sep, port_text = text.rpartition(":")
        if not sep or not port_text:
            raise ValueError(f"expected 'host:port', got {text!r}")
        if host.startswith("[") and host.endswith("]"):
            host = host[1:-1]
            if ":" not in host:
                raise ValueError(f"brackets are only for IPv6 addresses, got {text!r}")
        elif ":" in host:
            raise ValueError(f"write IPv6 addresses in brackets, e.g. '[::1]:6033', got {text!r}")
        if not host:
            raise ValueError(f"missing host in {text!r} (use 0.0.0.0 or [::] for all addresses)")
        if any(c.isspace() for c in host) or "[" in host or "]" in host:
            raise ValueError(f"invalid host in {text!r}")
        if not port_text.isdigit():
            raise ValueError(f"port must be a number, got {port_text!r}")
        port = int(port_text)
        if not 1 <= port <= 65535:
            raise ValueError(f"port must be between 1 and 65535, got {port}")
        return cls(host, port)


@dataclass(frozen=True, slots=True)
class UnixAddress:
    """A Unix socket to listen on: its path, the file's mode, and its owner."""

    path: str
    mode: int = 0o777  # as mysqld's socket: who may log in is the passwords' business
    owner: str | None = None  # "user", "user:group" or ":group"

    def __str__(self) -> str:
        return f"unix:{self.path}"

    @classmethod
    def parse(cls, value: str) -> UnixAddress:
        path = value[len("unix:") :] if value.startswith("unix:") else value
        if not path.startswith("/"):
            raise ValueError(f"a Unix socket needs an absolute path, got {value!r}")
        if len(path.encode()) > 107:
            raise ValueError(f"{path!r} is longer than a Unix socket path may be (107 bytes)")
        return cls(path)


ListenAddress = Address | UnixAddress


def listen_address(item: object, key: str, path: str) -> ListenAddress:
    """``host:port``, a Unix socket (``/path`` or ``unix:/path``), or a mapping of
    ``address`` with ``socket_mode`` and ``socket_owner`` for a socket."""
    if isinstance(item, dict):
        section = Section(item, key, path, ("address", "socket_mode", "socket_owner"))
        address = section.get("address", string)
        if not address.startswith(("/", "unix:")):
            raise section.error("address", "socket_mode and socket_owner are for Unix sockets")
        try:
            unix = UnixAddress.parse(address)
        except ValueError as e:
            raise section.error("address", str(e)) from None
        return UnixAddress(
            unix.path,
            section.get("socket_mode", _file_mode, 0o777),
            section.get("socket_owner", string, None),
        )
    if isinstance(item, str) and item.startswith(("/", "unix:")):
        return UnixAddress.parse(item)
    return Address.parse(item)


def _file_mode(value: object) -> int:
    """A mode written as in chmod: "0660" or "660" (quoted: YAML would read 0660 as a
    number, and 660 in decimal)."""
    if isinstance(value, str) and value.isdigit() and set(value) <= set("01234567"):
        mode = int(value, 8)
        if mode <= 0o777:
            return mode
    raise ValueError(f'expected an octal mode such as "0660" (quoted), got {describe(value)}')
