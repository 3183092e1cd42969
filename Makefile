# symspike — set-up, tests and demo.
#
#   make demo    create .venv if needed and run `symspike demo` on the embedded MNIST subset
#   make test    create .venv if needed and run the pytest suite (2 workers)
#   make clean   remove build outputs (keeps .venv; `make distclean` removes it too)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

# Full datasets for the tests: use ../shared/datasets when it exists and SYMSPIKE_DATA is unset.
ifeq ($(origin SYMSPIKE_DATA),undefined)
  ifneq ($(wildcard ../shared/datasets/.),)
    TEST_DATA := SYMSPIKE_DATA=$(abspath ../shared/datasets)
  endif
endif

.PHONY: all venv test demo clean distclean

all: test

venv: $(STAMP)

$(VENV): $(STAMP)

# The stamp depends on pyproject.toml, so editing dependencies re-installs.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -e '.[test,bench]'
	touch $@

test: $(STAMP)
	$(TEST_DATA) $(BIN)/python -m pytest -q -n 2 --durations=20 tests

# The demo runs on the embedded default data: SYMSPIKE_DATA is removed from its environment.
demo: $(STAMP)
	env -u SYMSPIKE_DATA $(BIN)/symspike demo

clean:
	rm -rf build dist sim_build runs out .pytest_cache *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} + 
	find . -path ./$(VENV) -prune -o \( -name '*.vcd' -o -name '*.fst' \) -type f -exec rm -f {} +

distclean: clean
	rm -rf $(VENV)
