"""Everything a folder store does, with ``store: s3://bucket/prefix``, end to end.

The day's marker and each query's extract live on S3 (moto's server stands in
for AWS; nothing else is mocked), written and read by the extract job itself;
Snakemake's outputs are this checkout's copies. Queries are counted from what
the jobs recorded (the end-of-run account); uploads, downloads and who made
each request are seen at the server.
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import boto3

from lead_recovery import layout, markerindex, markers
from lead_recovery.store import S3Store
from tests.checks.test_watermarks import DAY as WM_DAY
from tests.checks.test_watermarks import SQL as WATERMARKED_SQL
from tests.checks.test_watermarks import WATERMARK, at, load
from tests.s3.conftest import DAY, SQL, OnS3, account
from tests.support.s3server import S3Server

# tests/support/s3server.py's dummy credentials: neither may be written anywhere
CREDENTIALS = (b"lr-test-secret-key-never-logged", b"lr-test-access-key")


def said(result, recipe: str = SQL, day: str = DAY) -> str:
    """The workflow's one line about a recipe-day's marker."""
    prefix = f"{recipe} {day}: "
    lines = [line[len(prefix) :] for line in result.output.splitlines() if line.startswith(prefix)]
    assert len(lines) == 1, result.output[-4000:]
    return lines[0]


def _indexed(on_s3) -> dict | None:
    """The marker index's entry for the day (markerindex.py), or None."""
    st = S3Store(on_s3.url)
    index = markerindex.read(st, layout.MARKERS)
    return index.entries.get(markers.marker_name(SQL, DAY)) if index else None


def _etag(on_s3, key: str) -> str:
    return on_s3.server.client().head_object(Bucket=on_s3.bucket, Key=key)["ETag"].strip('"')


def test_same_day_reuse_missing_extract_forcing_and_no_credential_written(on_s3, monkeypatch):
    monkeypatch.setattr(os, "environ", {**os.environ, **on_s3.server.env})
    markerindex.rebuild(S3Store(on_s3.url), layout.MARKERS, "", None)  # as `list` does
    day = {"date": DAY, "recipe": SQL}  # the other recipe (a CSV) never meets the store
    first = on_s3.run(config=day)
    assert first.queries == 1
    # the end of the run noted the new marker in the index (what `markers list` reads)
    noted = _indexed(on_s3)
    assert noted["etag"] == _etag(on_s3, on_s3.marker_key()) and noted["cache"] is True
    assert noted["body"].encode() == on_s3.get(on_s3.marker_key())
    # The new extract crossed the network once: one upload, under its own name, which
    # the marker (uploaded once, after it) names; nothing is copied server-side, and the
    # run that made it never downloads it (its checkout's copy is the query's own file).
    extract = on_s3.extract_key()
    assert on_s3.uploads() == [extract] == on_s3.extract_keys()
    assert on_s3.downloads(extract) == 0
    assert on_s3.uploads(suffix=".marker") == [on_s3.marker_key()]
    assert not [r for r in on_s3.requests() if r["copy"]]
    assert said(first) == "will query: no marker for this date"
    assert f"{SQL} {DAY} queried (142 rows" in "\n".join(account(first.output))
    assert "team/.lead-recovery-store" in on_s3.objects()  # the bucket is never left empty
    # The checkout's own copies (Snakemake's outputs) are the store's pair; analyses stay
    # local; our client is the only one that talks to S3 (no storage plugin).
    assert on_s3.wf.leads(SQL, DAY).read_bytes() == on_s3.get(extract)
    assert on_s3.wf.marker(SQL, DAY).read_bytes() == on_s3.get(on_s3.marker_key())
    assert on_s3.wf.analysis(SQL, DAY).is_file()
    assert not (on_s3.root / ".snakemake/storage").exists()
    assert on_s3.not_ours() == []

    second = on_s3.run(config=day)
    assert second.queries == 0
    assert said(second).startswith("marker counts (queried ")
    assert "Nothing to be done" in second.output
    assert account(second.output)[-1] == (
        "total: 1 recipe-day: 0 queried, 1 cached, 0 skipped, 0 failed; 1 query avoided"
    )

    # this checkout's copy lost: it comes back from the store, with no query and no upload
    on_s3.wf.leads(SQL, DAY).unlink()
    since = len(on_s3.requests())
    copied = on_s3.run("--until", "redshift_extract", config=day)
    assert said(copied).endswith("this checkout's copy comes from the store (no query)")
    assert copied.queries == 0 and copied.jobs["redshift_extract"] == 1
    assert on_s3.uploads(since) == [] and on_s3.extract_key() == extract
    assert on_s3.downloads(extract, since) == 1
    assert on_s3.wf.leads(SQL, DAY).read_bytes() == on_s3.get(extract)

    # a forced re-query writes a new extract beside the one it replaces; the marker moves
    # to it (the run stops at the extract: no assertion reads the analysis)
    since = len(on_s3.requests())
    forced = on_s3.run(
        "--until", "redshift_extract", config={**day, "ignore_redshift_marker": True}
    )
    assert said(forced) == "will query: forced by ignore_redshift_marker=true"
    assert "Forced execution" in forced.output and forced.queries == 1
    assert f"{SQL} {DAY} queried (" in "\n".join(account(forced.output))
    assert on_s3.uploads(since) == [on_s3.extract_key()] != [extract]
    assert sorted(on_s3.extract_keys()) == sorted([extract, on_s3.extract_key()])
    assert on_s3.wf.leads(SQL, DAY).read_bytes() == on_s3.get(on_s3.extract_key())
    assert _indexed(on_s3)["etag"] == _etag(on_s3, on_s3.marker_key()) != noted["etag"]
    assert on_s3.not_ours() == []

    # the store's extract lost: the marker no longer counts, the day would be queried
    # again (a dry run: that query is the job the forced run above ran)
    on_s3.delete(on_s3.extract_key())
    again = on_s3.run("-n", config=day)
    assert said(again) == "will query: marker present but cached extract missing"
    assert again.queries == 1

    # No credential anywhere: the checkout (logs, .snakemake metadata), nor the bucket.
    for path in on_s3.root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            assert not [c for c in CREDENTIALS if c in data], path
    for key in on_s3.objects(""):
        data = on_s3.get(key) or b""
        if key.endswith(".gz"):  # the marker index
            data = gzip.decompress(data)
        assert not [c for c in CREDENTIALS if c in data], key


