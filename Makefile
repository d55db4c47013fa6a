# Two commands set everything up on a fresh machine with only python3:
#   make demo   -- create .venv, install logitlab, run its main job
#   make test   -- create .venv, install logitlab with test extras, run the suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# After installing, compile the Numba kernels into their disk cache (about 25 s), so
# that no later process pays the compilation on its first call.
WARM   := $(BIN)/python -c "from logitlab._jit import warm; warm()"

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	$(WARM)
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(WARM)
	touch $@

demo: $(VENV)/.installed
	$(BIN)/logitlab demo

# The explorer's test drives Debian's Chromium; install it where it is missing.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  echo "installing Debian's chromium and chromium-driver for the explorer test"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver; }

test: $(VENV)/.installed-test browser
	$(BIN)/python -m pytest -n 2 -q src tests

clean:
	rm -rf $(VENV) logitlab-demo .pytest_cache .hypothesis
