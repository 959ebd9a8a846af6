"""ignore_all_markers in a config file holds whatever the command line says."""

RECIPE = "simulation_to_handoff"
DAY = "20250512"


def test_config_file_ignore_all_cannot_be_switched_off_on_the_command_line(workflow, ran_before):
    ran_before(workflow, {"recipe": RECIPE, "date": DAY})
    extra = workflow.root / "config" / "ops.yaml"
    extra.write_text("ignore_all_markers: true\n")

    result = workflow.run(
        "--configfile",
        "config/config.yaml",
        str(extra),
        config={"recipe": RECIPE, "date": DAY, "ignore_all_markers": False},
    )

    assert result.queries == 1
    assert "forced by ignore_all_markers=true" in result.output
