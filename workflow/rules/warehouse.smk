# The embedded DuckDB demo warehouse (the default, so a fresh clone runs
# without credentials). Built once; extracts treat it as ancient so that
# rebuilding it never re-queries a day that is already cached.


rule demo_warehouse:
    output:
        config["duckdb"]["path"],
    log:
        f"{LOGS}/demo_warehouse.log",
    conda:
        "../envs/lead_recovery.yaml"
    script:
        "../scripts/demo_warehouse.py"
