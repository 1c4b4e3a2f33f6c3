import atexit
import os
import signal
import unittest

from .common import on_pyloop


class ExitCrash(unittest.TestCase):
    def test_pass(self):
        if on_pyloop():
            atexit.register(os.kill, os.getpid(), signal.SIGABRT)
