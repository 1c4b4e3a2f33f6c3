import asyncio
import unittest

from .common import on_pyloop


def tearDownModule():
    asyncio.set_event_loop_policy(None)


class Sample(unittest.TestCase):
    def test_pass(self):
        on_pyloop()

    def test_no_loop(self):
        pass

    def test_fails_on_pyloop(self):
        self.assertFalse(on_pyloop(), "marker: only pyloop")

    def test_fails_everywhere(self):
        self.fail("marker: both loops")

    def test_subtest_fails_on_pyloop(self):
        bad = 1 if on_pyloop() else -1
        for i in range(3):
            with self.subTest(i=i):
                self.assertNotEqual(i, bad, "marker: subtest")

    def test_error_in_cleanup_on_pyloop(self):
        if on_pyloop():
            self.addCleanup(lambda: 1 / 0)

    def test_known(self):
        self.assertFalse(on_pyloop(), "marker: known")

    def test_stale(self):
        pass

    @unittest.skip("marker: skipped")
    def test_skip(self):
        pass


class Isolated(unittest.IsolatedAsyncioTestCase):
    async def test_loop_type(self):
        # The loop IsolatedAsyncioTestCase runs on is the one under test.
        loop = asyncio.get_running_loop()
        self.assertEqual(type(loop).__module__.split(".")[0] == "pyloop", on_pyloop())


class BrokenClass(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if on_pyloop():
            raise RuntimeError("marker: setUpClass")

    def test_in_broken_class(self):
        pass
