"""Reading the config file: YAML with plain scalars, and typed values under dotted keys.

The low-level half of ``proxyd.config``: every reader here reports a problem as one
ConfigError naming the file, the dotted key (``pool.max_size``, ``users[0].password``) and
the reason. ``proxyd.config`` says which keys exist and what they mean; this module knows
only how a value of each kind is read and checked.
"""

from __future__ import annotations

import difflib
import math
import os
import re
from collections.abc import Callable, Hashable, Iterable
from typing import Any, TypeVar

import yaml


class ConfigError(Exception):
    """A configuration problem, rendered as ``path: key: reason`` on one line.

    ``key`` is empty for problems with the file as a whole (missing, unreadable, empty);
    for YAML syntax errors it is ``line N``.
    """

    def __init__(self, path: str, key: str, reason: str) -> None:
        self.path = path
        self.key = key
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        text = (
            f"{self.path}: {self.key}: {self.reason}" if self.key else f"{self.path}: {self.reason}"
        )
        # One line, whatever a library put into the reason.
        return " ".join(text.splitlines())


def describe(value: object) -> str:
    """What a value is, for a reason: ``integer 3``, ``string 'x'``, ``a list``."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


# --- durations ---------------------------------------------------------------------------

_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_DURATION_PART = re.compile(rf"({_NUMBER})(ms|h|m|s)")
_DURATION = re.compile(rf"(?:{_NUMBER}(?:ms|h|m|s))+")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_HINT = "expected a duration such as 500ms, 30s, 5m, 1h, 2h30m or a number of seconds"


def parse_duration(value: object) -> float:
    """Return seconds for ``500ms``, ``30s``, ``5m``, ``1h``, ``2h30m``, ``1.5`` or ``10``.

    Raises ValueError with a reason for anything else, including negative values.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{_DURATION_HINT}, got {describe(value)}")
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(_NUMBER, text):
            seconds = float(text)
        elif _DURATION.fullmatch(text):
            seconds = sum(
                float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(text)
            )
        else:
            raise ValueError(f"{_DURATION_HINT}, got {value!r}")
    else:
        seconds = float(value)
    if not math.isfinite(seconds):
        raise ValueError(f"{_DURATION_HINT}, got {value!r}")
    if seconds < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    return seconds


# --- YAML ----------------------------------------------------------------------------------

_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 scalars and no duplicate keys.

    PyYAML implements YAML 1.1, where ``off``, ``no`` and ``on`` are booleans, ``1:30`` is
    the integer 90, ``0123`` is octal and ``2024-01-01`` is a date: a password ``no`` would
    arrive as False. Here only true/false are booleans and numbers are plain decimals;
    everything else stays the string the user wrote.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            # PyYAML silently keeps the last of two equal keys, which hides a second
            # `pool:` section or a pasted-over password. Merge keys (<<) may override.
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                if key_node.value in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key_node.value!r}", key_node.start_mark
                    )
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL, _INT, _FLOAT, _TIMESTAMP)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(_INT, re.compile(r"^[-+]?[0-9]+$"), list("-+0123456789"))
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+|[0-9]+(?=[eE]))(?:[eE][-+]?[0-9]+)?$"),
    list("-+.0123456789"),
)


def _construct_decimal_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    # SafeConstructor would read a leading zero as octal.
    assert isinstance(node, yaml.ScalarNode)
    return int(node.value, 10)


_Loader.add_constructor(_INT, _construct_decimal_int)

_UNQUOTED_IPV6 = re.compile(r"\[[0-9A-Fa-f:.%]*\]:[0-9]")


def _yaml_error(path: str, text: str, error: yaml.YAMLError) -> ConfigError:
    # The problem/mark fields only: str(error) quotes the offending source line, which
    # may be a password.
    if not isinstance(error, yaml.MarkedYAMLError) or error.problem_mark is None:
        return ConfigError(path, "", "invalid YAML")
    mark = error.problem_mark
    reason = "; ".join(filter(None, [error.context, error.problem]))
    reason = f"{reason} (column {mark.column + 1})"
    lines = text.splitlines()
    if mark.line < len(lines) and _UNQUOTED_IPV6.search(lines[mark.line]):
        reason += "; quote IPv6 addresses, e.g. '[::1]:6033'"
    return ConfigError(path, f"line {mark.line + 1}", reason)


