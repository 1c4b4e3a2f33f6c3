"""aiofiles (file operations run in the loop's default executor) on pyloop and
on the stdlib loop, on real files in a temporary directory."""
import asyncio
import os

import aiofiles
import aiofiles.os
import aiofiles.tempfile


def test_write_read_iterate(loop, tmp_path):
    path = tmp_path / "data.txt"
    lines = [f"line {i} {'x' * (i % 50)}\n" for i in range(2000)]

    async def main():
        async with aiofiles.open(path, "w") as f:
            for line in lines:
                await f.write(line)
        async with aiofiles.open(path) as f:
            whole = await f.read()
        async with aiofiles.open(path) as f:
            iterated = [line async for line in f]
        async with aiofiles.open(path, "rb") as f:
            await f.seek(5)
            head = await f.read(4)
            pos = await f.tell()
        async with aiofiles.open(path, "a") as f:
            await f.write("appended\n")
        return whole, iterated, head, pos

    whole, iterated, head, pos = loop.run_until_complete(main())
    assert whole == "".join(lines)
    assert iterated == lines
    assert (head, pos) == (b"0 \nl", 9)  # bytes 5-8 of "line 0 \nline 1 ..."
    assert path.read_text().endswith("appended\n")


def test_os_functions(loop, tmp_path):
    async def main():
        src = tmp_path / "a.bin"
        async with aiofiles.open(src, "wb") as f:
            await f.write(os.urandom(1000))
        size = (await aiofiles.os.stat(src)).st_size
        await aiofiles.os.rename(src, tmp_path / "b.bin")
        await aiofiles.os.mkdir(tmp_path / "sub")
        listing = sorted(await aiofiles.os.listdir(tmp_path))
        exists_before = await aiofiles.os.path.exists(tmp_path / "b.bin")
        await aiofiles.os.remove(tmp_path / "b.bin")
        exists_after = await aiofiles.os.path.exists(tmp_path / "b.bin")
        return size, listing, exists_before, exists_after

    size, listing, before, after = loop.run_until_complete(main())
    assert size == 1000
    assert listing == ["b.bin", "sub"]
    assert before and not after


def test_concurrent_files_and_tempfile(loop, tmp_path):
    """Twenty files written and read back concurrently (many executor jobs in
    flight at once), and a NamedTemporaryFile round trip."""
    async def one(i):
        p = tmp_path / f"f{i}"
        data = bytes([i]) * (10000 + i)
        async with aiofiles.open(p, "wb") as f:
            await f.write(data)
        async with aiofiles.open(p, "rb") as f:
            return await f.read() == data

    async def main():
        ok = await asyncio.gather(*(one(i) for i in range(20)))
        async with aiofiles.tempfile.NamedTemporaryFile("w+", dir=tmp_path) as f:
            await f.write("temporary")
            await f.seek(0)
            text = await f.read()
            name = f.name
        return ok, text, os.path.exists(name)

    ok, text, still_there = loop.run_until_complete(main())
    assert ok == [True] * 20
    assert text == "temporary"
    assert not still_there
