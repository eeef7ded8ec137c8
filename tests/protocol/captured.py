"""The conversations recorded by capture.py, as values the tests can iterate over.

See capture.py for how they were made and how to make them again.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path

from hypothesis import HealthCheck, settings

from proxyd.protocol.constants import CLIENT
from proxyd.protocol.messages import (
    HandshakeResponse41,
    HandshakeV10,
    parse_handshake_response,
    parse_handshake_v10,
)
from proxyd.protocol.packets import PacketReader

CAPTURES = Path(__file__).parent / "captures" / "mariadb.json"

# Hypothesis: the same examples on every run, few enough to keep the directory fast.
# For a deeper hunt by hand: PROXYD_FUZZ_EXAMPLES=20000 pytest tests/protocol/test_fuzz.py
FUZZ = settings(
    derandomize=True,
    database=None,
    max_examples=int(os.environ.get("PROXYD_FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def payloads(data: bytes) -> list[tuple[int, bytes]]:
    """(sequence id, logical payload) of every packet in a byte stream, which must end cleanly."""
    reader = PacketReader()
    reader.feed(data)
    out = []
    while (packet := reader.next_packet()) is not None:
        out.append(packet)
    assert reader.buffered == 0, "stream does not end on a packet boundary"
    return out


def physical_packets(data: bytes) -> list[bytes]:
    """Each framed packet of a stream, header included, without reassembling 16 MiB runs."""
    out = []
    pos = 0
    while pos < len(data):
        length = int.from_bytes(data[pos : pos + 3], "little")
        out.append(data[pos : pos + 4 + length])
        pos += 4 + length
    assert pos == len(data)
    return out


@dataclass(frozen=True)
class Part:
    client: bytes
    server: bytes


@dataclass(frozen=True)
class Command:
    session: Session = field(repr=False, compare=False)
    step: str
    command: int
    parts: tuple[Part, ...]

    @property
    def id(self) -> str:
        return f"{self.session.name}/{self.step}/0x{self.command:02x}"

    @cached_property
    def capabilities(self) -> int:
        return self.session.capabilities

    @property
    def answer(self) -> bytes:
        """All the server sent (for a LOCAL INFILE, both halves)."""
        return b"".join(p.server for p in self.parts)

    @property
    def has_progress_report(self) -> bool:
        """MariaDB progress reports (ERR 0xFFFF) go only to clients that asked for them."""
        return any(
            payload[:3] == b"\xff\xff\xff"
            for part in self.parts
            for _, payload in payloads(part.server)
        )


@dataclass(frozen=True)
class Session:
    name: str
    client: str
    login: tuple[tuple[str, bytes], ...]  # (direction, bytes) runs
    commands: tuple[Command, ...] = field(repr=False, compare=False)

    @property
    def greeting_payload(self) -> bytes:
        direction, data = self.login[0]
        assert direction == "server"
        return payloads(data)[0][1]

    @cached_property
    def greeting(self) -> HandshakeV10:
        return parse_handshake_v10(self.greeting_payload)

    @property
    def response_payload(self) -> bytes:
        direction, data = self.login[1]
        assert direction == "client"
        return payloads(data)[0][1]

    @cached_property
    def response(self) -> HandshakeResponse41:
        return parse_handshake_response(self.response_payload)

    @property
    def login_result(self) -> bytes:
        """Payload of the OK or ERR that ends the login."""
        direction, data = self.login[-1]
        assert direction == "server"
        return payloads(data)[-1][1]

    @cached_property
    def capabilities(self) -> int:
        """What client and server negotiated: the flags both sides set."""
        return self.response.capability_flags & self.greeting.capability_flags

    @cached_property
    def mariadb_capabilities(self) -> int:
        """MariaDB's extended flags, which a client without CLIENT_MYSQL puts in the filler."""
        if self.response.capability_flags & CLIENT.LONG_PASSWORD:  # CLIENT_MYSQL
            return 0
        asked = int.from_bytes(self.response_payload[28:32], "little")
        return asked & self.greeting.mariadb_capabilities

    @property
    def trackers_on(self) -> bool:
        """SESSION_TRACK negotiated and every tracker switched on by the session."""
        return bool(self.capabilities & CLIENT.SESSION_TRACK) and any(
            c.step == "trackers_on" for c in self.commands
        )

    def step(self, step: str) -> list[Command]:
        return [c for c in self.commands if c.step == step]

    def one(self, step: str, command: int | None = None) -> Command:
        found = [c for c in self.step(step) if command is None or c.command == command]
        assert len(found) == 1, (self.name, step, found)
        return found[0]


@dataclass(frozen=True)
class Captures:
    server_version: str
    user: bytes
    password: bytes
    sessions: tuple[Session, ...]

    def session(self, name: str) -> Session:
        return next(s for s in self.sessions if s.name == name)

    @property
    def commands(self) -> list[Command]:
        return [c for s in self.sessions for c in s.commands]


@cache
def load() -> Captures:
    data = json.loads(CAPTURES.read_text())
    sessions = []
    for s in data["sessions"]:
        commands: list[Command] = []
        session = Session(
            name=s["name"],
            client=s["client"],
            login=tuple((r["from"], bytes.fromhex(r["hex"])) for r in s["login"]),
            commands=(),
        )
        for c in s["commands"]:
            parts = tuple(
                Part(bytes.fromhex(p["client"]), bytes.fromhex(p["server"])) for p in c["parts"]
            )
            commands.append(Command(session, c["step"], c["command"], parts))
        object.__setattr__(session, "commands", tuple(commands))
        sessions.append(session)
    return Captures(
        server_version=data["server_version"],
        user=data["user"].encode(),
        password=data["password"].encode(),
        sessions=tuple(sessions),
    )


CAPTURED = load()
