"""Logging setup: one stderr handler, text or JSON lines, journald-aware.

The handler sits on the root logger so that asyncio's and Python's own messages (an
exception nobody retrieved, a warning) come out in the same format as proxyd's: a JSON log
stream stays parseable line by line. proxyd's loggers run at the configured level, everyone
else at WARNING or above.

Under systemd (stderr is the journal stream named by JOURNAL_STREAM) text lines carry no
timestamp, since journald adds its own, and start with an sd-daemon ``<N>`` priority prefix
so that ``journalctl -p warning`` works. See sd-daemon(3) and systemd.exec(5), JOURNAL_STREAM.

Extra fields passed as ``log.info("...", extra={"user": "app"})`` are appended as
``user=app`` in text and become keys of the object in JSON.

Nothing here redacts: configuration objects keep passwords out of their reprs, and callers
must not log secrets in messages.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
from typing import Any

__all__ = [
    "JsonFormatter",
    "TextFormatter",
    "journal_stream",
    "reconfigure",
    "setup_logging",
]

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

# Attributes every LogRecord has; anything else on a record came from `extra`.
_RECORD_ATTRIBUTES = frozenset(
    logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__
) | {"message", "asctime"}

_handler: logging.Handler | None = None


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _RECORD_ATTRIBUTES and not key.startswith("_")
    }


def _syslog_priority(levelno: int) -> int:
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


def _text_value(value: object) -> str:
    text = str(value)
    if not text or any(c.isspace() or c in "\"'=" for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


class TextFormatter(logging.Formatter):
    """``2026-11-25 12:00:00.123 INFO proxyd.pool: message key=value``.

    With ``journal=True``: ``<6>INFO proxyd.pool: message``, the prefix repeated on every
    line of a traceback so that journald files all of it under the record's priority.
    """

    def __init__(self, *, journal: bool = False) -> None:
        fmt = "%(levelname)s %(name)s: %(message)s"
        if not journal:
            fmt = "%(asctime)s.%(msecs)03d " + fmt
        super().__init__(fmt, datefmt="%Y-%m-%d %H:%M:%S")
        self.journal = journal

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        extras = _extras(record)
        if extras:
            text += "".join(f" {key}={_text_value(value)}" for key, value in extras.items())
        return text

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        if not self.journal:
            return text
        prefix = f"<{_syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in text.splitlines())


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, then extra fields,
    then ``exc``/``stack`` when present."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.datetime.fromtimestamp(record.created).astimezone()
        entry: dict[str, Any] = {
            "ts": ts.isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _extras(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def journal_stream(environ: dict[str, str] | None = None, stream: Any = None) -> bool:
    """True if ``stream`` (default: stderr) is connected to journald.

    JOURNAL_STREAM alone is not enough: it is inherited by every child of a service,
    including ones whose stderr is a pipe or a terminal, so the device and inode it names
    must match the stream's.
    """
    value = (os.environ if environ is None else environ).get("JOURNAL_STREAM", "")
    device, sep, inode = value.partition(":")
    if not sep or not device.isdigit() or not inode.isdigit():
        return False
    try:
        status = os.fstat((sys.stderr if stream is None else stream).fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return (status.st_dev, status.st_ino) == (int(device), int(inode))


def _formatter(fmt: str) -> logging.Formatter:
    if fmt == "json":
        return JsonFormatter()
    if fmt == "text":
        return TextFormatter(journal=journal_stream())
    raise ValueError(f"unknown log format {fmt!r} (expected text or json)")


def setup_logging(level: str, fmt: str) -> None:
    """Send log records to stderr at ``level`` (debug/info/warning/error) in ``fmt``
    (text/json). Calling it again replaces the previous setup."""
    if level not in LEVELS:
        raise ValueError(f"unknown log level {level!r} (expected {', '.join(LEVELS)})")
    global _handler
    formatter = _formatter(fmt)
    root = logging.getLogger()
    if _handler is None:
        _handler = logging.StreamHandler(sys.stderr)
        root.addHandler(_handler)
    _handler.setFormatter(formatter)
    root.setLevel(max(LEVELS[level], logging.WARNING))
    logging.getLogger("proxyd").setLevel(LEVELS[level])
    logging.captureWarnings(True)


def reconfigure(level: str, fmt: str) -> None:
    """Apply the log section of a reloaded config (setup_logging replaces the old setup)."""
    setup_logging(level, fmt)
