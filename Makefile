# leadstream: `make demo` runs the main job on an embedded default; `make test` runs the tests.
# Both create or refresh .venv from pyproject.toml first, so a fresh clone needs nothing else,
# and compile the hot modules with mypyc into .native/ (leadstream/native.py): without a C
# compiler everything runs as the Python sources, with the same results.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NATIVE := .native/.built

.PHONY: venv native test demo bench ab clean

venv: $(STAMP)

# Reinstall whenever pyproject.toml changes; the stamp records the last install.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --quiet -e '.[test,native]'
	@touch $(STAMP)

# Recompile when any engine or flow source changes (about 45 s on 2 cores). Runs check the
# sources' digests themselves, so a stale build is never used, only slower to replace.
native: $(NATIVE)

# The stamp takes the time the build started: a source edited while it ran is newer, and the
# next make builds again (a stamp touched at the end hid such an edit, and runs went pure Python).
# It is named by the recipe's shell, so two makes at once (`make ab` beside `make bench`) do not
# move each other's.
$(NATIVE): $(STAMP) $(wildcard engine/*.py flows/*.py) leadstream/native.py
	@started=$(VENV)/.native-started.$$$$; touch $$started && $(VENV)/bin/leadstream native build \
		&& mkdir -p .native && mv $$started $(NATIVE); status=$$?; rm -f $$started; exit $$status

test: $(NATIVE)
	$(PY) -m pytest -q
	# The same engine tests on the Python sources: what runs without a C compiler.
	LEADSTREAM_PURE=1 $(PY) -m pytest -q tests/engine

demo: $(NATIVE)
	$(VENV)/bin/leadstream demo

bench: $(NATIVE)
	$(PY) -m benchmarks.run

# Two versions side by side: `make ab` is HEAD against the working tree; `make ab AB="HEAD~1 HEAD --instructions"`.
ab: $(NATIVE)
	$(PY) -m benchmarks.ab $(AB)

clean:
	rm -rf $(VENV) demo .pytest_cache .native
