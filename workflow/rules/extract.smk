# One query per recipe and run date. The cached extract and the marker are
# outputs of this one job, so Snakemake decides whether it runs: both present
# -> nothing to do; either missing or a new date -> query; a marker that no
# longer counts (forced, expired, SQL changed) -> forced, see common.smk.
# With `store: s3://...` both are Snakemake storage outputs on S3 (stored()),
# which the job publishes itself: Snakemake does not upload them again.


rule redshift_extract:
    input:
        unpack(extract_inputs),
    output:
        leads=stored(
            layout.leads_path(RESULTS, "{recipe}", "{date}"), published_by_job=True
        ),
        marker=stored(
            markers.marker_path(MARKER_DIR, "{recipe}", "{date}"),
            published_by_job=True,
        ),
    log:
        layout.log_path(LOGS, "redshift_extract", "{recipe}", "{date}"),
    wildcard_constraints:
        recipe=EXTRACT_RECIPE,
    conda:
        "../envs/lead_recovery.yaml"
    resources:
        **job_resources("redshift_extract"),
    script:
        "../scripts/redshift_extract.py"
