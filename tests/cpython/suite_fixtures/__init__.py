"""Small unittest modules that run_suite.py's own tests (test_run_suite.py) run
in place of CPython's test_asyncio, each outcome on purpose."""
