"""Recipes: discovery, validation and loading of ``recipes/<name>/``.

A recipe is a folder with ``meta.yml``, and either ``redshift.sql`` (its
leads come from the warehouse) or ``leads.csv`` (they come from the file),
plus an optional ``analyzer.py``. Names become parts of paths and marker
file names, so they are checked before anything touches the disk.

:func:`check_all` is the recipe check of ``make lint`` and of
``lead-recovery doctor``: every recipe loads, its SQL parses as Redshift SQL,
its analyzer imports. Each finding is a :class:`Problem`, one line that names
the file, as a compiler would: ``recipes/x/redshift.sql:5:4: syntax error near 'FORM'``.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
import sys
import traceback
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lead_recovery import yamlhints
from lead_recovery.config import RECIPE_SCHEMA, load_yaml, schema_problem
from lead_recovery.errors import LeadRecoveryError
from lead_recovery.jsoncache import JsonCache
from lead_recovery.rundate import parse_duration, parse_hhmm

if TYPE_CHECKING:
    from sqlglot import exp

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# The one recipe-name rule, in the words config/README.md uses: the messages say it too.
NAME_RULE = "letters, digits, '_', '-' and '.', starting with a letter or digit"
SQL_FILE = "redshift.sql"
LEADS_FILE = "leads.csv"
META_FILE = "meta.yml"
ANALYZER_FILE = "analyzer.py"
WATERMARK_FILE = "watermark.sql"  # a cheap query whose value changes when the source does
PARAMETERS = ("run_date",)  # the only :name a recipe's SQL can use: bound by the workflow


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a recipe folder, printed as ``path[:line[:column]]: message``.

    The form compilers use, so an editor or a terminal can jump to the place.
    """

    recipe: str
    path: Path
    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        where = str(self.path)
        if self.line is not None:
            where += f":{self.line}" + (f":{self.column}" if self.column is not None else "")
        return f"{where}: {self.message}"


class RecipeError(LeadRecoveryError):
    """A broken recipe: ``str()`` is the line a run prints (naming the recipe),
    ``problem`` the same fault as lint prints it (naming the file)."""

    def __init__(self, message: str, problem: Problem) -> None:
        super().__init__(message)
        self.problem = problem


def validate_name(name: object) -> str:
    """A recipe name that is safe in paths and marker file names, or a one-line error.

    The whole rule is :data:`NAME_RULE` (no ``..`` either); folders whose names
    start with ``.`` or ``_`` are not recipes at all (:func:`discover`).
    """
    text = str(name)
    if "/" in text or "\\" in text or ".." in text:
        raise LeadRecoveryError(
            f"recipe name '{text}' must not contain '/', '\\' or '..' (a name is {NAME_RULE})"
        )
    if not _NAME_RE.match(text):
        raise LeadRecoveryError(f"recipe name '{text}' is not valid: a name is {NAME_RULE}")
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
            raise RecipeError(
                f"recipe '{self.name}' has an empty {SQL_FILE} ({self.dir}/)",
                Problem(self.name, self.sql_path, "empty: a recipe's query is one SELECT"),
            )
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


def _meta_error(name: str, path: Path, detail: str) -> RecipeError:
    return RecipeError(f"recipe '{name}' meta.yml: {detail} ({path})", Problem(name, path, detail))


def _string_list(value: Any, key: str, name: str, path: Path) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _meta_error(name, path, f"'{key}' must be a list of column names")
    return value


