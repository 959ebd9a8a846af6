# The two commands: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml requirements.lock | cksum | cut -d' ' -f1)
SNAKEMAKE_ARGS ?=
UV_VERSION := 0.13.9

.PHONY: run test lint fmt bench bench-redshift bench-markers cron clean venv

venv: $(STAMP)

# Create .venv if missing and install the pinned dependencies (once per lock change).
# The cluster executor plugins (pyproject's `slurm` extra) go to .venv/executors/,
# on PYTHONPATH only for cluster runs: Snakemake imports every plugin it can see at
# each start, and the Slurm one costs every run half a second (docs/cluster.md).
$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# uv installs the same pinned set as pip would, several times faster on a fresh machine
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --python $(BIN)/python -c requirements.lock -e '.[dev]'
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -c requirements.lock \
	    --target $(VENV)/executors \
	    $$($(BIN)/python -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]["slurm"])')
	@rm -f $(VENV)/.installed-*
	@touch $@

# Run every recipe for today on the configured warehouse (default: embedded DuckDB demo).
run: $(STAMP)
	$(BIN)/snakemake $(SNAKEMAKE_ARGS)

# Set up what the tests need (PostgreSQL binaries, faketime) and run the whole suite.
test: $(STAMP)
	@bash tests/support/setup_system.sh
	@# The suite starts some thousand Pythons: they write and reuse bytecode caches even
	@# where PYTHONDONTWRITEBYTECODE is set, or each compiles all it imports (pandas: about
	@# a CPU-second) and the suite's time depends on test order (docs/design.md).
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check lead_recovery workflow/scripts tests bench
	$(BIN)/ruff format --check lead_recovery workflow/scripts tests bench
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/snakemake --lint
	@# every recipe loads, its SQL parses as Redshift SQL, its analyzer imports
	$(BIN)/python -m lead_recovery.recipes

fmt: $(STAMP)
	$(BIN)/ruff check --fix lead_recovery workflow/scripts tests bench
	$(BIN)/ruff format lead_recovery workflow/scripts tests bench
	$(BIN)/snakefmt Snakefile workflow/rules

# The unattended daily run, installing first at a terminal. The crontab line calls
# .venv/bin/lead-recovery cron itself, for its exit status (docs/operations.md).
cron: $(STAMP)
	@$(BIN)/python workflow/scripts/cron.py $(CRON_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/bench_cached_run.py

# Extract 1M and 5M rows from a throw-away PostgreSQL behind the shim (~7 min).
bench-redshift: $(STAMP)
	@bash tests/support/setup_system.sh
	$(BIN)/python bench/bench_redshift_extract.py $(BENCH_ARGS)

bench-markers: $(STAMP)
	$(BIN)/python bench/bench_markers_list.py $(BENCH_ARGS)

clean:
	rm -rf .snakemake results logs
