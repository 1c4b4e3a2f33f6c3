"""pyloop/_stdlib.py: what pyloop takes from the running Python's asyncio is
listed there, all of it exists on this Python, and a missing name is a loud
ImportError naming it and the version, never a silently missing feature."""
import asyncio
import sys
import types

import pytest

import pyloop
from pyloop import _stdlib


def test_every_listed_method_is_the_stdlibs_own():
    taken = _stdlib.methods()
    assert len(taken) == len({n for _, names in _stdlib.METHODS for n in names})
    for name, function in taken.items():
        assert getattr(pyloop.Loop, name) is function, name
        assert function.__module__.startswith("asyncio."), name


def test_a_missing_method_fails_the_import_with_its_name(monkeypatch):
    class Owner:
        pass
    monkeypatch.setattr(_stdlib, "METHODS", ((Owner, ("gone_in_this_version",)),))
    with pytest.raises(ImportError) as info:
        _stdlib.methods()
    text = str(info.value)
    assert "Owner.gone_in_this_version" in text
    assert "%d.%d.%d" % sys.version_info[:3] in text


def test_a_missing_helper_fails_the_import_with_its_name(monkeypatch):
    module = types.ModuleType("asyncio.fake")
    monkeypatch.setattr(_stdlib, "HELPERS", ((module, "_helper", (3, 0), None, "a test"),))
    with pytest.raises(ImportError, match=r"asyncio\.fake\._helper"):
        _stdlib.check_helpers()
    # a helper listed for other versions only is not asked for
    monkeypatch.setattr(_stdlib, "HELPERS", ((module, "_helper", (2, 0), (2, 7), "a test"),))
    _stdlib.check_helpers()


def test_helpers_of_this_version_exist():
    _stdlib.check_helpers()


def test_the_attributes_the_borrowed_methods_use_exist():
    loop = pyloop.new_event_loop()
    try:
        for name in _stdlib.ATTRIBUTES:
            assert hasattr(loop, name), name
    finally:
        loop.close()


def test_nothing_listed_is_also_defined_by_pyloop():
    # The table is exact: a name pyloop defines itself is not "taken".
    own = {n for n, v in vars(pyloop.Loop).items()
           if not (callable(v) and getattr(v, "__module__", "").startswith("asyncio."))}
    assert not own & set(_stdlib.methods())


def test_run_until_complete_adds_the_stdlibs_done_callback():
    # Libraries look for base_events._run_until_complete_cb on the future.
    from asyncio import base_events
    seen = []

    async def main():
        task = asyncio.current_task()
        seen.append(base_events._run_until_complete_cb in
                    [cb for cb, _ctx in task._callbacks])
    loop = pyloop.new_event_loop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert seen == [True]
