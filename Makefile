# Two commands set everything up on a fresh machine with only python3:
#   make demo       -- create .venv, install logitlab, run its main job
#   make test       -- create .venv, install logitlab with test extras, run the whole suite
#   make test-fast  -- the same without the tests marked slow (the edit-run loop)
# Nothing is installed or changed outside this folder: the venv, Numba's kernel cache
# (src/logitlab/__pycache__) and the explorer test's Chromium (.venv/chromium) live here.
# Each step prints one line; installers' output goes to .venv/install.log, named (and its
# tail printed) when a step fails.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
LOG    := $(VENV)/install.log
# Two processes compiling the kernels at once would do the work twice: the second waits.
FLOCK  := $(shell command -v flock >/dev/null && echo flock $(VENV)/warm.lock)
WARM   := $(BIN)/python -c "from logitlab._jit import warm; warm()"
KERNEL_SOURCES := src/logitlab/_kernels.py src/logitlab/_jit.py

# $(call step,MESSAGE,COMMAND): print MESSAGE, append COMMAND's output to $(LOG); on failure
# name the log and print its last lines.
step = @echo "$(1)"; { $(2); } >>$(LOG) 2>&1 || { \
  echo "make: '$(1)' failed; the whole output is in $(LOG), which ends:"; \
  tail -n 25 $(LOG); exit 1; }

.PHONY: demo test test-fast warm browser clean

$(BIN)/python:
	@mkdir -p $(VENV)
	$(call step,creating $(VENV),$(PYTHON) -m venv $(VENV))

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(call step,installing logitlab (log: $(LOG)),$(BIN)/python -m pip install -e .)
	@touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(call step,installing logitlab with its test extras (log: $(LOG)),\
	  $(BIN)/python -m pip install -e '.[test]')
	@touch $(VENV)/.installed $@

# The demo's arrays (2000 x 4) never load the Numba kernels; they are compiled into their
# disk cache after it, in the background (about 70 s on two cores), for later processes.
demo: $(VENV)/.installed
	$(BIN)/logitlab demo
	@if [ ! -f $(VENV)/.warmed ] || [ -n "$$(find $(KERNEL_SOURCES) -newer $(VENV)/.warmed)" ]; \
	then echo "compiling kernels into the cache in the background (log: $(VENV)/warm.log)"; \
	  nohup nice $(FLOCK) sh -c '$(WARM) && touch $(VENV)/.warmed' >$(VENV)/warm.log 2>&1 & \
	fi

$(VENV)/.warmed: $(KERNEL_SOURCES) | $(VENV)/.installed
	$(call step,compiling kernels into the cache,$(FLOCK) $(WARM))
	@touch $@

warm: $(VENV)/.warmed

# The explorer's test drives Chromium. Where chromium and chromedriver are not on PATH (or
# LOCAL_CHROMIUM=1), Debian's packages and the libraries missing from the system are
# extracted into .venv/chromium (apt-get download + dpkg -x; apt's lists live there too):
# no system package is installed, upgraded or configured.
browser: | $(BIN)/python
	@if [ -z "$(LOCAL_CHROMIUM)" ] && command -v chromium >/dev/null \
	    && command -v chromedriver >/dev/null; then :; \
	elif [ -x $(VENV)/chromium/bin/chromium ]; then :; \
	else $(MAKE) --no-print-directory local-chromium; fi

local-chromium:
	$(call step,extracting Debian's chromium into $(VENV)/chromium (log: $(LOG)),\
	  sh tools/chromium-into-venv.sh $(VENV)/chromium)

# pytest finds the project's own Chromium through PATH.
TEST_PATH := PATH="$(CURDIR)/$(VENV)/chromium/bin:$$PATH"

test: $(VENV)/.installed-test browser $(VENV)/.warmed
	$(TEST_PATH) LOGITLAB_REQUIRE_BROWSER=1 $(BIN)/python -m pytest -n 2 -q src tests

test-fast: $(VENV)/.installed-test $(VENV)/.warmed
	$(TEST_PATH) $(BIN)/python -m pytest -n 2 -q -m "not slow" src tests

clean:
	rm -rf $(VENV) logitlab-demo .pytest_cache .hypothesis
