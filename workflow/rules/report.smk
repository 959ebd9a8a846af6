# The Snakemake report's account page and figures (snakemake --report), from
# the run history. Built only when asked: `snakemake report_figures`, or
# `lead-recovery report --html`, which then runs `snakemake --report`. A
# daily run never builds them (rule all asks for them only in a report), so
# it costs a run nothing. The inputs are the history's run files: Snakemake
# redraws the figures when a run was recorded since.
#
# The report opens on the account page's overview (what the markers saved):
# the workflow description (report/workflow.rst) shows it, and the landing
# metadata written here makes Snakemake open on that description rather than
# on the rule graph (`--report-metadata`, which lead-recovery report passes).


rule report_figures:
    input:
        history=report_history_files,
    output:
        account=report(
            f"{RESULTS}/report/account.html",
            caption="../report/account.rst",
            category="Account",
            labels={"page": "what the markers saved, the last run, the totals"},
        ),
        rows=report(
            f"{RESULTS}/report/rows_per_day.svg",
            caption="../report/rows_per_day.rst",
            category="Figures",
            labels={"figure": "rows per day per recipe"},
        ),
        queries=report(
            f"{RESULTS}/report/queries_per_day.svg",
            caption="../report/queries_per_day.rst",
            category="Figures",
            labels={"figure": "queries run and avoided per day"},
        ),
        metadata=f"{RESULTS}/report/report_metadata.yaml",
    log:
        f"{LOGS}/report_figures.log",
    conda:
        "../envs/lead_recovery.yaml"
    params:
        since=str(config["report_since"]),
    script:
        "../scripts/report_figures.py"
