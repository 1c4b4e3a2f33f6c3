"""Example 7: PostgreSQL from asyncio on pyloop, with asyncpg and with
SQLAlchemy 2's asyncio ORM.

    python examples/database.py                      # pyloop, a throwaway server
    python examples/database.py --loop asyncio       # the same on the stdlib loop
    python examples/database.py --dsn postgresql://user@host:5432/db
    PYLOOP_PG_DSN=postgresql://... python examples/database.py

Without --dsn or $PYLOOP_PG_DSN it starts a PostgreSQL server of its own in a
temporary directory (examples/_pg.py, the helper the integration tests use;
it needs Debian's `postgresql` package) and removes it at the end. With a DSN
it creates and drops two tables, pyloop_example_note and pyloop_example_tag.

Needs: pip install asyncpg 'sqlalchemy[asyncio]'
"""
import argparse
import asyncio
import os
import sys

import asyncpg
from sqlalchemy import ForeignKey, func, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, selectinload

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import pyloop  # noqa: E402  (from this checkout when run from it)

NOTE, TAG = "pyloop_example_note", "pyloop_example_tag"


async def with_asyncpg(dsn):
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP TABLE IF EXISTS {TAG}, {NOTE}")
        await conn.execute(f"""
            CREATE TABLE {NOTE} (
                id serial PRIMARY KEY,
                text text NOT NULL,
                done boolean NOT NULL DEFAULT false)""")
        print(f"asyncpg: created table {NOTE}")

        # INSERT ... RETURNING hands back the row the server made.
        for text in ("buy milk", "write tests", "ship it"):
            row = await conn.fetchrow(
                f"INSERT INTO {NOTE} (text) VALUES ($1) RETURNING id, done", text)
            print(f"asyncpg: inserted id={row['id']} done={row['done']} {text!r}")

        one = await conn.fetchrow(f"SELECT id, text FROM {NOTE} WHERE text = $1", "write tests")
        print(f"asyncpg: fetched one: id={one['id']} {one['text']!r}")
        rows = await conn.fetch(f"SELECT id, text FROM {NOTE} ORDER BY id")
        print(f"asyncpg: fetched all: {[(r['id'], r['text']) for r in rows]}")

        # A transaction commits on leaving the block, rolls back on an error.
        async with conn.transaction():
            await conn.execute(f"UPDATE {NOTE} SET done = true WHERE id = $1", one["id"])
        try:
            async with conn.transaction():
                await conn.execute(f"DELETE FROM {NOTE}")
                raise RuntimeError("changed my mind")
        except RuntimeError:
            pass
        done = await conn.fetch(f"SELECT id FROM {NOTE} WHERE done ORDER BY id")
        count = await conn.fetchval(f"SELECT count(*) FROM {NOTE}")
        print(f"asyncpg: transaction committed (done ids {[r['id'] for r in done]}), "
              f"the second rolled back ({count} rows still there)")
    finally:
        await conn.close()

    # A pool: eight queries at once on at most four connections.
    async with asyncpg.create_pool(dsn, min_size=1, max_size=4) as pool:
        async def backend_of(i):
            async with pool.acquire() as c:
                return await c.fetchval("SELECT pg_backend_pid() FROM pg_sleep(0.05)")

        pids = await asyncio.gather(*(backend_of(i) for i in range(8)))
        print(f"asyncpg: pool ran 8 queries on {len(set(pids))} connections "
              f"(max_size {pool.get_max_size()})")


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = NOTE
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str]
    done: Mapped[bool] = mapped_column(default=False)
    tags: Mapped[list["Tag"]] = relationship(back_populates="note", cascade="all, delete-orphan")


class Tag(Base):
    __tablename__ = TAG
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]
    note_id: Mapped[int] = mapped_column(ForeignKey(f"{NOTE}.id"))
    note: Mapped[Note] = relationship(back_populates="tags")


def sqlalchemy_url(dsn):
    scheme, rest = dsn.split("://", 1)
    if scheme not in ("postgres", "postgresql"):
        raise SystemExit(f"not a postgresql:// DSN: {dsn}")
    return "postgresql+asyncpg://" + rest


async def with_sqlalchemy(dsn):
    engine = create_async_engine(sqlalchemy_url(dsn), pool_size=4)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
            await conn.run_sync(Base.metadata.create_all)
        print(f"sqlalchemy: created tables {NOTE}, {TAG}")
        Session = async_sessionmaker(engine, expire_on_commit=False)

        async with Session() as session, session.begin():  # one transaction
            note = Note(text="learn the ORM", tags=[Tag(name="python"), Tag(name="sql")])
            session.add_all([note, Note(text="read the docs")])
        print(f"sqlalchemy: inserted note id={note.id} with tags "
              f"{sorted(t.name for t in note.tags)}")

        async with Session() as session:
            first = await session.scalar(
                select(Note).options(selectinload(Note.tags)).where(Note.text == "learn the ORM"))
            print(f"sqlalchemy: fetched one: id={first.id} {first.text!r} "
                  f"tags={sorted(t.name for t in first.tags)}")
            notes = (await session.scalars(select(Note).order_by(Note.id))).all()
            print(f"sqlalchemy: fetched all: {[(n.id, n.text) for n in notes]}")

        try:
            async with Session() as session, session.begin():
                (await session.get(Note, first.id)).done = True
                session.add(Tag(name="orphan", note_id=10_000))  # no such note: fails at commit
        except Exception as exc:  # the foreign key violation, via SQLAlchemy
            print(f"sqlalchemy: transaction rolled back ({type(exc).__name__})")
        async with Session() as session:
            done = await session.scalar(select(func.count()).select_from(Note).where(Note.done))
            tags = await session.scalar(select(func.count()).select_from(Tag))
        print(f"sqlalchemy: after the rollback {done} notes done, {tags} tags")

        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)
    finally:
        await engine.dispose()


async def main(dsn):
    loop = asyncio.get_running_loop()
    print(f"loop: {type(loop).__module__}.{type(loop).__qualname__}")
    await with_asyncpg(dsn)
    await with_sqlalchemy(dsn)
    print("done")


def run(coro, loop_name):
    factory = pyloop.new_event_loop if loop_name == "pyloop" else asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--loop", choices=("pyloop", "asyncio"), default="pyloop")
    ap.add_argument("--dsn", default=os.environ.get("PYLOOP_PG_DSN"),
                    help="postgresql://user@host:port/db (default $PYLOOP_PG_DSN, "
                         "else a throwaway server)")
    args = ap.parse_args()
    if args.dsn:
        print("postgres: the server at the given DSN")
        run(main(args.dsn), args.loop)
    else:
        from _pg import TempPostgres  # examples/_pg.py, next to this file
        with TempPostgres() as pg:
            print(f"postgres: a throwaway server in {pg.tmp}")
            run(main(pg.dsn), args.loop)
        print("postgres: stopped and removed")
