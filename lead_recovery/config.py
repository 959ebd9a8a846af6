"""Loading and validating the workflow configuration.

Snakemake (through ``common.smk``) and the command-line helpers validate the
same ``config/config.yaml`` against the same schema in ``workflow/schemas/``,
so the helper always looks where the workflow writes. The schema is the one
home of every default: :func:`fill_defaults` puts them into whatever
configuration a reader got, so no module types a default again.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, MutableMapping
from difflib import get_close_matches
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from dotenv import dotenv_values

from lead_recovery.errors import LeadRecoveryError

CONFIG_FILE = "config/config.yaml"
SCHEMA_FILE = "workflow/schemas/config.schema.yaml"
RECIPE_SCHEMA = Path(__file__).resolve().parents[1] / "workflow/schemas/recipe.schema.yaml"
CONFIG_SCHEMA = Path(__file__).resolve().parents[1] / SCHEMA_FILE


def load_yaml(path: str | Path, what: str) -> Any:
    """Parse a YAML file, turning a syntax error into a one-line message."""
    try:
        with open(path, encoding="utf-8") as handle:
            return yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except FileNotFoundError:
        raise LeadRecoveryError(f"{what} not found ({path})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise LeadRecoveryError(f"{what} is not valid YAML{where}: {problem} ({path})") from None


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def parse_bool(value: object) -> bool | None:
    """The one boolean grammar (config text, environment variables, ``.env``).

    ``true/yes/on/1`` and ``false/no/off/0`` in any case; a real boolean as is;
    anything else (including empty) is ``None``, for the caller to default or reject.
    """
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if value is not None else ""
    return True if text in _TRUE else False if text in _FALSE else None


def _coerce_booleans(config: dict[str, Any], schema: dict[str, Any]) -> None:
    """``--config flag=true`` arrives as the string "true"; make it a boolean."""
    for key, spec in (schema.get("properties") or {}).items():
        value = config.get(key)
        if spec.get("type") == "boolean" and isinstance(value, str):
            parsed = parse_bool(value)
            if parsed is not None:
                config[key] = parsed


_COMPILED: dict[int, tuple[Any, Any]] = {}


def _compiled(schema: dict[str, Any]) -> Any:
    """A compiled check of ``schema`` (fastjsonschema: microseconds, not milliseconds).

    A run checks a thousand meta.yml files; jsonschema takes about half a
    millisecond each (and a quarter of a second to import), a third of a fully
    cached run. The compiled check answers "valid?"; jsonschema, imported only
    then, explains the rare invalid file. The schemas use only keywords that
    both implement alike.
    """
    import fastjsonschema

    key = id(schema)
    if key not in _COMPILED:
        body = {k: v for k, v in schema.items() if k != "$schema"}
        _COMPILED[key] = (schema, fastjsonschema.compile(body))
    return _COMPILED[key][1]


def schema_problem(data: Any, schema: dict[str, Any]) -> str | None:
    """The first problem of ``data`` against ``schema`` as ``key: what``, or ``None``.

    An unknown key names the nearest valid one, so ``marker_tll`` reads as
    "unknown key 'marker_tll' (did you mean 'marker_ttl'?)".
    """
    import fastjsonschema

    try:
        _compiled(schema)(data)
        return None
    except fastjsonschema.JsonSchemaException:
        pass
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is None:  # the two disagree: trust the explaining one
        return None
    path = [str(p) for p in error.absolute_path]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = list(error.schema.get("properties") or {})
        unknown = sorted(k for k in error.instance if k not in known)
        if unknown:
            near = get_close_matches(str(unknown[0]), known, n=1, cutoff=0.0)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            return f"{'.'.join([*path, str(unknown[0])])}: unknown key{hint}"
    return f"{'.'.join(path) or '(top level)'}: {error.message}"


_SCHEMAS: dict[Path, dict[str, Any]] = {}


def _schema(path: str | Path) -> dict[str, Any]:
    """The config schema at ``path``, read once per process."""
    key = Path(path).resolve()
    if key not in _SCHEMAS:
        _SCHEMAS[key] = load_yaml(key, "config schema")
    return _SCHEMAS[key]


def fill_defaults(
    config: Mapping[str, Any], schema: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A copy of ``config`` with the schema's defaults filled in.

    The one place defaults come from: the workflow (through :func:`validate`), the
    CLIs (through :func:`load`) and code handed a partial configuration (a test's
    ``{"redshift": {"retries": 0}}``) all call it. A missing section is created, so
    its keys get their defaults too. Snakemake's ``validate(set_default=True)``
    would do the same through jsonschema, which costs a quarter of a second at
    parse time, and shares one default object between configurations.
    """
    schema = _schema(CONFIG_SCHEMA) if schema is None else schema
    filled = copy.deepcopy(dict(config))
    for key, spec in (schema.get("properties") or {}).items():
        if key not in filled and "default" in spec:
            filled[key] = copy.deepcopy(spec["default"])
        elif spec.get("properties"):
            section = filled.get(key, {})
            if isinstance(section, dict):  # anything else: the check names the problem
                filled[key] = fill_defaults(section, spec)
    return filled