def read_yaml(path: str) -> object:
    """The file's data, or a ConfigError naming the file and what is wrong with it."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(path, "", f"cannot read: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(path, "", f"not UTF-8 text (byte {e.start})") from None
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        raise _yaml_error(path, text, e) from None


# --- typed values under dotted keys ----------------------------------------------------------

T = TypeVar("T")
_MISSING: Any = object()


class Section:
    """One mapping of the config: checks its keys and converts values under dotted names."""

    def __init__(self, data: object, key: str, path: str, allowed: Iterable[str]) -> None:
        self.key = key
        self.path = path
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(path, key, f"expected a mapping, got {describe(data)}")
        self.data: dict[object, object] = data
        allowed = tuple(allowed)
        for name in data:
            if name not in allowed:
                reason = "unknown key"
                close = difflib.get_close_matches(str(name), allowed, n=1)
                if close:
                    reason += f" (did you mean {close[0]!r}?)"
                raise ConfigError(path, self.key_of(str(name)), reason)

    def key_of(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def error(self, name: str, reason: str) -> ConfigError:
        return ConfigError(self.path, self.key_of(name), reason)

    def has(self, name: str) -> bool:
        return name in self.data

    def get(self, name: str, convert: Callable[[object], T], default: T = _MISSING) -> T:
        if name not in self.data:
            if default is _MISSING:
                raise self.error(name, "missing")
            return default
        value = self.data[name]
        if value is None:
            raise self.error(name, "no value given")
        try:
            return convert(value)
        except ValueError as e:
            raise self.error(name, str(e)) from None

    def section(self, name: str, allowed: Iterable[str]) -> Section:
        return Section(self.data.get(name), self.key_of(name), self.path, allowed)


def integer(minimum: int) -> Callable[[object], int]:
    def convert(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"expected an integer, got {describe(value)}")
        if value < minimum:
            raise ValueError(f"must be at least {minimum}, got {value}")
        return value

    return convert


def positive_duration(value: object) -> float:
    seconds = parse_duration(value)
    if seconds == 0:
        raise ValueError("must be greater than zero")
    return seconds


def duration_or(word: str, *, zero_means_word: bool) -> Callable[[object], float | None]:
    def convert(value: object) -> float | None:
        # False: `off` as read by a plain YAML 1.1 loader (parse_config callers).
        if (isinstance(value, str) and value.strip().lower() == word) or (
            word == "off" and value is False
        ):
            return None
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise ValueError(
                f"expected {word!r} or a duration such as 30s, 5m or 1h, got {describe(value)}"
            ) from None
        if seconds == 0:
            if zero_means_word:
                return None
            raise ValueError(f"must be greater than zero (or {word!r})")
        return seconds

    return convert


def string(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {describe(value)}")
    if not value:
        raise ValueError("must not be empty")
    return value


def boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {describe(value)}")
    return value


def _secret(value: object) -> str:
    # Never echo the value: a wrongly typed password is still a password.
    if not isinstance(value, str):
        kind = describe(value).split()[0]
        raise ValueError(f"expected a string, got {kind} (quote it in YAML)")
    return value


def choice(options: tuple[str, ...]) -> Callable[[object], str]:
    def convert(value: object) -> str:
        if isinstance(value, str) and value.lower() in options:
            return value.lower()
        raise ValueError(f"expected one of {', '.join(options)}, got {describe(value)}")

    return convert


def resolve_secret(section: Section, base: str, config_dir: str) -> str | None:
    """Resolve ``base``, ``base_env`` or ``base_file``; None if none is given."""
    names = (base, f"{base}_env", f"{base}_file")
    given = [name for name in names if section.has(name)]
    if len(given) > 1:
        raise section.error(
            given[1], f"conflicts with {given[0]}: set only one of {', '.join(names)}"
        )
    if not given:
        return None
    name = given[0]
    if name == base:
        return section.get(name, _secret)
    if name.endswith("_env"):
        variable = section.get(name, string)
        secret = os.environ.get(variable)
        if secret is None:
            raise section.error(name, f"environment variable {variable} is not set")
        if not secret:
            raise section.error(name, f"environment variable {variable} is empty")
        return secret
    secret_path = os.path.join(config_dir, os.path.expanduser(section.get(name, string)))
    try:
        with open(secret_path, encoding="utf-8") as f:
            secret = f.read().rstrip("\r\n")
    except OSError as e:
        raise section.error(name, f"cannot read {secret_path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise section.error(name, f"{secret_path} is not UTF-8 text") from None
    if not secret:
        raise section.error(name, f"{secret_path} is empty")
    return secret


def required_secret(section: Section, base: str, config_dir: str) -> str:
    secret = resolve_secret(section, base, config_dir)
    if secret is None:
        raise section.error(base, f"missing (set one of {base}, {base}_env or {base}_file)")
    return secret


_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB|K|M|G)?\s*$", re.I)
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1024**2,
    "mib": 1024**2,
    "mb": 1000**2,
    "g": 1024**3,
    "gib": 1024**3,
    "gb": 1000**3,
}


def size(value: object) -> int:
    """A number of bytes, or a string with a unit: ``512KiB``, ``1MiB``, ``2M`` (binary),
    ``1MB`` (decimal)."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size, got {describe(value)}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"must not be negative, got {value}")
        return value
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match:
            return int(match.group(1)) * _SIZE_UNITS[(match.group(2) or "").lower()]
    raise ValueError(f"expected a size such as 1048576, 512KiB or 1MiB, got {describe(value)}")