def test_marker_ttl_and_refresh_times_read_the_marker_on_s3(on_s3):
    def at(hhmm: str, *args: str, **config):
        return on_s3.run(
            *args,
            config={"date": DAY, "recipe": SQL, "timezone": "UTC", **config},
            env={"LEAD_RECOVERY_NOW": f"2026-11-27T{hhmm}:00+00:00", "TZ": "UTC"},
        )

    # One real query (to the extract: nothing here reads an analysis); then the decisions
    # read that marker's times from S3 (dry runs: the query a decision leads to is the
    # same job as any other, tested above). Each policy's boundaries and lines are
    # plan.plan_day's (tests/unit/test_s3_decisions.py, tests/unit/test_plan.py).
    assert at("06:00", "--until", "redshift_extract").queries == 1
    expired = at("09:00", "-n", marker_ttl="2h")
    assert said(expired) == "will query: expired at 2026-11-27T08:00:00+00:00 (marker_ttl 2h)"
    assert expired.queries == 1
    counts = at("07:59", "-n", refresh_after=["05:00", "09:15"], marker_ttl="2h")
    assert said(counts) == "marker counts (queried 2026-11-27T06:00:00+00:00); no query"
    assert counts.queries == 0


def test_failed_forced_requery_keeps_the_s3_pair_then_skip_redshift_reads_it(on_s3):
    # set-up: the day's pair, made by a run that stops at the extract (the CSV recipe
    # never meets the store: every run here is of the SQL recipe)
    assert (
        on_s3.run("--until", "redshift_extract", config={"date": DAY, "recipe": SQL}).queries == 1
    )
    extract = on_s3.extract_key()
    before = {k: on_s3.get(k) for k in (extract, on_s3.marker_key())}
    sql = on_s3.root / f"recipes/{SQL}/redshift.sql"
    original = sql.read_text()
    sql.write_text(original.replace("SELECT", "SELECT nope_no_such_column,", 1))

    failed = on_s3.run(config={"date": DAY, "recipe": SQL}, ok=False)
    assert said(failed).startswith("will query: SQL changed since the marker")
    line = next(x for x in account(failed.output) if x.startswith(f"{SQL} {DAY}"))
    assert line.startswith(f"{SQL} {DAY} failed: recipe '{SQL}': query failed")
    assert line.endswith("; the previous extract and marker were kept")
    assert {k: on_s3.get(k) for k in before} == before  # byte for byte
    assert on_s3.extract_keys() == [extract]  # the failed query committed nothing
    # and this checkout's copies are the store's pair again
    assert on_s3.wf.leads(SQL, DAY).read_bytes() == before[extract]
    assert on_s3.wf.marker(SQL, DAY).read_bytes() == before[on_s3.marker_key()]

    sql.write_text(original)
    skipped = on_s3.run(config={"date": "20261128", "recipe": SQL, "skip_redshift": True})
    assert skipped.queries == 0
    assert said(skipped, day="20261128") == f"skip_redshift: using the extract of {DAY}"
    summary = (on_s3.wf.summary(SQL, "20261128")).read_text()
    assert '"cache_date": "20261127"' in summary and '"source": "skipped_redshift"' in summary
    assert f"{SQL} 20261128 skipped (skip_redshift; extract of {DAY})" in account(skipped.output)


