# One query per recipe and run date, between every run that shares the store.
# The job's outputs are this checkout's copies of the day's pair (its extract
# and marker), so Snakemake decides whether it runs: both present -> nothing to
# do; either missing or a new date -> the job; a marker that no longer counts
# (forced, expired, SQL changed) -> forced, see lead_recovery/plan.py. The pair
# itself lives in the store, where Snakemake never deletes anything
# (lead_recovery/day.py). The marker is update(): Snakemake keeps it while the
# job runs and restores it if the job fails (with no store it is the store's).


rule redshift_extract:
    input:
        unpack(extract_inputs),
    output:
        leads=layout.leads_path(RESULTS, "{recipe}", "{date}"),
        marker=update(markers.marker_path(f"{RESULTS}/markers", "{recipe}", "{date}")),
    log:
        layout.log_path(LOGS, "redshift_extract", "{recipe}", "{date}"),
    conda:
        "../envs/lead_recovery.yaml"
    resources:
        **job_resources("redshift_extract"),
    script:
        "../scripts/redshift_extract.py"
