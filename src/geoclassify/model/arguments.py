"""Model arguments: Esri's name/value pairs that tune inference (``batch_size``, ``test_time_augmentation``).

Each backend declares what it accepts; values arrive as strings from the CLI or from Esri-style clients
(which send every value as a string), so parsing is strict and an error lists what is valid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import ModelArgumentError
from .emd import parse_bool

ArgumentType = Literal["int", "float", "bool", "str"]


@dataclass(frozen=True)
class ArgumentSpec:
    """One model argument as ``inspect`` shows it and ``--argument`` accepts it."""

    name: str
    type: ArgumentType
    default: Any
    description: str
    minimum: float | None = None
    maximum: float | None = None

    def parse(self, value: Any) -> Any:
        parsed = self._convert(value)
        if parsed is None:
            raise ModelArgumentError(f"model argument {self.name}={value!r}: expected {self._expected()}")
        if (self.minimum is not None and parsed < self.minimum) or (self.maximum is not None and parsed > self.maximum):
            raise ModelArgumentError(f"model argument {self.name}={value!r}: expected {self._expected()}")
        return parsed

    def _convert(self, value: Any) -> Any:
        if self.type == "bool":
            return parse_bool(value)
        if self.type == "str":
            return str(value)
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        if self.type == "int":
            return int(number) if number.is_integer() else None
        return number

    def _expected(self) -> str:
        kind = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "text"}[self.type]
        if self.minimum is not None and self.maximum is not None:
            return f"{kind} from {self.minimum:g} to {self.maximum:g}"
        if self.minimum is not None:
            return f"{kind} of at least {self.minimum:g}"
        return kind


def split_assignments(items: Iterable[str]) -> dict[str, str]:
    """Turn ``NAME=VALUE`` strings (the CLI's ``--argument``) into a mapping."""
    result: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ModelArgumentError(f"«model_arguments» {item!r}: expected NAME=VALUE, e.g. batch_size=32")
        result[name.strip()] = value.strip()
    return result


def resolve_arguments(specs: Sequence[ArgumentSpec], given: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults overlaid with what the user gave, each value checked; unknown names are an error."""
    by_name = {spec.name: spec for spec in specs}
    values = {spec.name: spec.default for spec in specs}
    valid = ", ".join(f"{s.name} ({s.type}, default {s.default!r})" for s in specs) or "none"
    for name, value in (given or {}).items():
        spec = by_name.get(name)
        if spec is None:
            raise ModelArgumentError(f"unknown model argument {name!r}; this model accepts: {valid}")
        try:
            values[name] = spec.parse(value)
        except ModelArgumentError as exc:
            raise ModelArgumentError(f"{exc}; this model accepts: {valid}") from None
    return values
