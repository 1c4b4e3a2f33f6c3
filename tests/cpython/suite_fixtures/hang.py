import time
import unittest

from .common import on_pyloop


class Hang(unittest.TestCase):
    def test_a_before(self):
        pass

    def test_b_hang(self):
        if on_pyloop():
            time.sleep(600)

    def test_c_after(self):
        pass
