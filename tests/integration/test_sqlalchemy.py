"""SQLAlchemy 2's asyncio ORM over asyncpg against the session's PostgreSQL,
on pyloop and on the stdlib loop. SQLAlchemy drives asyncpg from greenlets,
so every query goes through the loop from inside a greenlet switch."""
import asyncio

import pytest
from sqlalchemy import ForeignKey, String, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncAttrs, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, selectinload


def make_models(prefix):
    """Fresh mapped classes on tables named after the test, so the tests on
    each loop have tables of their own."""
    class Base(AsyncAttrs, DeclarativeBase):
        pass

    class Author(Base):
        __tablename__ = f"{prefix}_author"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(50), unique=True)
        books: Mapped[list["Book"]] = relationship(back_populates="author",
                                                   cascade="all, delete-orphan")

    class Book(Base):
        __tablename__ = f"{prefix}_book"
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str]
        pages: Mapped[int]
        author_id: Mapped[int] = mapped_column(ForeignKey(f"{prefix}_author.id"))
        author: Mapped[Author] = relationship(back_populates="books")

    return Base, Author, Book


def sa_url(pg):
    return f"postgresql+asyncpg://{pg.user}@127.0.0.1:{pg.port}/{pg.dbname}"


def test_orm_round_trip(loop, pg, table_name):
    Base, Author, Book = make_models(table_name)

    async def main():
        engine = create_async_engine(sa_url(pg), pool_size=3)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            Session = async_sessionmaker(engine, expire_on_commit=False)

            async with Session() as session, session.begin():
                session.add_all([
                    Author(name="Le Guin", books=[Book(title="The Dispossessed", pages=387),
                                                  Book(title="The Lathe of Heaven", pages=184)]),
                    Author(name="Lem", books=[Book(title="Solaris", pages=204)]),
                ])

            async with Session() as session:
                authors = (await session.scalars(
                    select(Author).options(selectinload(Author.books)).order_by(Author.name))).all()
                shelf = {a.name: sorted(b.title for b in a.books) for a in authors}
                # a lazy relationship loaded through AsyncAttrs.awaitable_attrs
                book = await session.scalar(select(Book).where(Book.title == "Solaris"))
                author_of_solaris = (await book.awaitable_attrs.author).name
                totals = (await session.execute(
                    select(Author.name, func.sum(Book.pages)).join(Book)
                    .group_by(Author.name).order_by(Author.name))).all()

            async with Session() as session, session.begin():
                lem = await session.scalar(select(Author).where(Author.name == "Lem"))
                lem.name = "Stanisław Lem"
                leguin = await session.scalar(
                    select(Author).options(selectinload(Author.books))
                    .where(Author.name == "Le Guin"))
                await session.delete(leguin)

            async with Session() as session:
                names = (await session.scalars(select(Author.name))).all()
                books_left = await session.scalar(select(func.count()).select_from(Book))

            with pytest.raises(IntegrityError):
                async with Session() as session, session.begin():
                    session.add(Author(name="Stanisław Lem"))

            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.drop_all)
            return shelf, author_of_solaris, [tuple(t) for t in totals], names, books_left
        finally:
            await engine.dispose()

    shelf, author_of_solaris, totals, names, books_left = loop.run_until_complete(
        asyncio.wait_for(main(), 60))
    assert shelf == {"Le Guin": ["The Dispossessed", "The Lathe of Heaven"], "Lem": ["Solaris"]}
    assert author_of_solaris == "Lem"
    assert totals == [("Le Guin", 571), ("Lem", 204)]
    assert names == ["Stanisław Lem"]
    assert books_left == 1


def test_concurrent_sessions(loop, pg, table_name):
    """Ten tasks each insert through their own session on a pool of three
    connections; every row arrives."""
    Base, Author, _ = make_models(table_name)

    async def main():
        engine = create_async_engine(sa_url(pg), pool_size=3, max_overflow=0)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.create_all)
            Session = async_sessionmaker(engine)

            async def add(i):
                async with Session() as session, session.begin():
                    session.add(Author(name=f"writer-{i}"))
                    await session.flush()
                    await asyncio.sleep(0.01)  # hold the connection across a loop pass

            await asyncio.gather(*(add(i) for i in range(10)))
            async with Session() as session:
                names = sorted((await session.scalars(select(Author.name))).all())
            async with engine.begin() as conn:
                await conn.run_sync(Base.metadata.drop_all)
            return names
        finally:
            await engine.dispose()

    names = loop.run_until_complete(asyncio.wait_for(main(), 60))
    assert names == sorted(f"writer-{i}" for i in range(10))
