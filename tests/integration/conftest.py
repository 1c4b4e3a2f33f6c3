"""Fixtures for the integration tests: real applications and servers on the
loop under test (the `loop`/`loop_factory` fixtures of tests/conftest.py run
each test on pyloop and on the stdlib loop).

`pg` is one throwaway PostgreSQL server for the whole run, started from the
same helper examples/database.py uses (examples/_pg.py)."""
import importlib.util
import os
import sys
import uuid

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples")


def _load_pg_helper():
    if "_pg" not in sys.modules:
        spec = importlib.util.spec_from_file_location("_pg", os.path.join(EXAMPLES, "_pg.py"))
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules["_pg"] = module
    return sys.modules["_pg"]


pg_helper = _load_pg_helper()


@pytest.fixture(scope="session")
def pg():
    """A running TempPostgres (dsn, socket_dir, port), stopped and its
    directory removed at the end of the session. Without server binaries the
    PostgreSQL tests are skipped, except under CI, where that is a set-up
    failure (`make test` installs them through tools/sysdeps.sh)."""
    try:
        server = pg_helper.TempPostgres()
    except pg_helper.PostgresUnavailable as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def table_name(loop_name):
    """A table name of its own for a test, so tests on both loops and reruns
    never see each other's rows."""
    return f"t_{loop_name}_{uuid.uuid4().hex[:10]}"
