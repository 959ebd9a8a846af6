"""The real workflow with ``redshift.extract: unload`` against the shim's UNLOAD
emulation (not Redshift) and a local moto S3 server: the extract lands in the
same leads.parquet, and a same-day rerun queries nothing."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import yaml

from lead_recovery.extract import query_tag
from tests.redshift.conftest import UNLOAD_BUCKET
from tests.redshift.test_workflow_redshift import META, RECIPE, SQL

DAY = "20250512"


def test_unload_extract_then_a_same_day_rerun_queries_nothing(
    bare_workflow, pg_server, limited_shim, aws_env, s3_server, server_log
):
    shim = limited_shim(unload=True)
    bare_workflow.add_recipe(RECIPE, sql=SQL, meta=META)
    config_file = bare_workflow.root / "config" / "config.yaml"
    config = yaml.safe_load(config_file.read_text())
    config["redshift"] = {"extract": "unload"}
    config["redshift"]["unload"] = {
        "s3_prefix": f"s3://{UNLOAD_BUCKET}/workflow",
        "iam_role": "arn:aws:iam::123456789012:role/lead-recovery-unload",
    }
    config_file.write_text(yaml.safe_dump(config))
    env = {**pg_server.env(shim.port), **aws_env}
    settings = {"warehouse": "redshift", "recipe": RECIPE, "date": DAY}
    tag = query_tag(RECIPE, DAY)

    since = server_log.mark()
    bare_workflow.run(config=settings, env=env)
    bare_workflow.run(config=settings, env=env)

    unloads = server_log.server.statements(since, containing="UNLOAD emulated")
    assert len([s for s in unloads if tag in s]) == 1
    assert not server_log.declared(since, tag)  # no cursor
    leads = pq.read_table(bare_workflow.leads(RECIPE, DAY))
    expected = [g for g in range(96, 264) if g % 2 == 0 and g % 10 != 0]
    assert sorted(leads.column("lead_id").to_pylist()) == expected
    assert str(leads.schema.field("loan_amount").type) == "decimal128(12, 2)"
    record = json.loads(bare_workflow.marker(RECIPE, DAY).read_text())
    assert record["rows"] == len(expected)
    assert s3_server.keys(UNLOAD_BUCKET, "workflow/") == []
