# NeuroCare-BIDS developer and user entry points. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_DIR ?= demo
NPROCS ?= 0

.PHONY: install demo test bench docs clean

# The virtual environment, rebuilt when the dependencies change.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m pip install --quiet --no-deps epilepsy2bids==0.0.7
	touch $@

install: $(VENV)/.installed

## demo: create the synthetic demo dataset and run the participant level on it
demo: install
	@test -f $(DEMO_DIR)/bids/dataset_description.json || $(BIN)/neurocare-bids demo-data $(DEMO_DIR)/bids
	$(BIN)/neurocare-bids $(DEMO_DIR)/bids $(DEMO_DIR)/derivatives participant --nprocs $(NPROCS)
	@echo
	@echo "Demo input:   $(DEMO_DIR)/bids"
	@echo "Demo outputs: $(DEMO_DIR)/derivatives (TFRecords + JSON sidecars per recording, logs/)"

## test: the whole test suite (needs no GPU and no network)
test: install
	$(BIN)/python -m pytest -q

## bench: the preprocessing benchmark (app vs. a plain MNE pipeline; several minutes)
bench: install
	$(BIN)/python benchmarks/preprocess.py

## docs: print the configuration reference table for README.md
docs: install
	@$(BIN)/python -c "from neurocare_bids.config import reference_markdown; print(reference_markdown())"

clean:
	rm -rf $(DEMO_DIR) build dist *.egg-info .pytest_cache
