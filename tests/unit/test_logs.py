"""proxyd.logs: text, journald and JSON lines."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from proxyd import logs


def record(
    level: int = logging.INFO, msg: str = "backend %s up", **extra: object
) -> logging.LogRecord:
    rec = logging.LogRecord("proxyd.pool", level, __file__, 1, msg, ("db1",), None)
    rec.__dict__.update(extra)
    return rec


def test_text_format() -> None:
    line = logs.TextFormatter().format(record())
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} INFO proxyd\.pool: backend db1 up", line
    )


def test_text_format_appends_extras() -> None:
    line = logs.TextFormatter().format(record(user="app", reason="server gone"))
    assert line.endswith('backend db1 up user=app reason="server gone"')


def test_journal_format_prefixes_every_line() -> None:
    formatter = logs.TextFormatter(journal=True)
    assert formatter.format(record(logging.WARNING)) == "<4>WARNING proxyd.pool: backend db1 up"
    assert formatter.format(record(logging.DEBUG)).startswith("<7>DEBUG ")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        rec = record(logging.ERROR)
        rec.exc_info = sys.exc_info()
    lines = formatter.format(rec).splitlines()
    assert len(lines) > 2
    assert all(line.startswith("<3>") for line in lines)


def test_json_format() -> None:
    entry = json.loads(logs.JsonFormatter().format(record(user="app", level_hint=3)))
    assert entry["level"] == "info"
    assert entry["logger"] == "proxyd.pool"
    assert entry["msg"] == "backend db1 up"
    assert entry["user"] == "app"
    assert entry["level_hint"] == 3
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", entry["ts"])


def test_journal_stream_must_match_stderr(tmp_path: Path) -> None:
    with open(tmp_path / "stream", "w") as stream:
        status = os.fstat(stream.fileno())
        matching = {"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}
        assert logs.journal_stream(matching, stream)
        assert not logs.journal_stream({"JOURNAL_STREAM": f"{status.st_dev}:1"}, stream)
        assert not logs.journal_stream({}, stream)
        assert not logs.journal_stream({"JOURNAL_STREAM": "garbage"}, stream)


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.level, list(root.handlers), logging.getLogger("proxyd").level)
    yield
    root.setLevel(saved[0])
    root.handlers[:] = saved[1]
    logging.getLogger("proxyd").setLevel(saved[2])
    logs._handler = None
    logging.captureWarnings(False)


@pytest.mark.usefixtures("restore_logging")
def test_setup_and_reconfigure(capsys: pytest.CaptureFixture[str]) -> None:
    logs.setup_logging("info", "text")
    logging.getLogger("proxyd.pool").debug("hidden")
    logging.getLogger("proxyd.pool").info("shown")
    logging.getLogger("asyncio").info("not ours, below warning")
    logs.reconfigure("debug", "json")
    logging.getLogger("proxyd.pool").debug("now shown")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith("INFO proxyd.pool: shown")
    assert json.loads(lines[1])["msg"] == "now shown"
    with pytest.raises(ValueError):
        logs.setup_logging("loud", "text")
