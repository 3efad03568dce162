# NeuroCare-BIDS developer and user entry points. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo
NPROCS ?= 0
# make demo: cross-validation folds trained at once, each in its own process (--fold-jobs; default: one per CPU core)
DEMO_JOBS ?= $(shell $(PYTHON) -c 'import os; print(os.cpu_count() or 1)')

.PHONY: install demo test bench docs clean container-test

# The virtual environment, rebuilt when the dependencies change.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,jax,docs]'  # jax: the group level on KERAS_BACKEND=jax (tests/training/test_jax.py); docs: make docs
	$(BIN)/python -m pip install --quiet --no-deps epilepsy2bids==0.0.7
	touch $@

install: $(VENV)/.installed

## demo: create the synthetic demo dataset, then run the participant and group levels on it
demo: install
	@test -f $(DEMO_DIR)/bids/dataset_description.json || $(BIN)/neurocare-bids demo-data $(DEMO_DIR)/bids
	$(BIN)/neurocare-bids $(DEMO_DIR)/bids $(DEMO_DIR)/derivatives participant --nprocs $(NPROCS)
	@# The folds as separate one-thread --fold K processes, DEMO_JOBS at a time (--fold-jobs; on 2 cores 1.5x faster
	@# than one process training them in turn), then the aggregation and the final model with every core
	$(BIN)/neurocare-bids $(DEMO_DIR)/bids $(DEMO_DIR)/derivatives group --config examples/demo.toml \
	    --fold-jobs $(DEMO_JOBS) -v
	@echo
	@echo "Demo input:   $(DEMO_DIR)/bids"
	@echo "Demo outputs: $(DEMO_DIR)/derivatives (windows per recording, group/ metrics and model, szcore/)"

## test: the whole test suite (needs no GPU and no network), one worker per core (pytest-xdist); a test file's tests
## stay in one worker, so that its module fixtures run once (15 min instead of 21 on 2 cores, 2026-12-03), handed out
## in collection order, heaviest first (tests/conftest.py HEAVY_FILES); the 25 slowest tests are listed at the end,
## to keep CI within its time
test: install
	$(BIN)/python -m pytest -q --numprocesses auto --dist loadfile --no-loadscope-reorder --durations 25

## container-test: build the CPU image with podman and run it read-only, offline, as an arbitrary user on a
## tiny dataset (scripts/container_test.sh; root; installs podman from Debian if missing; 2-10 minutes)
container-test: install
	bash scripts/container_test.sh

## bench: the preprocessing benchmark (app vs. a plain MNE pipeline; several minutes)
bench: install
	$(BIN)/python benchmarks/preprocess.py

## docs: build the documentation site into site/ (mkdocs.yml, docs/; offline; every warning, such as a broken link
## or anchor, is an error). The references are generated from the code at each build (docs/hooks.py).
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --site-dir site
	@echo "Documentation: site/index.html"

clean:
	rm -rf $(DEMO_DIR) build dist site *.egg-info .pytest_cache
