"""Work already done, kept in one JSON file, each result with the stamp it holds for.

Used where redoing the work costs far more than reading one file: parsing a
thousand ``meta.yml`` files on every run (recipes.MetaCache), or one GET per
marker on S3 for ``markers list`` (markers.list_markers). A result is used
only while its stamp (a file's ``stat``, an object's ETag, size and time)
is the one it was worked out for, so a stale entry can never be used.
Nothing is written until :meth:`JsonCache.save`; an unreadable or foreign
file is an empty cache, and writing it is atomic and best effort.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lead_recovery import atomic


class JsonCache:
    """Results by name, each valid only while its stamp is unchanged."""

    def __init__(self, path: str | Path, key: str) -> None:
        """``key`` names what the results depend on besides their stamps (a format
        version, a schema's hash): a file written for another key is ignored."""
        self.path = Path(path)
        self._key = key
        self._entries: dict[str, Any] = {}
        self._dirty = False
        try:
            with open(self.path, encoding="utf-8") as handle:
                data = json.load(handle)
            if isinstance(data, dict) and data.get("key") == self._key:
                self._entries = dict(data.get("entries") or {})
        except (OSError, ValueError, RecursionError):
            pass

    def get(self, name: str, stamp: list[Any]) -> Any | None:
        """The result kept for ``name`` if it was worked out for ``stamp``, else ``None``."""
        entry = self._entries.get(name)
        if isinstance(entry, dict) and entry.get("stamp") == stamp:
            return entry.get("value")
        return None

    def put(self, name: str, stamp: list[Any], value: Any) -> None:
        self._entries[name] = {"stamp": stamp, "value": value}
        self._dirty = True

    def forget(self, gone: Callable[[str], bool]) -> None:
        """Drop the entries whose names ``gone`` says no longer exist."""
        for name in [n for n in self._entries if gone(n)]:
            del self._entries[name]
            self._dirty = True

    def save(self) -> None:
        """Write the cache if anything changed (atomically; best effort)."""
        if not self._dirty:
            return
        with contextlib.suppress(OSError):
            data = {"key": self._key, "entries": self._entries}
            atomic.write_bytes(self.path, json.dumps(data).encode("utf-8"))
            self._dirty = False
