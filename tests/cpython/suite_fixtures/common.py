import asyncio


def on_pyloop():
    """Whether asyncio.new_event_loop() gives a pyloop loop here."""
    loop = asyncio.new_event_loop()
    try:
        return type(loop).__module__.split(".")[0] == "pyloop"
    finally:
        loop.close()
