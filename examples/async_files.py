"""Async files with aiofiles: write, read, iterate line by line, append, and
work on several files at once. (aiofiles runs the blocking file calls in the
loop's default thread pool, so the loop stays free meanwhile.)

    python examples/async_files.py [--loop asyncio] [--dir DIR] [--files pyloop.fs]

--files pyloop.fs runs the same code on pyloop.fs instead, imported under
aiofiles' name: on pyloop each call is a libuv fs request in C on libuv's
thread pool; on another loop pyloop.fs uses the loop's default executor.

The files go into a new temporary directory, removed at the end, unless --dir
names one to keep them in.
"""
import asyncio
import json
import os
import tempfile

import _loop
import aiofiles
import aiofiles.os

LINES = [f"line {i}: {'*' * i}" for i in range(1, 6)]


async def write_and_read(directory):
    path = os.path.join(directory, "notes.txt")
    async with aiofiles.open(path, "w") as f:
        for line in LINES:
            await f.write(line + "\n")
    print(f"wrote {len(LINES)} lines, {(await aiofiles.os.stat(path)).st_size} bytes")

    async with aiofiles.open(path) as f:
        text = await f.read()
    print(f"read back whole: {text == ''.join(line + chr(10) for line in LINES)}")

    print("line by line:")
    async with aiofiles.open(path) as f:
        async for line in f:
            print(f"  {line.rstrip()}")

    async with aiofiles.open(path, "a") as f:
        await f.write("appended\n")
    async with aiofiles.open(path) as f:
        lines = await f.readlines()
    print(f"after append: {len(lines)} lines, last {lines[-1].strip()!r}")

    async with aiofiles.open(path, "rb") as f:
        await f.seek(5)
        print(f"binary, from offset 5: {await f.read(4)!r}")


async def many_files(directory):
    # Write 10 JSON files concurrently, then read them all back concurrently.
    async def save(i):
        path = os.path.join(directory, f"record-{i:02}.json")
        async with aiofiles.open(path, "w") as f:
            await f.write(json.dumps({"id": i, "square": i * i}))
        return path

    async def load(path):
        async with aiofiles.open(path) as f:
            return json.loads(await f.read())

    paths = await asyncio.gather(*(save(i) for i in range(10)))
    records = await asyncio.gather(*(load(p) for p in paths))
    print(f"10 files written and read concurrently: squares {[r['square'] for r in records]}")

    names = sorted(await aiofiles.os.listdir(directory))
    print(f"directory has {len(names)} files: {names[0]} .. {names[-1]}")
    for path in paths:
        await aiofiles.os.remove(path)
    print(f"removed the records, left: {sorted(await aiofiles.os.listdir(directory))}")
    print(f"exists after remove: {await aiofiles.os.path.exists(paths[0])}")


async def missing_file(directory):
    try:
        async with aiofiles.open(os.path.join(directory, "nope.txt")) as f:
            await f.read()
    except FileNotFoundError as exc:
        print(f"opening a missing file raises {type(exc).__name__} (errno {exc.errno})")


async def main(directory):
    if directory is None:
        with tempfile.TemporaryDirectory(prefix="pyloop-files-") as tmp:
            return await main(tmp)
    await write_and_read(directory)
    await many_files(directory)
    await missing_file(directory)


if __name__ == "__main__":
    ap = _loop.parser(__doc__.splitlines()[0])
    ap.add_argument("--dir", help="an existing directory to write into")
    ap.add_argument("--files", choices=["aiofiles", "pyloop.fs"], default="aiofiles",
                    help="the file library (default: aiofiles)")
    args = ap.parse_args()
    if args.files == "pyloop.fs":
        import pyloop.fs as aiofiles  # noqa: F811 (the drop-in switch this shows)
    _loop.run(lambda: main(args.dir), args)