def test_bad_store_settings_stop_before_any_query_with_one_line(on_s3, tmp_path: Path):
    nothing = {
        "AWS_ACCESS_KEY_ID": "",
        "AWS_SECRET_ACCESS_KEY": "",
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
    }
    cases = [
        ({"store": "s3://no-such-bucket-here/team"}, {}, "no such bucket 'no-such-bucket-here'"),
        ({}, nothing, "no AWS credentials"),
        ({}, {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}, "cannot reach the S3 endpoint"),
    ]
    for config, env, cause in cases:
        result = on_s3.run(config={"date": DAY, **config}, env=env, ok=False)
        errors = [x for x in result.output.splitlines() if x.startswith("lead-recovery: error:")]
        assert len(errors) == 1, result.output[-3000:]
        assert errors[0].startswith("lead-recovery: error: store s3://"), errors
        assert cause in errors[0], errors
        assert "Traceback" not in result.output and result.queries == 0
    assert on_s3.objects() == []  # nothing was written, not even the store's own object
    assert not (on_s3.root / "logs").exists()


def test_a_store_the_credentials_may_not_write_to_is_denied_in_one_line(workflow):
    """moto checks credentials and IAM policies after its first 4 requests (the setup)."""
    with S3Server(server_env={"INITIAL_NO_AUTH_ACTION_COUNT": "4"}) as server:
        server.client().create_bucket(Bucket="lr-read-only")
        iam = boto3.client(
            "iam",
            endpoint_url=server.endpoint,
            region_name=server.region,
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
        )
        iam.create_user(UserName="reader")
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        read_only = {
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:ListBucket"],
            "Resource": "*",
        }
        iam.put_user_policy(
            UserName="reader",
            PolicyName="read-only",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [read_only]}),
        )
        on_s3 = OnS3(workflow, server, "lr-read-only")
        reader = {
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
        }
        for env, cause in [
            (reader, "access denied (AccessDenied)"),
            ({"AWS_ACCESS_KEY_ID": "AKIANOSUCHKEY0000000"}, "credentials were rejected"),
        ]:
            result = on_s3.run("-n", config={"date": DAY}, env=env, ok=False)
            errors = [x for x in result.output.splitlines() if x.startswith("lead-recovery: error")]
            assert len(errors) == 1, result.output[-3000:]
            assert errors[0].startswith("lead-recovery: error: store s3://lr-read-only/team: ")
            assert cause in errors[0] and result.queries == 0
            assert "Traceback" not in result.output


def test_an_unchanged_source_watermark_keeps_the_s3_marker_and_a_changed_one_queries(on_s3):
    """As tests/checks/test_watermarks.py on a folder. A recipe query is seen at the
    server: it uploads an extract; a confirmed marker names the extract it had."""
    folder = on_s3.wf.add_recipe("sourced", sql=WATERMARKED_SQL)
    (folder / "watermark.sql").write_text(WATERMARK)
    load(on_s3.wf, 1, "2025-05-12 05:00:00")
    config = {"recipe": "sourced", "date": WM_DAY, "marker_ttl": "1h"}
    marker_key = on_s3.marker_key("sourced", WM_DAY)
    until = ("--until", "redshift_extract")  # the watermark is checked in the extract job

    assert on_s3.run(*until, config=config, env=at("06:00")).queries == 1
    first = json.loads(on_s3.get(marker_key))
    paid = on_s3.extract_key("sourced", WM_DAY)
    assert first["watermark"] == "2025-05-12 05:00:00"

    since = len(on_s3.requests())
    unchanged = on_s3.run(*until, config=config, env=at("08:00"))
    assert said(unchanged, "sourced", WM_DAY).endswith(
        "will check the source watermark and query only if it changed"
    )
    assert on_s3.uploads(since) == []  # no extract was made: the recipe's query did not run
    after = json.loads(on_s3.get(marker_key))
    assert after["run_id"] == first["run_id"] and after["queried_at"] == first["queried_at"]
    assert after["confirmed_at"].startswith("2025-05-12T08:00")
    assert after["extract"] == first["extract"] and on_s3.extract_keys("sourced", WM_DAY) == [paid]
    assert "marker counts: source unchanged since" in unchanged.output
    assert "sourced 20250512 cached (" in "\n".join(account(unchanged.output))
    assert "source unchanged (watermark checked)" in unchanged.output

    load(on_s3.wf, 2, "2025-05-12 09:00:00")
    since = len(on_s3.requests())
    changed = on_s3.run(*until, config=config, env=at("09:45"))
    final = json.loads(on_s3.get(marker_key))
    assert final["run_id"] != first["run_id"] and final["rows"] == 2
    assert final["watermark"] == "2025-05-12 09:00:00"
    assert "source changed (watermark 2025-05-12 05:00:00 -> 2025-05-12 09:00:00)" in (
        changed.output
    )
    assert on_s3.uploads(since) == [on_s3.extract_key("sourced", WM_DAY)]  # one query