def validate(config: dict[str, Any], schema_path: str | Path) -> dict[str, Any]:
    """Fill in the defaults, then check ``config`` against the workflow schema; the
    first problem is the message.

    In place, because Snakemake's jobs see the very ``config`` its Snakefile
    validated. Booleans given as text on the command line are normalised first.
    """
    schema = _schema(schema_path)
    _coerce_booleans(config, schema)
    config.update(fill_defaults(config, schema))
    problem = schema_problem(config, schema)
    if problem is not None:
        from lead_recovery import yamlhints

        problem = yamlhints.misread(config, schema) or problem
        raise LeadRecoveryError(f"config: {problem}")
    contained(config)
    return config


# The configuration's folders: none climbs with '..' (the store's folder and S3 prefix
# are checked where a store is opened, store.open_store, for --store too).
FOLDERS = ("recipes_dir", "results_dir", "logs_dir", "cron.log_dir")


def contained(config: Mapping[str, Any]) -> None:
    """Refuse a folder of the configuration that names ``..``, in one line naming it."""
    for key in FOLDERS:
        value: Any = config
        for part in key.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if isinstance(value, str) and ".." in PurePosixPath(value.replace("\\", "/")).parts:
            raise LeadRecoveryError(
                f"config: {key} {value!r}: '..' may not appear in a folder of the "
                "configuration (name it without '..'; an absolute path is fine)"
            )


def read(repo: str | Path = ".") -> dict[str, Any]:
    """``config/config.yaml`` as written (not yet checked): a one-line error if it is
    missing, not YAML or not a mapping."""
    path = Path(repo) / CONFIG_FILE
    config = load_yaml(path, "config file") or {}
    if not isinstance(config, dict):
        raise LeadRecoveryError(f"config file must be a mapping ({path})")
    return config


def load(repo: str | Path = ".", overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The workflow's configuration as Snakemake would see it (defaults filled), for the
    command-line helpers that read it outside Snakemake."""
    repo = Path(repo)
    config = read(repo)
    for key, value in (overrides or {}).items():
        if value is not None:
            config[key] = value
    return validate(config, repo / SCHEMA_FILE)


def env_flag(value: str | None) -> bool:
    """Whether an environment variable such as ``LEAD_RECOVERY_IGNORE_MARKERS`` is set on."""
    return parse_bool(value) is True


def env_file_values(path: str | Path) -> dict[str, str]:
    """The settings of a ``.env`` file (python-dotenv's grammar); ``{}`` if there is none.

    The one ``.env`` reader: the Redshift settings and the cron run both use it,
    and both let the environment win over the file.
    """
    if not Path(path).is_file():
        return {}
    return {k: v for k, v in dotenv_values(path).items() if v is not None}


def add_env_file(path: str | Path, environ: MutableMapping[str, str]) -> list[str]:
    """Add the ``.env`` settings ``environ`` lacks (the environment always wins); their
    names, for the cron log (never their values)."""
    added = {k: v for k, v in env_file_values(path).items() if k not in environ}
    environ.update(added)
    return list(added)
