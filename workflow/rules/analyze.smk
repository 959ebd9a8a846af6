# A recipe's processing for one run date, and latest.csv pointing at the
# newest analysis.


def leads_source(name):
    """Where analyze reads leads from: redshift, recipe_leads_csv or skipped_redshift."""
    if SELECTED[name].sql_path is None:
        return "recipe_leads_csv"
    return "skipped_redshift" if SKIP_REDSHIFT else "redshift"


def skipped_redshift_leads(name):
    """With skip_redshift: the newest cached extract of any date, else leads.csv."""
    cached = layout.cached_extract_dates(RESULTS, name)
    if cached:
        return ancient(layout.leads_path(RESULTS, name, cached[-1]))
    recipe = SELECTED[name]
    if recipe.leads_csv is not None:
        return str(recipe.leads_csv)
    _stop(
        f"recipe '{name}': skip_redshift=true but there is no cached extract "
        f"under {RESULTS}/{name}/ and no {recipe.dir}/leads.csv"
    )


def analyze_inputs(wildcards):
    name, day = wildcards.recipe, wildcards.date
    recipe = SELECTED[name]
    inputs = {"meta": str(recipe.meta_path)}
    if recipe.analyzer is not None:
        inputs["analyzer"] = str(recipe.analyzer)
    source = leads_source(name)
    if source == "skipped_redshift":
        inputs["leads"] = skipped_redshift_leads(name)
    else:
        inputs["leads"] = layout.leads_path(RESULTS, name, day)
    if source == "redshift":
        inputs["marker"] = markers.marker_path(MARKER_DIR, name, day)
    return inputs


rule analyze:
    input:
        unpack(analyze_inputs),
    output:
        analysis=layout.analysis_path(RESULTS, "{recipe}", "{date}"),
        summary=layout.summary_path(RESULTS, "{recipe}", "{date}"),
    log:
        layout.log_path(LOGS, "analyze", "{recipe}", "{date}"),
    params:
        source=lambda wildcards: leads_source(wildcards.recipe),
        recipes_dir=RECIPES_DIR,
    script:
        "../scripts/analyze.py"


rule latest:
    input:
        analysis=lambda wildcards: layout.analysis_path(
            RESULTS, wildcards.recipe, latest_date(wildcards.recipe)
        ),
    output:
        latest=layout.latest_path(RESULTS, "{recipe}"),
    log:
        f"{LOGS}/{{recipe}}/latest.log",
    script:
        "../scripts/latest.py"
