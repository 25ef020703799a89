# Two commands do all the set-up on a fresh machine with python3 and make:
#   make run   - create .venv, install, start the daemon on the shipped config.yaml
#   make test  - create .venv, install with test extras, run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run once test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/complaint-monitor run --config config.yaml

once: $(STAMP)
	$(BIN)/complaint-monitor once --config config.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	for f in bench/bench_*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) *.egg-info
