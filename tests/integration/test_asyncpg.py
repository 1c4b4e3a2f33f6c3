"""asyncpg against a real PostgreSQL server (the session's `pg` fixture), on
pyloop and on the stdlib loop."""
import asyncio
import datetime
import decimal
import json
import uuid

import asyncpg
import pytest


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, 60))


def test_crud(loop, pg, table_name):
    async def main():
        conn = await asyncpg.connect(pg.dsn)
        try:
            await conn.execute(f"CREATE TABLE {table_name} (id serial PRIMARY KEY, name text NOT NULL,"
                               " score int)")
            ids = [await conn.fetchval(f"INSERT INTO {table_name} (name, score) VALUES ($1, $2)"
                                       " RETURNING id", name, score)
                   for name, score in (("ada", 3), ("bob", 5), ("cy", 8))]
            status = await conn.execute(f"UPDATE {table_name} SET score = score * 10 WHERE score > $1", 4)
            deleted = await conn.execute(f"DELETE FROM {table_name} WHERE name = $1", "ada")
            rows = await conn.fetch(f"SELECT id, name, score FROM {table_name} ORDER BY id")
            one = await conn.fetchrow(f"SELECT name FROM {table_name} WHERE id = $1", ids[2])
            missing = await conn.fetchrow(f"SELECT name FROM {table_name} WHERE id = $1", -1)
            return ids, status, deleted, [tuple(r) for r in rows], one["name"], missing
        finally:
            await conn.execute(f"DROP TABLE IF EXISTS {table_name}")
            await conn.close()

    ids, status, deleted, rows, one, missing = run(loop, main())
    assert ids == [1, 2, 3]
    assert status == "UPDATE 2"
    assert deleted == "DELETE 1"
    assert rows == [(2, "bob", 50), (3, "cy", 80)]
    assert one == "cy"
    assert missing is None


def test_unix_socket_and_types(loop, pg):
    """Over the server's Unix socket; values of several types round-trip."""
    values = (None, 12345678901234, decimal.Decimal("3.14159"), "żółw", b"\x00\xff",
              [1, 2, 3], {"k": [1, None]}, uuid.UUID(int=7),
              datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc))

    async def main():
        conn = await asyncpg.connect(host=pg.socket_dir, port=pg.port, user=pg.user)
        try:
            await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads,
                                      schema="pg_catalog")
            return await conn.fetchrow(
                "SELECT $1::int, $2::bigint, $3::numeric, $4::text, $5::bytea, $6::int[],"
                " $7::jsonb, $8::uuid, $9::timestamptz", *values)
        finally:
            await conn.close()

    assert tuple(run(loop, main())) == values


def test_pool_runs_queries_concurrently(loop, pg):
    """Four pg_sleep(0.3) on a pool of four connections overlap: they are
    seen running at the same time in pg_stat_activity."""
    async def main():
        async with asyncpg.create_pool(pg.dsn, min_size=2, max_size=4) as pool:
            seen = []

            async def sleeper():
                async with pool.acquire() as conn:
                    return await conn.fetchval("SELECT pg_backend_pid() FROM pg_sleep(0.5)")

            async def watcher(conn):
                for _ in range(100):
                    n = await conn.fetchval("SELECT count(*) FROM pg_stat_activity"
                                            " WHERE query LIKE '%FROM pg_sleep(0.5)'"
                                            " AND state = 'active' AND pid <> pg_backend_pid()")
                    seen.append(n)
                    if n == 4:
                        return
                    await asyncio.sleep(0.02)

            other = await asyncpg.connect(pg.dsn)
            try:
                pids, _ = await asyncio.gather(asyncio.gather(*(sleeper() for _ in range(4))),
                                               watcher(other))
            finally:
                await other.close()
            return len(set(pids)), max(seen), pool.get_size()

    distinct, most_seen, size = run(loop, main())
    assert distinct == 4
    assert most_seen == 4
    assert size == 4


def test_pool_reuses_connections(loop, pg):
    async def main():
        async with asyncpg.create_pool(pg.dsn, min_size=1, max_size=1) as pool:
            pids = [await pool.fetchval("SELECT pg_backend_pid()") for _ in range(5)]
            async with pool.acquire() as conn:
                in_tx = []
                async with conn.transaction():
                    in_tx.append(await conn.fetchval("SELECT pg_backend_pid()"))
            return pids, in_tx

    pids, in_tx = run(loop, main())
    assert len(set(pids + in_tx)) == 1


