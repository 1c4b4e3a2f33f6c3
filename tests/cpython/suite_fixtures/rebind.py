import asyncio
import unittest


class OwnLoop(unittest.TestCase):
    """Builds its loop itself, as test_events' SelectEventLoopTests does."""

    def create_event_loop(self):
        return asyncio.SelectorEventLoop()

    def test_loop_kind(self):
        loop = self.create_event_loop()
        try:
            # Written to show which loop ran: the outcome says it.
            self.assertEqual(type(loop).__module__.split(".")[0], "asyncio")
        finally:
            loop.close()


class OwnLoopTwin(OwnLoop):
    """The same tests again on another selector: dropped."""
