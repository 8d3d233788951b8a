"""The one parser of `key=value` overrides (`--config_overrides` of training, `--config-override` and `--compare` of
the benchmark)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


_PYTHON_LITERALS = {"True": True, "False": False, "None": None}
_OPENING, _CLOSING = "[({", "])}"


def parse_value(text: str) -> Any:
    """A JSON literal (number, list, object, `true`/`false`/`null`; also Python's `True`/`False`/`None`), else the
    text itself as a string."""
    text = text.strip()
    if text in _PYTHON_LITERALS:
        return _PYTHON_LITERALS[text]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _split_items(text: str) -> list[str]:
    """Split on commas that are outside brackets and quotes."""
    items, current, depth, quote = [], [], 0, None
    for character in text:
        if quote:
            quote = None if character == quote else quote
        elif character in "\"'":
            quote = character
        elif character in _OPENING:
            depth += 1
        elif character in _CLOSING:
            depth = max(0, depth - 1)
        elif character == "," and depth == 0:
            items.append("".join(current))
            current = []
            continue
        current.append(character)
    items.append("".join(current))
    return [item.strip() for item in items if item.strip()]


def parse_overrides(
    spec: str | Sequence[str] | None, option: str = "overrides", parse_values: bool = True
) -> dict[str, Any]:
    """`key=value` overrides -> `{key: value}`.

    Args:
        spec: None or "" (no overrides); a string `"a=1,b=[1, 2],c=gelu"` (commas inside brackets or quotes do not
            split) or a JSON object `'{"a": 1}'`; or a list of such strings (a repeatable option), applied in order.
        option: the option's name, for error messages.
        parse_values: parse each value with `parse_value` (JSON literal, else string); False keeps the text (for a
            caller with its own typed parsers).

    Raises:
        ValueError: an item without `=` or with an empty key (the message names the option and the item), or a
            `{...}` spec that is not a JSON object.
    """
    if spec is None:
        return {}
    overrides: dict[str, Any] = {}
    for text in [spec] if isinstance(spec, str) else spec:
        text = text.strip()
        if text.startswith("{"):
            try:
                values = json.loads(text)
            except json.JSONDecodeError as error:
                raise ValueError(f"{option}: {text!r} is not a JSON object ({error}).") from error
            if not isinstance(values, dict):
                raise ValueError(f"{option}: {text!r} is not a JSON object.")
            overrides.update(values if parse_values else {key: json.dumps(v) for key, v in values.items()})
            continue
        for item in _split_items(text):
            key, separator, value = item.partition("=")
            if not separator or not key.strip():
                raise ValueError(f"{option}: {item!r} is not of the form key=value.")
            overrides[key.strip()] = parse_value(value) if parse_values else value.strip()
    return overrides


__all__ = ["parse_overrides", "parse_value"]