def test_prepared_statements(loop, pg):
    async def main():
        conn = await asyncpg.connect(pg.dsn)
        try:
            stmt = await conn.prepare("SELECT $1::int * 2 AS doubled, $2::text || '!' AS shout")
            types = [(a.name, a.type.name) for a in stmt.get_attributes()]
            params = [t.name for t in stmt.get_parameters()]
            rows = [tuple(await stmt.fetchrow(i, s)) for i, s in ((1, "a"), (21, "b"))]
            many = await stmt.fetch(5, "x")
            series = await conn.prepare("SELECT g FROM generate_series(1, $1::int) g")
            async with conn.transaction():
                streamed = [r["g"] async for r in series.cursor(1000, prefetch=64)]
            return types, params, rows, tuple(many[0]), streamed
        finally:
            await conn.close()

    types, params, rows, many, streamed = run(loop, main())
    assert types == [("doubled", "int4"), ("shout", "text")]
    assert params == ["int4", "text"]
    assert rows == [(2, "a!"), (42, "b!")]
    assert many == (10, "x!")
    assert streamed == list(range(1, 1001))


def test_transaction_rolls_back_on_error(loop, pg, table_name):
    async def main():
        conn = await asyncpg.connect(pg.dsn)
        try:
            await conn.execute(f"CREATE TABLE {table_name} (v int UNIQUE)")
            async with conn.transaction():
                await conn.execute(f"INSERT INTO {table_name} VALUES (1)")
            with pytest.raises(asyncpg.UniqueViolationError):
                async with conn.transaction():
                    await conn.execute(f"INSERT INTO {table_name} VALUES (2)")
                    await conn.execute(f"INSERT INTO {table_name} VALUES (1)")
            return [r["v"] for r in await conn.fetch(f"SELECT v FROM {table_name}")]
        finally:
            await conn.execute(f"DROP TABLE IF EXISTS {table_name}")
            await conn.close()

    assert run(loop, main()) == [1]


def test_listen_notify(loop, pg):
    async def main():
        listener = await asyncpg.connect(pg.dsn)
        sender = await asyncpg.connect(pg.dsn)
        got = asyncio.Queue()
        try:
            def on_notify(conn, pid, channel, payload):
                got.put_nowait((pid, channel, payload))

            await listener.add_listener("jobs", on_notify)
            sender_pid = sender.get_server_pid()
            await sender.execute("NOTIFY jobs, 'first'")
            await sender.execute("SELECT pg_notify('jobs', $1)", "second")
            async with sender.transaction():
                await sender.execute("NOTIFY jobs, 'in-tx'")
            received = [await asyncio.wait_for(got.get(), 10) for _ in range(3)]
            await listener.remove_listener("jobs", on_notify)
            await sender.execute("NOTIFY jobs, 'after removal'")
            # A round trip on the listener connection: anything sent before it
            # would have been delivered by now.
            await listener.fetchval("SELECT 1")
            return sender_pid, received, got.qsize()
        finally:
            await listener.close()
            await sender.close()

    sender_pid, received, left = run(loop, main())
    assert received == [(sender_pid, "jobs", "first"), (sender_pid, "jobs", "second"),
                        (sender_pid, "jobs", "in-tx")]
    assert left == 0


@pytest.mark.parametrize("how", ["wait_for", "task.cancel"])
def test_cancel_running_query(loop, pg, how):
    """A pg_sleep(30) cancelled from the client side stops on the server
    (asyncpg sends a cancel request) and the connection stays usable."""
    async def main():
        conn = await asyncpg.connect(pg.dsn)
        watcher = await asyncpg.connect(pg.dsn)
        try:
            pid = conn.get_server_pid()
            if how == "wait_for":
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(conn.fetchval("SELECT pg_sleep(30)"), 0.3)
            else:
                task = asyncio.ensure_future(conn.fetchval("SELECT pg_sleep(30)"))
                for _ in range(500):  # until the server runs it
                    state = await watcher.fetchval(
                        "SELECT state FROM pg_stat_activity WHERE pid = $1", pid)
                    if state == "active":
                        break
                    await asyncio.sleep(0.01)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            after = await conn.fetchval("SELECT 40 + 2")
            state = await watcher.fetchval("SELECT state FROM pg_stat_activity WHERE pid = $1", pid)
            return after, state, conn.is_closed()
        finally:
            await conn.close()
            await watcher.close()

    after, state, closed = run(loop, main())
    assert after == 42
    assert not closed
    # the server is no longer running the sleep: the connection is idle
    assert state == "idle"


def test_copy_records_to_table(loop, pg, table_name):
    records = [(i, f"name-{i}", i * 0.5) for i in range(5000)]

    async def main():
        conn = await asyncpg.connect(pg.dsn)
        try:
            await conn.execute(f"CREATE TABLE {table_name} (id int, name text, x float8)")
            status = await conn.copy_records_to_table(table_name, records=records,
                                                      columns=["id", "name", "x"])
            back = await conn.fetch(f"SELECT id, name, x FROM {table_name} ORDER BY id")
            return status, [tuple(r) for r in back]
        finally:
            await conn.execute(f"DROP TABLE IF EXISTS {table_name}")
            await conn.close()

    status, back = run(loop, main())
    assert status == "COPY 5000"
    assert back == records
