# A recipe that cannot run (invalid meta.yml, missing files, empty SQL, no
# source with skip_redshift) in a run of every recipe: its one-line cause
# fails this job, so the run exits non-zero, while every other recipe runs.


rule broken_recipe:
    output:
        flag=f"{LOGS}/{{recipe}}/broken_recipe.flag",
    log:
        f"{LOGS}/{{recipe}}/broken_recipe.log",
    wildcard_constraints:
        recipe=_alternatives(INV.broken),
    conda:
        "../envs/lead_recovery.yaml"
    params:
        cause=lambda wildcards: INV.broken.get(wildcards.recipe, ""),
    script:
        "../scripts/broken_recipe.py"
