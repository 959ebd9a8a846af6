# A recipe's processing for one run date, and latest.csv pointing at the
# newest analysis.


rule analyze:
    input:
        unpack(analyze_inputs),
    output:
        analysis=layout.analysis_path(RESULTS, "{recipe}", "{date}"),
        summary=layout.summary_path(RESULTS, "{recipe}", "{date}"),
    log:
        layout.log_path(LOGS, "analyze", "{recipe}", "{date}"),
    conda:
        "../envs/lead_recovery.yaml"
    resources:
        **job_resources("analyze"),
    script:
        "../scripts/analyze.py"


rule latest:
    # One symlink: done inside Snakemake's own process, not in a new Python.
    input:
        analysis=latest_analysis_input(),
    output:
        latest=layout.latest_path(RESULTS, "{recipe}"),
    log:
        f"{LOGS}/{{recipe}}/latest.log",
    run:
        layout.point_latest(output.latest, input.analysis)
