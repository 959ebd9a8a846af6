"""Recipes: discovery, validation and loading of ``recipes/<name>/``.

A recipe is a folder with ``meta.yml``, and either ``redshift.sql`` (its
leads come from the warehouse) or ``leads.csv`` (they come from the file),
plus an optional ``analyzer.py``. Names become parts of paths and marker
file names, so they are checked before anything touches the disk.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lead_recovery.config import RECIPE_SCHEMA, load_yaml, schema_problem
from lead_recovery.errors import LeadRecoveryError
from lead_recovery.jsoncache import JsonCache
from lead_recovery.rundate import parse_duration, parse_hhmm

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
SQL_FILE = "redshift.sql"
LEADS_FILE = "leads.csv"
META_FILE = "meta.yml"
ANALYZER_FILE = "analyzer.py"
WATERMARK_FILE = "watermark.sql"  # a cheap query whose value changes when the source does


def validate_name(name: object) -> str:
    """A recipe name that is safe to use in paths, or a one-line error."""
    text = str(name)
    if "/" in text or "\\" in text or ".." in text:
        raise LeadRecoveryError(f"recipe name '{text}' must not contain '/', '\\' or '..'")
    if not _NAME_RE.match(text):
        raise LeadRecoveryError(
            f"recipe name '{text}' may only use letters, digits, '_', '-' and '.'"
        )
    return text


def discover(recipes_dir: str | Path) -> list[str]:
    """Names of every recipe folder under ``recipes_dir``, sorted."""
    base = Path(recipes_dir)
    if not base.is_dir():
        raise LeadRecoveryError(f"recipes folder not found ({base}/)")
    with os.scandir(base) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith((".", "_")))


def has_sql(recipes_dir: str | Path, name: str) -> bool:
    return os.path.isfile(os.path.join(recipes_dir, name, SQL_FILE))


@dataclass(frozen=True)
class Recipe:
    """One validated recipe folder."""

    name: str
    dir: Path
    output_columns: list[str]
    description: str = ""
    dedupe_on: list[str] = field(default_factory=list)
    marker_ttl: str | None = None
    refresh_after: list[str] | None = None
    extract: str | None = None  # cursor | unload | auto; None: the config's redshift.extract
    expect: dict[str, Any] = field(default_factory=dict)  # extract checks (checks.py)
    # per step (redshift_extract, analyze): cluster resources overriding the config's
    resources: dict[str, dict[str, int]] = field(default_factory=dict)

    @functools.cached_property
    def sql_path(self) -> Path | None:
        path = self.dir / SQL_FILE
        return path if path.is_file() else None

    @functools.cached_property
    def watermark_path(self) -> Path | None:
        path = self.dir / WATERMARK_FILE
        return path if path.is_file() and self.sql_path is not None else None

    @functools.cached_property
    def leads_csv(self) -> Path | None:
        path = self.dir / LEADS_FILE
        return path if path.is_file() else None

    @functools.cached_property
    def analyzer(self) -> Path | None:
        path = self.dir / ANALYZER_FILE
        return path if path.is_file() else None

    @property
    def meta_path(self) -> Path:
        return self.dir / META_FILE

    def sql(self) -> str:
        """The recipe's Redshift SQL, read once; empty or missing SQL is an error."""
        return self._sql_text

    @functools.cached_property
    def _sql_text(self) -> str:
        if self.sql_path is None:
            raise LeadRecoveryError(f"recipe '{self.name}' has no {SQL_FILE} ({self.dir}/)")
        text = self.sql_path.read_text(encoding="utf-8")
        if not text.strip():
            raise LeadRecoveryError(f"recipe '{self.name}' has an empty {SQL_FILE} ({self.dir}/)")
        return text

    @functools.cached_property
    def sql_sha256(self) -> str | None:
        """The SHA-256 of the SQL as read (markers record it); ``None`` without SQL."""
        return sql_sha256(self.sql()) if self.sql_path is not None else None


def names_pattern(names: list[str]) -> str:
    """A regex matching exactly ``names`` (nothing if none), as a trie, not a flat alternation.

    Snakemake matches every requested path against each rule's wildcard
    constraint; a flat ``a|b|c...`` over a thousand recipes is tried name by
    name, a trie (``r(?:0(?:0[01]...``) in one pass over the name.
    """
    trie: dict = {}
    for name in names:
        node = trie
        for char in name:
            node = node.setdefault(char, {})
        node[""] = {}

    def emit(node: dict) -> str:
        branches = [re.escape(c) + emit(sub) for c, sub in sorted(node.items()) if c]
        if not branches:
            return ""
        if "" in node:
            return f"(?:{'|'.join(branches)})?"
        return branches[0] if len(branches) == 1 else f"(?:{'|'.join(branches)})"

    return emit(trie) if names else "(?!)"


def leads_source(recipe: Recipe, skip_redshift: bool) -> str:
    """Where a recipe's leads come from in a run: redshift, recipe_leads_csv or skipped_redshift."""
    if recipe.sql_path is None:
        return "recipe_leads_csv"
    return "skipped_redshift" if skip_redshift else "redshift"


