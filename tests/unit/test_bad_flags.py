"""Bad ``--config`` values: the one-line message each parse-time check gives.

The values go through Snakemake's own ``--config`` parser, then through the
checks ``workflow/rules/common.smk`` makes at parse time, in its order.
tests/core/test_bad_input.py runs one value of each kind through the real
Snakemake: one line, a non-zero exit, nothing touched.
"""

from __future__ import annotations

import pytest
import yaml

from lead_recovery import config as lr_config
from lead_recovery import recipes, rundate
from lead_recovery.errors import LeadRecoveryError
from tests.support.workflow import REPO, config_args

SCHEMA = REPO / "workflow/schemas/config.schema.yaml"
DAY = "20250512"

# (config given on the command line, the message); test_bad_input.py runs the END_TO_END ones.
BAD_FLAGS = [
    ({"recipe": "no_such_recipe"}, "unknown recipe 'no_such_recipe'"),
    ({"recipe": "../etc"}, "must not contain '/', '\\' or '..'"),
    ({"recipe": "a/b"}, "must not contain '/', '\\' or '..'"),
    ({"recipe": "a\\\\b"}, "must not contain '/', '\\' or '..'"),
    ({"date": "2025-05-12"}, "date '2025-05-12' is not in YYYYMMDD form"),
    ({"date": "20250231"}, "date '20250231' is not a real calendar date"),
    ({"skip_redshift": "maybe"}, "config: skip_redshift: 'maybe' is not of type 'boolean'"),
    ({"recipes": "notalist"}, "config: recipes: 'notalist' is not of type 'array'"),
    ({"warehouse": "oracle"}, "config: warehouse: 'oracle' is not one of"),
    ({"timezone": "Mars/Olympus"}, "timezone 'Mars/Olympus' is not a known IANA time zone"),
]
# One of each check: recipe name, date, schema, time zone.
END_TO_END = [BAD_FLAGS[i] for i in (1, 5, 6, 9)]


def parse_time_checks(command_line: dict) -> None:
    """What common.smk checks before any job, on the config Snakemake would hand it."""
    from snakemake.cli import parse_config

    config = yaml.safe_load((REPO / "config/config.yaml").read_text())
    config.update(parse_config(config_args({"date": DAY, **command_line})[1:]))
    lr_config.validate(config, SCHEMA)
    rundate.zone(config.get("timezone"))
    rundate.resolve(config.get("date"), config.get("timezone"), config.get("day_starts_at"))
    if config.get("recipe") not in (None, ""):
        recipes.load(REPO / config["recipes_dir"], config["recipe"])


@pytest.mark.parametrize(("config", "expected"), BAD_FLAGS)
def test_bad_flag_messages(config, expected):
    with pytest.raises(LeadRecoveryError) as raised:
        parse_time_checks(config)
    assert expected in str(raised.value)
    assert "\n" not in str(raised.value)


def test_the_checks_accept_good_flags():
    parse_time_checks({"recipe": "simulation_to_handoff", "skip_redshift": "true"})
