# Two commands set everything up on a fresh machine with only python3:
#   make demo   -- create .venv, install logitlab, run its main job
#   make test   -- create .venv, install logitlab with test extras, run the suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	$(BIN)/logitlab demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest -n 2 -q src tests

clean:
	rm -rf $(VENV) logitlab-demo .pytest_cache .hypothesis
