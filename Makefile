# Everything a fresh machine needs: `make run` and `make test` create .venv themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test bench bench-instructions lint sdist-check clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "iomodels needs Python 3.11+; set PYTHON=python3.11 (or newer)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,locust,dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/iomodels compare --quick --out report

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

# user-space instructions per request under callgrind: deterministic where throughput is noise
bench-instructions: $(STAMP)
	$(BIN)/python benchmarks/instructions.py --out benchmarks/results/instructions.txt $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

# the sdist must hold what a user needs to run the tests: build it, unpack it, run a smoke of them
sdist-check: $(STAMP)
	rm -rf build/sdist && mkdir -p build/sdist
	$(BIN)/python -m build --sdist --outdir build/sdist . > build/sdist/build.log
	tar -xzf build/sdist/iomodels-*.tar.gz -C build/sdist
	cd build/sdist/iomodels-*/ && test -f LICENSE && test -d docs && test -f benchmarks/c/echo_epoll.c \
		&& PYTHONPATH=src $(CURDIR)/$(BIN)/python -m pytest -q -p no:cacheprovider \
		tests/test_service.py tests/test_layout.py tests/conformance -k "epoll and not edge or service or layout"

clean:
	rm -rf $(VENV) report build src/*.egg-info
