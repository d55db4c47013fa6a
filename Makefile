# Two commands set everything up on a fresh machine with only python3:
#   make demo       -- create .venv, install logitlab, run its main job
#   make test       -- create .venv, install logitlab with test extras, run the whole suite
#   make test-fast  -- the same without the tests marked slow (the edit-run loop)
# Nothing is installed or changed outside this folder: the venv, Numba's kernel cache
# (src/logitlab/__pycache__) and the explorer test's Chromium (.venv/chromium) live here.
# Each step prints one line; installers' output goes to .venv/install.log, named (and its
# tail printed) when a step fails.
PYTHON ?= python3
# pip installs without byte-compiling every module it unpacks (about half of its time here:
# scipy, scikit-learn, dask and matplotlib hold thousands of modules the tests never import);
# Python writes each module's bytecode into .venv when a process first imports it. For that,
# make's commands run without PYTHONDONTWRITEBYTECODE: bytecode is written only into this
# folder (.venv and the project's own __pycache__ folders, which git ignores).
PIP    := -m pip install --no-compile --disable-pip-version-check
unexport PYTHONDONTWRITEBYTECODE
VENV   := .venv
BIN    := $(VENV)/bin
LOG    := $(VENV)/install.log
CHROMIUM_LOG := $(VENV)/chromium.log
# Two processes compiling the kernels at once would do the work twice: the second waits.
FLOCK  := $(shell command -v flock >/dev/null && echo flock $(VENV)/warm.lock)
WARM   := $(BIN)/python -c "from logitlab._jit import warm; warm(processes=2)"
KERNEL_SOURCES := src/logitlab/_kernel_cache.py src/logitlab/_kernel_exp.py src/logitlab/_kernels.py \
                  src/logitlab/_model_kernels.py src/logitlab/_jit.py
# What the kernels need, as pyproject.toml pins it: `make test` installs these first and
# compiles the kernels (importing logitlab from src/) while pip installs the rest.
KERNEL_DEPS := $(shell grep -oE '"(numpy|numba|llvmlite)[<>=!~ ][^"]*"' pyproject.toml)
PYTEST_ARGS ?= src tests  # e.g. make test-fast PYTEST_ARGS=tests/test_cli.py

# $(call step,MESSAGE,COMMAND[,LOG]): print MESSAGE, append COMMAND's output to $(LOG); on failure
# name the log and print its last lines.
# $(3), if given, is the log instead (steps that run at the same time write to their own).
step = @echo "$(1)"; { $(2); } >>$(or $(3),$(LOG)) 2>&1 || { \
  echo "make: '$(1)' failed; the whole output is in $(or $(3),$(LOG)), which ends:"; \
  tail -n 25 $(or $(3),$(LOG)); exit 1; }

.PHONY: demo test test-fast warm browser local-chromium clean

$(BIN)/python:
	@mkdir -p $(VENV)
	$(call step,creating $(VENV),$(PYTHON) -m venv $(VENV))

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(call step,installing logitlab (log: $(LOG)),$(BIN)/python $(PIP) -e .)
	@touch $@ $(VENV)/.kernel-deps

$(VENV)/.kernel-deps: pyproject.toml | $(BIN)/python
	$(call step,installing numpy and numba (log: $(LOG)),$(BIN)/python $(PIP) $(KERNEL_DEPS))
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(VENV)/.kernel-deps
	$(call step,installing logitlab with its test extras (log: $(LOG)),\
	  $(BIN)/python $(PIP) -e '.[test]')
	@touch $(VENV)/.installed $(VENV)/.kernel-deps $@

# The demo never loads the Numba kernels (small arrays; its figure's grid in pieces); they go into their
# disk cache after it, in the background (about 25 s on two cores), for later processes.
demo: $(VENV)/.installed
	$(BIN)/logitlab demo
	@if [ ! -f $(VENV)/.warmed ] || [ -n "$$(find $(KERNEL_SOURCES) -newer $(VENV)/.warmed)" ]; \
	then echo "compiling kernels into the cache in the background (log: $(VENV)/warm.log)"; \
	  nohup nice $(FLOCK) sh -c '$(WARM) && touch $(VENV)/.warmed' >$(VENV)/warm.log 2>&1 & \
	fi

# (its own log: pip may be writing to $(LOG) at the same time)
$(VENV)/.warmed: $(KERNEL_SOURCES) | $(VENV)/.kernel-deps
	$(call step,compiling kernels into the cache (log: $(VENV)/warm.log),\
	  $(FLOCK) env PYTHONPATH=src $(WARM),$(VENV)/warm.log)
	@touch $@

warm: $(VENV)/.warmed

# The explorer's test drives Chromium. Where chromium and chromedriver are not on PATH (or
# LOCAL_CHROMIUM=1), Debian's packages and the libraries missing from the system are
# extracted into .venv/chromium (apt-get download + dpkg -x; apt's lists live there too):
# no system package is installed, upgraded or configured. Without apt-get the test is
# skipped with a line saying so; CI (.ci/run) sets LOGITLAB_REQUIRE_BROWSER=1, which fails it.
browser: | $(BIN)/python
	@if [ -z "$(LOCAL_CHROMIUM)" ] && command -v chromium >/dev/null \
	    && command -v chromedriver >/dev/null; then :; \
	elif [ -x $(VENV)/chromium/bin/chromium ]; then :; \
	elif ! command -v apt-get >/dev/null || ! command -v dpkg >/dev/null; then \
	  echo "no chromium and chromedriver on PATH, and no apt-get to fetch them into $(VENV):" \
	    "the explorer's browser test will be skipped (put them on PATH to run it)"; \
	else $(MAKE) --no-print-directory local-chromium; fi

local-chromium:
	$(call step,extracting Debian's chromium into $(VENV)/chromium (log: $(CHROMIUM_LOG)),\
	  sh tools/chromium-into-venv.sh $(VENV)/chromium,$(CHROMIUM_LOG))

# pytest finds the project's own Chromium through PATH. Its two processes keep both cores
# busy (each holds BLAS to one thread, tests/conftest.py); the processes the tests start
# (the CLI, Dask's workers, ...) run OpenBLAS's two threads, whose idle one then sleeps at
# once instead of spinning (2**28 cycles, taking a core from the other pytest process): the
# suite took 11-16 s less, warm, in alternating runs.
TEST_ENV := PATH="$(CURDIR)/$(VENV)/chromium/bin:$$PATH" OPENBLAS_THREAD_TIMEOUT=4

# Chromium is fetched, and the kernels compile, while pip installs (about 25 s saved).
test: | $(BIN)/python
	@$(MAKE) -j3 --no-print-directory browser $(VENV)/.installed-test $(VENV)/.warmed
	$(TEST_ENV) $(BIN)/python -m pytest -n 2 -q $(PYTEST_ARGS)

test-fast: $(VENV)/.installed-test $(VENV)/.warmed
	$(TEST_ENV) $(BIN)/python -m pytest -n 2 -q -m "not slow" $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) logitlab-demo .pytest_cache .hypothesis
