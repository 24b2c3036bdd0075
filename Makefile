# The two commands a new user needs:  make demo   and   make test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS := dev,beam
comma := ,
# The stamp names the extras, so that a .venv set up with fewer of them is brought up to date.
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: demo test lint setup stubs wheel clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/jointspace demo

# pytest exits 5 when it collects nothing: that is a failure here, said in plain words.
# Two workers, a test file each at a time (its module fixtures built once): most tests wait on a
# server or a child process, so two cores run two files at once. Files go out in collection order
# (the longest test first: tests/conftest.py), not xdist's largest-file-first. TEST_WORKERS=0 runs
# in one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder || { rc=$$?; [ $$rc -ne 5 ] || echo "make test: pytest collected no tests" >&2; exit $$rc; }

# The lint and type gate (pyproject.toml [tool.ruff], [tool.mypy]): no formatter runs here.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python tools/typecheck.py

stubs: $(STAMP)
	$(BIN)/python tools/stubs.py clients/python

wheel: $(STAMP)
	$(BIN)/pip wheel --no-deps -w dist .

clean:
	rm -rf $(VENV) build dist *.egg-info jointspace-demo