def sql_sha256(text: str) -> str:
    """The identity of a query's text, recorded in markers to detect edits."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@functools.cache
def _recipe_schema() -> dict[str, Any]:
    return load_yaml(RECIPE_SCHEMA, "recipe schema")


def _string_list(value: Any, key: str, where: str) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise LeadRecoveryError(f"{where}: '{key}' must be a list of column names")
    return value


def _parse_meta(name: str, path: Path) -> dict[str, Any]:
    where = f"recipe '{name}' meta.yml ({path})"
    meta = load_yaml(path, f"recipe '{name}' meta.yml")
    if not isinstance(meta, dict):
        raise LeadRecoveryError(f"{where}: must be a mapping of settings")
    if "output_columns" not in meta:
        raise LeadRecoveryError(f"{where}: 'output_columns' is missing")
    problem = schema_problem(meta, _recipe_schema())
    if problem is not None:
        raise LeadRecoveryError(f"recipe '{name}' meta.yml: {problem} ({path})")
    parsed: dict[str, Any] = {
        "output_columns": _string_list(meta["output_columns"], "output_columns", where),
        "description": str(meta.get("description") or ""),
        "dedupe_on": _string_list(meta.get("dedupe_on") or [], "dedupe_on", where),
    }
    if meta.get("extract") is not None:
        parsed["extract"] = meta["extract"]
    if meta.get("expect"):
        parsed["expect"] = dict(meta["expect"])
    if meta.get("resources"):
        parsed["resources"] = {step: dict(v) for step, v in meta["resources"].items()}
    if not parsed["output_columns"]:
        raise LeadRecoveryError(f"{where}: 'output_columns' is empty")
    ttl = meta.get("marker_ttl")
    if ttl is not None:
        parse_duration(ttl, f"{where}: marker_ttl")
        parsed["marker_ttl"] = str(ttl)
    refresh = meta.get("refresh_after")
    if refresh is not None:
        times = refresh if isinstance(refresh, list) else [refresh]
        for t in times:
            parse_hhmm(t, f"{where}: refresh_after")
        parsed["refresh_after"] = [str(t) for t in times]
    return parsed


class MetaCache(JsonCache):
    """``meta.yml`` files already parsed and checked, kept by their ``stat`` in one JSON file.

    A cached run of a thousand recipes would otherwise parse a thousand YAML
    files. An entry is used only while the file has the size, inode and both
    times it was parsed at (the change time cannot be set back by hand), and
    only with the recipe schema it was checked against.
    """

    VERSION = 2

    def __init__(self, path: str | Path) -> None:
        schema = hashlib.sha256(RECIPE_SCHEMA.read_bytes()).hexdigest()
        super().__init__(path, f"{self.VERSION}:{schema}")

    @staticmethod
    def _stamp(info: os.stat_result) -> list[int]:
        return [info.st_size, info.st_ino, info.st_mtime_ns, info.st_ctime_ns]

    def parse(self, name: str, path: Path) -> dict[str, Any]:
        """``_parse_meta(name, path)``, from the cache while the file is unchanged."""
        stamp = self._stamp(os.stat(path))
        cached = self.get(str(path), stamp)
        if isinstance(cached, dict):
            return dict(cached)
        parsed = _parse_meta(name, path)
        self.put(str(path), stamp, parsed)
        return parsed


def load(recipes_dir: str | Path, name: object, meta_cache: MetaCache | None = None) -> Recipe:
    """Validate and load one recipe; every problem is a one-line error naming it."""
    name = validate_name(name)
    folder = Path(recipes_dir) / name
    if not folder.is_dir():
        known = ", ".join(discover(recipes_dir)) or "none"
        raise LeadRecoveryError(
            f"unknown recipe '{name}' (no folder {folder}/; known recipes: {known})"
        )
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        raise LeadRecoveryError(f"recipe '{name}' has no {META_FILE} ({folder}/)")
    parse = meta_cache.parse if meta_cache is not None else _parse_meta
    recipe = Recipe(name=name, dir=folder, **parse(name, meta_path))
    if recipe.sql_path is None and recipe.leads_csv is None:
        raise LeadRecoveryError(
            f"recipe '{name}' has neither {SQL_FILE} nor {LEADS_FILE} ({folder}/)"
        )
    if recipe.sql_path is not None:
        recipe.sql()  # an empty query is caught before anything runs
    return recipe


def runnable(recipes_dir: str | Path, names: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The recipes to run (default: every one) and the named ones that cannot run, with
    why: Snakemake stops at a named recipe it cannot load but reports only one of an
    all-recipe run, so the cron run leaves those out and reports each itself."""
    names = [validate_name(n) for n in dict.fromkeys(names)]
    known = discover(recipes_dir)
    broken = {}
    for name in names:
        try:
            load(recipes_dir, name)
        except LeadRecoveryError as err:
            if name not in known:
                raise  # "unknown recipe ... known: ...": bad input
            broken[name] = str(err)
    return ([n for n in names if n not in broken] if names else known), broken
