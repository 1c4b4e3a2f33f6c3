import os
import signal
import unittest

from .common import on_pyloop


class Crash(unittest.TestCase):
    def test_a_before(self):
        pass

    def test_b_crash(self):
        if on_pyloop():
            os.kill(os.getpid(), signal.SIGSEGV)

    def test_c_between(self):
        pass

    def test_d_abort(self):
        if on_pyloop():
            os.abort()

    def test_e_after(self):
        pass
