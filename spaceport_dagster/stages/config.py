"""Typed stage configs: dataclasses built from plain dicts, with named presets and strict keys."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A stage config has an unknown key, a bad value or an unknown preset."""


def from_dict(cls: type[T], values: dict[str, Any] | None) -> T:
    """Build dataclass `cls` from `values`, refusing keys it does not have."""
    values = dict(values or {})
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{cls.__name__} has no option(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{cls.__name__}: {exc}") from exc


def with_preset(cls: type[T], presets: dict[str, dict[str, Any]], preset: str, overrides: dict[str, Any] | None = None) -> T:
    """`cls` with preset `preset` applied, then `overrides` on top."""
    if preset not in presets:
        raise ConfigError(f"unknown preset {preset!r} for {cls.__name__}; choose one of {', '.join(presets)}")
    return from_dict(cls, {**presets[preset], **(overrides or {})})


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
