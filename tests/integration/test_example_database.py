"""examples/database.py as a real subprocess on each loop: with the session's
server through --dsn and through $PYLOOP_PG_DSN, and once starting its own
throwaway server."""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "examples", "database.py")
LOOP_CLASS = {"pyloop": "pyloop.loop.Loop", "asyncio": "asyncio.unix_events._UnixSelectorEventLoop"}
EXPECTED = """\
asyncpg: created table pyloop_example_note
asyncpg: inserted id=1 done=False 'buy milk'
asyncpg: inserted id=2 done=False 'write tests'
asyncpg: inserted id=3 done=False 'ship it'
asyncpg: fetched one: id=2 'write tests'
asyncpg: fetched all: [(1, 'buy milk'), (2, 'write tests'), (3, 'ship it')]
asyncpg: transaction committed (done ids [2]), the second rolled back (3 rows still there)
asyncpg: pool ran 8 queries on 4 connections (max_size 4)
sqlalchemy: created tables pyloop_example_note, pyloop_example_tag
sqlalchemy: inserted note id=1 with tags ['python', 'sql']
sqlalchemy: fetched one: id=1 'learn the ORM' tags=['python', 'sql']
sqlalchemy: fetched all: [(1, 'learn the ORM'), (2, 'read the docs')]
sqlalchemy: transaction rolled back (IntegrityError)
sqlalchemy: after the rollback 0 notes done, 2 tags
done
""".splitlines()


def run_example(*args, env=None):
    proc = subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    return proc.stdout.splitlines()


@pytest.mark.parametrize("loop_name", sorted(LOOP_CLASS))
def test_with_dsn(pg, loop_name):
    out = run_example("--loop", loop_name, "--dsn", pg.dsn)
    assert out == ["postgres: the server at the given DSN", f"loop: {LOOP_CLASS[loop_name]}",
                   *EXPECTED]


def test_dsn_from_environment_default_loop(pg):
    """No --loop: pyloop; the DSN from $PYLOOP_PG_DSN."""
    out = run_example(env={"PYLOOP_PG_DSN": pg.dsn})
    assert out[:2] == ["postgres: the server at the given DSN", f"loop: {LOOP_CLASS['pyloop']}"]
    assert out[2:] == EXPECTED


def test_starts_its_own_server(pg):
    """Without a DSN the example starts a server, and removes its directory
    at the end. (`pg` only ensures the binaries exist, or skips.)"""
    env = {k: v for k, v in os.environ.items() if k != "PYLOOP_PG_DSN"}
    proc = subprocess.run([sys.executable, SCRIPT, "--loop", "pyloop"], capture_output=True,
                          text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    m = re.fullmatch(r"postgres: a throwaway server in (/\S+)", out[0])
    assert m, out[0]
    assert out[1:] == [f"loop: {LOOP_CLASS['pyloop']}", *EXPECTED, "postgres: stopped and removed"]
    assert not os.path.exists(m.group(1))
