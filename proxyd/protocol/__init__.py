"""The MySQL client/server wire protocol, sans I/O: bytes in, values and bytes out.

Nothing in this package touches a socket or an event loop; the asyncio layer
(frontend, backend) feeds it bytes and writes what it returns.
"""

from proxyd.protocol.errors import ProtocolError

__all__ = ["ProtocolError"]
