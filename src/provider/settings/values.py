"""Reading one config key's value: defaults, converters and the error naming the key. Sans-I/O.

Shared by the server and client settings: a key that is absent or blank takes its default;
a value a converter refuses raises `ConfigError(key, value, allowed)`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from ..errors import ConfigError

T = TypeVar("T")


def stripped(config: Mapping[str, str], key: str, default: str) -> str:
    """The value of `key` without surrounding blanks; `default` when absent or blank."""
    value = config.get(key)
    return default if value is None or value.strip() == "" else value.strip()


def parse(
    config: Mapping[str, str], key: str, default: T, convert: Callable[[str], T], allowed: str
) -> T:
    """`convert` of the value of `key`; `default` when absent or blank.

    Raises `ConfigError(key, value, allowed)` when `convert` raises ValueError or TypeError.
    """
    raw = config.get(key)
    if raw is None or raw.strip() == "":
        return default
    try:
        return convert(raw.strip())
    except (ValueError, TypeError):
        raise ConfigError(key, raw, allowed) from None


def explicitly_on(config: Mapping[str, str], key: str) -> bool:
    """Is `key` set, to something other than 0 (off)?"""
    raw = (config.get(key) or "").strip()
    try:
        return bool(raw) and float(raw) != 0
    except ValueError:
        return False  # the key's own parse reports it


def boolean(text: str) -> bool:
    """true/1/yes/on or false/0/no/off (any case); ValueError otherwise."""
    lowered = text.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError(text)


def int_range(low: int, high: int) -> Callable[[str], int]:
    """A converter to an int in [low, high] (ValueError outside)."""

    def convert(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(text)
        return value

    return convert


def float_range(low: float, high: float) -> Callable[[str], float]:
    """A converter to a float in [low, high] (ValueError outside)."""

    def convert(text: str) -> float:
        value = float(text)
        if not low <= value <= high:
            raise ValueError(text)
        return value

    return convert


def choice(*options: str) -> Callable[[str], str]:
    """A converter to one of `options` (lower case; the value is matched in any case)."""

    def convert(text: str) -> str:
        lowered = text.lower()
        if lowered not in options:
            raise ValueError(text)
        return lowered

    return convert
