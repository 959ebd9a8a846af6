"""What YAML 1.1 did to a value that was meant as text, said in the user's words.

PyYAML (and so Snakemake's config loading) reads ``14:00`` as the base-60
number 840, ``yes`` as true and ``2025-05-12`` as a date. A schema check then
reports ``840 is not of type 'string'``, which names neither the cause nor
the fix. :func:`misread` finds such a value where a schema wants text and
says how to write it: ``refresh_after: write times in quotes, '14:00'``.

It is asked only after a schema check failed, so a valid file costs nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Any

# Keys holding times of day (HH:MM) and durations (6h), in meta.yml and the config.
TIME_KEYS = frozenset({"refresh_after", "day_starts_at"})
DURATION_KEYS = frozenset(
    {"marker_ttl", "lock_timeout", "lease_ttl", "wait", "controller_timeout", "report_since"}
)
# YAML 1.1's base-60 numbers (int and float): 14:00, 1:30:00, 1:30.5
_SEXAGESIMAL = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")
_JSON_TYPES = {bool: "boolean", int: "integer", float: "number"}


def _types(spec: Mapping[str, Any]) -> set[str]:
    kind = spec.get("type")
    if kind is None and "enum" in spec:
        return {"string"} if any(isinstance(v, str) for v in spec["enum"]) else set()
    return set(kind) if isinstance(kind, list) else {kind} if kind else set()


def _misread_as(value: object) -> str | None:
    """What YAML made of text, or None if ``value`` is text (or null)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, date):
        return f"the date {value.isoformat()}"
    return None


def _as_time(value: object, written: str | None) -> str | None:
    """The HH:MM the user most likely wrote: from the text if known, else from the
    base-60 number (840 is 14:00)."""
    if written and _SEXAGESIMAL.match(written.strip()):
        parts = written.strip().split(":")
        if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
            return f"{int(parts[0]):02d}:{int(parts[1]):02d}"
        return written.strip()
    if isinstance(value, int) and not isinstance(value, bool) and 60 <= value < 24 * 60:
        return f"{value // 60:02d}:{value % 60:02d}"
    return None


def hint(key: str, value: object, written: str | None = None) -> str | None:
    """How to write ``value`` of ``key`` so YAML keeps it as text; None if YAML did not
    change it (a plain number where a duration belongs is the schema's to report).

    ``written`` is the value as it stands in the file, when the caller has it."""
    name = key.rsplit(".", 1)[-1]
    became = _misread_as(value)
    if became is None:
        return None
    if name in TIME_KEYS:
        shown = _as_time(value, written) or "HH:MM"
        return f"{key}: write times in quotes, '{shown}'"
    if written is None:
        if name in DURATION_KEYS:
            return None
        return f"{key}: YAML read this as {became}: write it in quotes"
    if name in DURATION_KEYS:
        if not _SEXAGESIMAL.match(written.strip()):
            return None  # a plain number: not a misreading, the schema says what is wrong
        return f"{key}: YAML reads {written} as {became}: write a duration such as 6h, 30m or 90s"
    return f"{key}: YAML reads {written} as {became}: write it in quotes, '{written}'"


def misread(
    data: Any, schema: Mapping[str, Any], written: Any = None, path: str = ""
) -> str | None:
    """The first value of ``data`` that YAML turned from text into something the schema
    does not allow there, explained (``refresh_after: write times in quotes, '14:00'``).

    ``written`` is the same document read with ``yaml.BaseLoader`` (every scalar as
    its text), when the caller has the file; the config from Snakemake comes without.
    """
    if isinstance(data, Mapping):
        props = schema.get("properties") or {}
        for key, value in data.items():
            spec = props.get(key)
            if not isinstance(spec, Mapping):
                continue
            text = written.get(key) if isinstance(written, Mapping) else None
            found = misread(value, spec, text, f"{path}.{key}" if path else str(key))
            if found:
                return found
        return None
    allowed = _types(schema)
    if isinstance(data, list):
        if "array" not in allowed or not isinstance(schema.get("items"), Mapping):
            return None
        texts = written if isinstance(written, list) else []
        for i, item in enumerate(data):
            text = texts[i] if i < len(texts) else None
            found = misread(item, schema["items"], text, path)
            if found:
                return found
        return None
    if isinstance(data, str) or data is None:
        return None
    kind = _JSON_TYPES.get(type(data))
    if kind in allowed or (kind == "integer" and "number" in allowed):
        return None
    if "string" not in allowed and path.rsplit(".", 1)[-1] not in TIME_KEYS:
        return None  # text was never meant here: the schema says what is
    return hint(path, data, written if isinstance(written, str) else None)
