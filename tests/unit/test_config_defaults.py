"""Config defaults have one home, the schema: config/README.md documents each one
with the schema's value, and every reader (Snakemake, the CLIs, the warehouses)
gets the same filled configuration from :func:`lead_recovery.config.fill_defaults`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from lead_recovery import config as lr_config
from lead_recovery.errors import LeadRecoveryError

REPO = Path(__file__).resolve().parents[2]
SCHEMA = yaml.safe_load((REPO / lr_config.SCHEMA_FILE).read_text())
_ROW_RE = re.compile(r"^\| `([\w.]+)` \| `([^`]*)` \|", re.MULTILINE)


def _defaults(schema: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every property with a default, as (dotted key, default)."""
    for key, spec in (schema.get("properties") or {}).items():
        if "default" in spec:
            yield f"{prefix}{key}", spec["default"]
        yield from _defaults(spec, f"{prefix}{key}.")


DEFAULTS = dict(_defaults(SCHEMA))


def test_every_key_but_warehouse_has_a_default():
    """A key without a default would be missing from the filled configuration; the
    warehouse is the one choice every checkout states (config/config.yaml does)."""

    def leaves(schema: dict[str, Any], prefix: str = "") -> Iterator[str]:
        for key, spec in (schema.get("properties") or {}).items():
            if spec.get("properties"):
                yield from leaves(spec, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}"

    assert sorted(set(leaves(SCHEMA)) - {"warehouse"}) == sorted(DEFAULTS)
    assert SCHEMA["required"] == ["warehouse"]
    assert yaml.safe_load((REPO / lr_config.CONFIG_FILE).read_text())["warehouse"] == "duckdb"


@pytest.mark.parametrize("key", sorted(DEFAULTS))
def test_config_readme_documents_the_schemas_default(key):
    documented = dict(_ROW_RE.findall((REPO / "config" / "README.md").read_text()))
    assert key in documented, f"config/README.md has no row for `{key}`"
    assert yaml.safe_load(documented[key]) == DEFAULTS[key], (
        f"config/README.md says `{key}` defaults to {documented[key]}, "
        f"the schema says {DEFAULTS[key]!r}"
    )


def test_config_yaml_restates_no_default():
    """The user's file holds choices; a key set to its default is a second home."""
    given = yaml.safe_load((REPO / lr_config.CONFIG_FILE).read_text())

    def restated(data: dict[str, Any], prefix: str = "") -> Iterator[str]:
        for key, value in data.items():
            if isinstance(value, dict):
                yield from restated(value, f"{prefix}{key}.")
            elif f"{prefix}{key}" in DEFAULTS and DEFAULTS[f"{prefix}{key}"] == value:
                yield f"{prefix}{key}"

    assert list(restated(given)) == []


def test_an_empty_config_is_filled_with_every_default():
    filled = lr_config.fill_defaults({})
    for key, default in DEFAULTS.items():
        section = filled
        *parents, leaf = key.split(".")
        for parent in parents:
            section = section[parent]
        assert section[leaf] == default


def test_given_values_win_and_defaults_are_not_shared():
    """A nested section given in part keeps its values; each call gets fresh objects."""
    filled = lr_config.fill_defaults({"redshift": {"retries": 0}, "cron": {"wait": "0"}})
    assert filled["redshift"]["retries"] == 0 and filled["cron"]["wait"] == "0"
    assert filled["redshift"]["batch_size"] == DEFAULTS["redshift.batch_size"]
    filled["refresh_after"].append("06:00")
    assert lr_config.fill_defaults({})["refresh_after"] == []


def test_the_repository_config_loads_filled():
    """What the CLIs read: the user's file, overrides, then the schema's defaults."""
    loaded = lr_config.load(REPO, {"warehouse": "redshift"})
    assert loaded["warehouse"] == "redshift"
    assert loaded["cron"]["keep_logs_days"] == DEFAULTS["cron.keep_logs_days"]
    assert loaded["duckdb"]["rows"] == DEFAULTS["duckdb.rows"]


def test_a_wrong_type_is_still_one_line():
    with pytest.raises(LeadRecoveryError, match=r"config: cron.keep_logs_days: "):
        lr_config.validate(
            {"warehouse": "duckdb", "cron": {"keep_logs_days": "many"}},
            REPO / lr_config.SCHEMA_FILE,
        )
