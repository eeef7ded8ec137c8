"""The one exception type the protocol layer raises on malformed input."""

from __future__ import annotations


class ProtocolError(ValueError):
    """Bytes that do not follow the MySQL client/server protocol."""


class PacketTooLarge(ProtocolError):
    """A peer announced a payload above the limit (the server's max_allowed_packet)."""
