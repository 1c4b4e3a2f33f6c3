# pyloop: `make test` and `make bench` do all set-up themselves (system
# packages, virtualenvs, the build) on a fresh Debian machine.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

MAIN_VENV := .venv
PYTEST_ARGS ?=

.PHONY: test bench build sysdeps asan cpython-suite clean wheel-check wheel-test

sysdeps:
	@tools/sysdeps.sh

# The main interpreter (3.11) venv with test and bench extras.
build: sysdeps
	@read -r v py < <(tools/pythons.sh | head -n 1); \
	 tools/venv.sh "$$py" $(MAIN_VENV) test,bench

# pytest and the CPython-suite runner on every supported interpreter present.
test: sysdeps
	@fail=0; ran=0; \
	 while read -r v py; do \
	   venv=.venv-$$v; [ "$$v" = 3.11 ] && venv=$(MAIN_VENV); \
	   echo "=== Python $$v ($$py) -> $$venv"; \
	   tools/venv.sh "$$py" "$$venv" test; ran=$$((ran+1)); \
	   "$$venv/bin/python" -m pytest -q -p no:cacheprovider $(PYTEST_ARGS) tests || fail=1; \
	   if [ -f tests/cpython/run_suite.py ]; then \
	     "$$venv/bin/python" tests/cpython/run_suite.py || fail=1; \
	   fi; \
	 done < <(tools/pythons.sh); \
	 [ $$ran -gt 0 ] || { echo "no supported Python (3.11-3.13) found"; exit 1; }; \
	 exit $$fail

cpython-suite: build
	$(MAIN_VENV)/bin/python tests/cpython/run_suite.py

bench: build
	PYLOOP_BENCH=1 tools/sysdeps.sh
	$(MAIN_VENV)/bin/python benchmarks/run.py $${BENCH_ARGS:---callgrind}
	$(MAIN_VENV)/bin/python benchmarks/run_net.py $${BENCH_NET_ARGS:-}
	$(MAIN_VENV)/bin/python benchmarks/run_apps.py $${BENCH_APPS_ARGS:-}

# A wheel builds from the tree (what `pip wheel .` does).
wheel-check: build
	rm -rf build/wheel && $(MAIN_VENV)/bin/python -m pip wheel -q --no-deps -w build/wheel . && ls build/wheel

# The release build (sdist + wheel with libuv inside, auditwheel) and the wheel on a fresh Debian 12
# without libuv (root; docs/release.md).
wheel-test: sysdeps
	tools/wheel_test.sh

# AddressSanitizer + UBSan build in its own venv, then the pytest suite with the
# sanitizer runtime preloaded (CPython itself is not instrumented).
asan: sysdeps
	@read -r v py < <(tools/pythons.sh | head -n 1); \
	 tools/asan.sh "$$py" .venv-asan $(PYTEST_ARGS)

clean:
	rm -rf build dist *.egg-info pyloop/*.so .venv-asan
