# The two commands a new user needs:  make demo   and   make test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
EXTRAS := dev,beam
comma := ,
# The stamp names the extras, so that a .venv set up with fewer of them is brought up to date.
STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: demo test setup stubs wheel clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/jointspace demo

# pytest exits 5 when it collects nothing: that is a failure here, said in plain words.
# tests/test_write_faults.py injects real I/O errors with libfiu where `fiu-run` exists: install it
# when apt-get can (root), else say that those tests will be skipped.
test: $(STAMP)
	@command -v fiu-run >/dev/null 2>&1 || apt-get install -y -q fiu-utils >/dev/null 2>&1 || \
		echo "make test: fiu-run is not installed (apt-get install fiu-utils): the libfiu tests are skipped" >&2
	$(BIN)/python -m pytest || { rc=$$?; [ $$rc -ne 5 ] || echo "make test: pytest collected no tests" >&2; exit $$rc; }

stubs: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I protos --python_out=. --pyi_out=. --grpc_python_out=. \
		protos/jointspace/v1/jointspace.proto

wheel: $(STAMP)
	$(BIN)/pip wheel --no-deps -w dist .

clean:
	rm -rf $(VENV) build dist *.egg-info jointspace-demo
