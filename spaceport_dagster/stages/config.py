"""Typed stage configs: dataclasses built from plain dicts, with named presets and strict keys."""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any, Literal, TypeVar

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


@functools.cache
def _literal_fields(cls: type) -> dict[str, tuple[Any, ...]]:
    hints = typing.get_type_hints(cls)
    return {f.name: typing.get_args(hints[f.name]) for f in dataclasses.fields(cls)
            if typing.get_origin(hints[f.name]) is Literal}


def check_choices(config: Any) -> None:
    """Refuse a value outside its field's `Literal[...]` choices (dataclasses do not check annotations), naming
    the field, the choices and the value: call it in `__post_init__`."""
    for name, choices in _literal_fields(type(config)).items():
        value = getattr(config, name)
        if value not in choices:
            words = [repr(c) for c in choices]
            allowed = f"{', '.join(words[:-1])} or {words[-1]}" if len(words) > 1 else words[0]
            raise ValueError(f"{name} must be {allowed}, not {value!r}")


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