def test_every_request_is_signed_for_the_region_aws_region_or_the_profile_names(
    workflow, s3_server, tmp_path: Path
):
    """boto3 reads only AWS_DEFAULT_REGION. Seen at the server: every request of a run,
    all of them our store client's (a listing, reads and writes of the store's keys), is
    signed for the region the standard settings name: AWS_REGION alone, or the
    AWS_PROFILE's config with its credentials."""
    bucket = f"lr-{os.getpid()}-region"
    where = {"LocationConstraint": "eu-west-1"}
    s3_server.client().create_bucket(Bucket=bucket, CreateBucketConfiguration=where)
    on_s3 = OnS3(workflow, s3_server, bucket)

    def signed(since: int) -> set[str | None]:
        made = on_s3.requests()[since:]
        assert [r for r in made if r["method"] == "GET" and not r["key"]], "never listed"
        assert any(r["key"] == on_s3.marker_key() for r in made), "never read the marker"
        assert on_s3.not_ours(since) == []
        return {r["region"] for r in made}

    since = len(on_s3.requests())
    only_region = {"AWS_DEFAULT_REGION": None, "AWS_REGION": "eu-west-1"}
    first = on_s3.run("--until", "redshift_extract", config={"date": DAY}, env=only_region)
    assert first.queries == 1
    assert signed(since) == {"eu-west-1"}

    secret = "lr-profile-secret-never-logged"
    (tmp_path / "config").write_text("[profile team]\nregion = eu-west-1\n")
    (tmp_path / "credentials").write_text(
        f"[team]\naws_access_key_id = lr-profile-key\naws_secret_access_key = {secret}\n"
    )
    profile = {
        **{k: None for k in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID")},
        "AWS_SECRET_ACCESS_KEY": None,
        "AWS_PROFILE": "team",
        "AWS_CONFIG_FILE": str(tmp_path / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "credentials"),
    }
    since = len(on_s3.requests())
    dry = on_s3.run("-n", config={"date": DAY}, env=profile)
    assert said(dry).startswith("marker counts") and dry.queries == 0
    assert signed(since) == {"eu-west-1"}
    for path in on_s3.root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            assert secret.encode() not in path.read_bytes(), path


def test_max_drop_compares_with_the_recipes_earlier_markers_on_s3(on_s3):
    """The median of the last marked days is read from S3, where the markers are:
    this checkout has none of them."""
    meta = on_s3.root / f"recipes/{SQL}/meta.yml"
    meta.write_text(meta.read_text() + "expect:\n  max_drop: 0.5\n")
    client = on_s3.server.client()
    for day, rows in (("20261124", 900), ("20261125", 1000), ("20261126", 1100)):
        record = {
            "recipe": SQL,
            "run_date": day,
            "queried_at": "2026-11-26T06:00:00+00:00",
            "rows": rows,
        }
        client.put_object(
            Bucket=on_s3.bucket, Key=on_s3.marker_key(day=day), Body=markers.render(record)
        )

    run = on_s3.run(config={"date": DAY, "recipe": SQL}, ok=False)

    # one query, whose result is suspect: the job failed, so the account has no "queried"
    assert run.output.count(f"querying duckdb warehouse for recipe {SQL}, run date {DAY}") == 1
    assert run.queries == 0 and run.jobs["redshift_extract"] == 1
    assert "suspect: 142 rows, more than 50% below the median" in run.output
    assert on_s3.get(on_s3.marker_key()) is None  # the day is not marked
    assert on_s3.extract_keys() == []
    suspect = on_s3.key(f"{SQL}/{DAY}/suspect.parquet")
    assert f"kept for inspection in s3://{on_s3.bucket}/{suspect}" in run.output
    assert on_s3.get(suspect).startswith(b"PAR1")