def _key_problems(meta: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Every unknown key (with the nearest valid one) and every missing required key.

    All of them, not the first: ``ouput_columns`` is both a typo and the reason
    ``output_columns`` is missing, and saying only the second hides the cause.
    """
    known = list(schema.get("properties") or {})
    missing = [k for k in schema.get("required") or [] if k not in meta]
    found = []
    for key in meta:
        if key not in known:
            # a missing required key is the likeliest thing a typo meant
            near = get_close_matches(str(key), missing, n=1) or get_close_matches(
                str(key), known, n=1, cutoff=0.0
            )
            found.append(f"{key}: unknown key" + (f" (did you mean '{near[0]}'?)" if near else ""))
    return found + [f"'{key}' is missing" for key in missing]


def _as_written(path: Path) -> Any:
    """``meta.yml`` with every value as the text in the file (yaml.BaseLoader), to say
    what YAML made of it; None if it cannot be read again."""
    import yaml

    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None


def _parse_meta(name: str, path: Path) -> dict[str, Any]:
    what = f"recipe '{name}' meta.yml"
    try:
        meta = load_yaml(path, what)
    except LeadRecoveryError as err:  # "... is not valid YAML at line N: ... (path)"
        detail = str(err).removeprefix(f"{what} is ").removesuffix(f" ({path})")
        raise RecipeError(str(err), Problem(name, path, detail)) from None
    if not isinstance(meta, dict):
        raise _meta_error(name, path, "must be a mapping of settings (key: value lines)")
    schema = _recipe_schema()
    keys = _key_problems(meta, schema)
    if keys:
        raise _meta_error(name, path, "; ".join(keys))
    problem = schema_problem(meta, schema)
    if problem is not None:
        raise _meta_error(name, path, yamlhints.misread(meta, schema, _as_written(path)) or problem)
    parsed: dict[str, Any] = {
        "output_columns": _string_list(meta["output_columns"], "output_columns", name, path),
        "description": str(meta.get("description") or ""),
        "dedupe_on": _string_list(meta.get("dedupe_on") or [], "dedupe_on", name, path),
    }
    if meta.get("extract") is not None:
        parsed["extract"] = meta["extract"]
    if meta.get("expect"):
        parsed["expect"] = dict(meta["expect"])
    if meta.get("resources"):
        parsed["resources"] = {step: dict(v) for step, v in meta["resources"].items()}
    if not parsed["output_columns"]:
        raise _meta_error(name, path, "'output_columns' is empty")
    try:
        ttl = meta.get("marker_ttl")
        if ttl is not None:
            parse_duration(ttl, "marker_ttl")
            parsed["marker_ttl"] = str(ttl)
        refresh = meta.get("refresh_after")
        if refresh is not None:
            times = refresh if isinstance(refresh, list) else [refresh]
            for t in times:
                parse_hhmm(t, "refresh_after")
            parsed["refresh_after"] = [str(t) for t in times]
    except LeadRecoveryError as err:
        raise _meta_error(name, path, str(err)) from None
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
        raise RecipeError(
            f"recipe '{name}' has no {META_FILE} ({folder}/)",
            Problem(name, meta_path, "missing: every recipe needs one (output_columns at least)"),
        )
    parse = meta_cache.parse if meta_cache is not None else _parse_meta
    recipe = Recipe(name=name, dir=folder, **parse(name, meta_path))
    if recipe.sql_path is None and recipe.leads_csv is None:
        raise RecipeError(
            f"recipe '{name}' has neither {SQL_FILE} nor {LEADS_FILE} ({folder}/)",
            Problem(name, folder, f"has neither {SQL_FILE} nor {LEADS_FILE}"),
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


def _position(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of a character offset."""
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _syntax_problem(err: Exception, text: str, recipe: str, path: Path) -> Problem:
    """sqlglot's error as ``syntax error near 'FORM'`` at the token's first character."""
    from sqlglot.errors import ParseError

    if isinstance(err, ParseError) and err.errors:
        first = err.errors[0]
        near = str(first.get("highlight") or "").strip()
        description = str(first.get("description") or "")
        expected = description.removeprefix("Expecting ")
        detail = f": '{expected}' expected" if expected != description else ""
        line, column = first.get("line"), first.get("col")
        if isinstance(column, int):  # sqlglot points at the token's last character
            column = max(1, column - len(near) + 1)
        return Problem(recipe, path, f"syntax error near '{near}'{detail}", line, column)
    cause = str(err.__cause__ or "")
    unclosed = re.match(r"Missing (\S+) from \d+:(\d+)", cause)
    if unclosed:
        quote = unclosed.group(1)
        what = "string" if quote == "'" else f"{quote}quoted{quote} name"
        line, column = _position(text, int(unclosed.group(2)))
        return Problem(recipe, path, f"syntax error: unclosed {what}", line, column)
    return Problem(recipe, path, "syntax error: the SQL cannot be read (an unclosed /* comment?)")


def parse_sql(
    text: str,
    path: str | Path,
    recipe: str = "",
    parameters: Collection[str] = PARAMETERS,
) -> exp.Query:
    """``text`` parsed as one Redshift query, else a :class:`RecipeError` that names
    ``path``, the line and the column: ``recipes/x/redshift.sql:5:4: syntax error near 'FORM'``.

    The one check that a recipe's SQL is Redshift SQL: ``make lint`` asks it of every
    recipe, and the demo warehouse before transpiling, so a typo reads as the user's
    typo in the user's file, not as something DuckDB cannot do. A run on Redshift
    sends the file as written: Redshift is the judge there, not sqlglot.
    ``:run_date`` (and only the names in ``parameters``) may appear as ``:name``.
    """
    import logging

    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import SqlglotError

    path = Path(path)

    def fail(problem: Problem) -> RecipeError:
        where = f"recipe '{recipe}': " if recipe else ""
        return RecipeError(f"{where}{problem}", problem)

    logging.getLogger("sqlglot").setLevel(logging.ERROR)  # "falling back to a Command"
    try:
        statements = [s for s in sqlglot.parse(text, read="redshift") if s is not None]
    except SqlglotError as err:
        raise fail(_syntax_problem(err, text, recipe, path)) from None
    if len(statements) != 1:
        found = "no statement" if not statements else f"{len(statements)} statements"
        raise fail(Problem(recipe, path, f"holds {found}; {path.name} must be one SELECT"))
    statement = statements[0]
    if not isinstance(statement, exp.Query):
        head = str(statement.this) if isinstance(statement, exp.Command) else statement.key
        head = head.upper()
        found = re.search(rf"\b{re.escape(head)}\b", text, re.IGNORECASE)
        line, column = _position(text, found.start()) if found else (None, None)
        message = f"'{head} ...' is not a SELECT query ({path.name} must be one SELECT)"
        raise fail(Problem(recipe, path, message, line, column))
    for placeholder in statement.find_all(exp.Placeholder):
        name = str(placeholder.name or "")
        if name and name not in parameters:
            found = re.search(rf"(?<![:\w]):{re.escape(name)}\b", text)
            line, column = _position(text, found.start()) if found else (None, None)
            bound = ", ".join(f":{p}" for p in parameters)
            raise fail(
                Problem(
                    recipe,
                    path,
                    f"unknown parameter ':{name}' (only {bound} is bound)",
                    line,
                    column,
                )
            )
    return statement


def _analyzer_problem(name: str, path: Path) -> Problem | None:
    """Whether ``analyzer.py`` imports and defines ``analyze``, as a run imports it
    (analysis.py: by file location, not on ``sys.path``)."""
    spec = importlib.util.spec_from_file_location(f"lead_recovery_recipe_{name}", path)
    if spec is None or spec.loader is None:
        return Problem(name, path, "cannot be imported")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except BaseException as err:  # a recipe's own code: whatever it raised is its problem
        if isinstance(err, KeyboardInterrupt):
            raise
        where = os.path.realpath(path)
        lines = [
            f.lineno
            for f in traceback.extract_tb(err.__traceback__)
            if os.path.realpath(f.filename) == where
        ]
        if isinstance(err, SyntaxError) and os.path.realpath(err.filename or "") == where:
            lines.append(err.lineno)
        message = err.msg if isinstance(err, SyntaxError) else str(err)
        message = message.splitlines()[0] if message else ""
        return Problem(
            name,
            path,
            f"cannot be imported: {type(err).__name__}" + (f": {message}" if message else ""),
            lines[-1] if lines else None,
        )
    if not callable(getattr(module, "analyze", None)):
        return Problem(name, path, "must define analyze(leads, run_date)")
    return None


def check(recipes_dir: str | Path, name: str) -> list[Problem]:
    """Everything wrong with one recipe folder, without running it: it loads, its
    ``redshift.sql`` and ``watermark.sql`` parse as Redshift SQL, its ``analyzer.py``
    imports. The SQL and the analyzer are checked even when ``meta.yml`` is broken,
    so one pass shows every fault."""
    folder = Path(recipes_dir) / name
    problems: list[Problem] = []
    try:
        load(recipes_dir, name)
    except RecipeError as err:
        problems.append(err.problem)
    except LeadRecoveryError as err:  # a bad name
        return [Problem(name, folder, str(err))]
    for file in (SQL_FILE, WATERMARK_FILE):
        path = folder / file
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            problems.append(Problem(name, path, f"cannot be read: {err}"))
            continue
        if file == SQL_FILE and not text.strip():
            continue  # load() said so
        try:
            parse_sql(text, path, name)
        except RecipeError as err:
            problems.append(err.problem)
    if (folder / ANALYZER_FILE).is_file():
        found = _analyzer_problem(name, folder / ANALYZER_FILE)
        if found is not None:
            problems.append(found)
    return list(dict.fromkeys(problems))


def check_all(recipes_dir: str | Path) -> list[Problem]:
    """Every problem of every recipe under ``recipes_dir`` (``make lint``; ``doctor``).

    An empty list means every recipe loads, parses and imports. A missing
    ``recipes_dir`` is one problem, not an exception, so the caller prints one list.
    """
    try:
        names = discover(recipes_dir)
    except LeadRecoveryError as err:
        return [Problem("", Path(recipes_dir), str(err))]
    return [problem for name in names for problem in check(recipes_dir, name)]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m lead_recovery.recipes [RECIPES_DIR]``: :func:`check_all`, one line per
    problem, exit 1 if any (``make lint``). The folder defaults to the configured
    ``recipes_dir`` of the workflow in the current directory."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]) or len(args) > 1:
        print("usage: python -m lead_recovery.recipes [RECIPES_DIR]", file=sys.stderr)
        return 0 if args[:1] in (["-h"], ["--help"]) else 2
    if args:
        recipes_dir = args[0]
    else:
        from lead_recovery import config as lr_config

        try:
            recipes_dir = lr_config.load(".")["recipes_dir"]
        except LeadRecoveryError as err:
            print(f"recipes: error: {err}", file=sys.stderr)
            return 2
    problems = check_all(recipes_dir)
    for problem in problems:
        print(problem)
    if problems:
        print(f"recipes: {len(problems)} problem(s) in {recipes_dir}/", file=sys.stderr)
        return 1
    count = len(discover(recipes_dir))
    print(f"recipes: {count} recipe(s) in {recipes_dir}/ load, parse and import")
    return 0


if __name__ == "__main__":
    sys.exit(main())
