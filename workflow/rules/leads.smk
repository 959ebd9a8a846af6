# Recipes without redshift.sql: their leads.csv becomes the same cached
# leads.parquet a query would produce. No marker is checked or created.
# Only their names match this rule, and it comes first where
# redshift_extract (which takes any name) could make the same file.


ruleorder: recipe_leads > redshift_extract


rule recipe_leads:
    input:
        csv=f"{RECIPES_DIR}/{{recipe}}/leads.csv",
    output:
        leads=layout.leads_path(RESULTS, "{recipe}", "{date}"),
    log:
        layout.log_path(LOGS, "recipe_leads", "{recipe}", "{date}"),
    wildcard_constraints:
        recipe=_alternatives(CSV_RECIPES),
    conda:
        "../envs/lead_recovery.yaml"
    script:
        "../scripts/recipe_leads.py"
