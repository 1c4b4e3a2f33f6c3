# pyloop: `make test` and `make bench` do all set-up themselves (system
# packages, virtualenvs, the build) on a fresh Debian machine.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test

MAIN_VENV := .venv
PYTEST_ARGS ?=

.PHONY: test bench build sysdeps pythons asan cpython-suite clean wheel-check wheel-test

sysdeps:
	@tools/sysdeps.sh

# The main interpreter (3.11) venv with test and bench extras.
build: sysdeps
	@read -r v py < <(tools/pythons.sh | head -n 1); \
	 tools/venv.sh "$$py" $(MAIN_VENV) test,bench

# The interpreters the machine lacks: Python 3.14 and 3.15 in a Debian unstable
# chroot (tools/sid.sh), a free-threaded 3.14t built once into pyenv's folder
# (tools/freethreaded.sh). Both are cached; a no-op once there.
pythons: sysdeps
	@tools/sid.sh setup
	@tools/freethreaded.sh

# pytest, the CPython-suite runner and the own-code check on every supported
# interpreter (tools/test_python.sh; PYLOOP_PYTHONS="3.11 3.14" picks some).
test: sysdeps pythons
	@fail=0; ran=0; \
	 while read -r v py; do \
	   venv=.venv-$$v; [ "$$v" = 3.11 ] && venv=$(MAIN_VENV); \
	   ran=$$((ran+1)); \
	   PYTEST_ARGS="$(PYTEST_ARGS)" tools/test_python.sh "$$v" "$$py" "$$venv" </dev/null || fail=1; \
	 done < <(tools/pythons.sh); \
	 [ $$ran -gt 0 ] || { echo "no supported Python found"; exit 1; }; \
	 exit $$fail

cpython-suite: build
	$(MAIN_VENV)/bin/python tests/cpython/run_suite.py

# The benchmarks on 3.11 and 3.14 by default (BENCH_PYTHONS picks others).
BENCH_PYTHONS ?= 3.11 3.14
bench: sysdeps pythons
	PYLOOP_BENCH=1 tools/sysdeps.sh
	@for v in $(BENCH_PYTHONS); do tools/bench_python.sh "$$v" </dev/null || exit 1; done

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
