"""The one way opsgraph talks to its graph: the neo4j driver over Bolt, to Neo4j or the
embedded ArcadeDB, with errors translated into messages a user can act on."""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

from neo4j import (
    READ_ACCESS,
    AsyncGraphDatabase,
    AsyncSession,
    Driver,
    GraphDatabase,
    ManagedTransaction,
)
from neo4j.exceptions import (
    AuthError,
    ClientError,
    ConstraintError,
    Neo4jError,
    ServiceUnavailable,
)

from . import queries
from .embedded import ROOT_USER, EmbeddedServer
from .settings import Settings

T = TypeVar("T")

_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MERGE_RACE_CODE = "Neo.ClientError.Schema.ConstraintValidationFailed"
MERGE_RACE_ATTEMPTS = 6


class StoreError(RuntimeError):
    """Something went wrong talking to the graph store; the message says what to do."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or refused our credentials."""


class ConstraintViolation(StoreError):
    """A write broke a uniqueness constraint (a business key used twice)."""


class Rows(list):
    """A list parameter whose ``repr`` is its length. The driver (neo4j 6.1, ``Bolt5x2.run``)
    formats ``repr`` of every query's parameters for a debug line even when debug logging is
    off: for a writer batch of 5,000 rows that was ~10 ms, ~5 % of an ingest's Python. The
    driver sends a list subclass as a list."""

    def __repr__(self) -> str:
        return f"<{len(self)} rows>"


class Store:
    """A driver plus the database to use; with ``AsyncStore`` (its reads for an event loop),
    the only owner of sessions and transactions."""

    def __init__(
        self,
        driver: Driver,
        database: str | None,
        description: str,
        address: tuple[str, Any] | None = None,
    ) -> None:
        self.driver = driver
        self.database = database
        self.description = description
        self.address = address  # (URI, auth): what an AsyncStore needs to connect as well

    @classmethod
    def open(cls, settings: Settings) -> Store:
        """Connect to the configured Neo4j, or start the embedded server on demand."""
        if settings.embedded:
            server = EmbeddedServer(settings)
            state = server.start()
            uri, auth = state.bolt_uri, (ROOT_USER, server.password)
            description = f"embedded ArcadeDB {state.bolt_uri} database {server.database}"
        else:
            uri = settings.uri
            auth = (settings.user, settings.password) if settings.password else None
            description = f"{settings.uri} database {settings.database_name or '(default)'}"
        driver = GraphDatabase.driver(uri, auth=auth)
        store = cls(driver, settings.database_name, description, (uri, auth))
        # Fail fast: managed transactions would retry an unreachable server for 30 s.
        with store._translated():
            driver.verify_connectivity()
        return store

    def close(self) -> None:
        self.driver.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- running Cypher ----------------------------------------------------------------------

    def read(self, query: str, **params: Any) -> list[dict[str, Any]]:
        """Run a read query and return its records as dicts.

        An auto-commit query: one round trip (RUN and PULL pipelined) where a managed read
        transaction adds BEGIN and COMMIT, which doubled the cost of the API's small reads.
        A read changes nothing, so a failed connection is simply tried again once.

        Records become dicts of their values as decoded: queries return scalars, lists and
        map projections, so the driver's recursive ``Record.data()`` conversion (a third of
        the cost of reading a page of nodes) has nothing to do; a node or relationship
        returned whole stays the driver's object, which reads like a mapping.
        """
        for attempt in (1, 2):
            try:
                with (
                    self._translated(),
                    self.driver.session(
                        database=self.database, default_access_mode=READ_ACCESS
                    ) as session,
                ):
                    result = session.run(query, params)
                    keys = result.keys()  # a record is a tuple: zipped, not looked up by key
                    return [dict(zip(keys, r, strict=True)) for r in result]
            except StoreUnavailable:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def write(self, query: str, **params: Any) -> list[dict[str, Any]]:
        """Run one write query in its own transaction and return its records."""
        return self.transaction(lambda tx: [r.data() for r in tx.run(query, params)])

    def transaction(self, work: Callable[[ManagedTransaction], T], merge_batch: bool = False) -> T:
        """Run ``work`` in one write transaction.

        The driver already retries transient errors. ``merge_batch=True`` also retries a
        uniqueness error, which the embedded store raises when two writers MERGE the same new
        key at once (Neo4j blocks instead); MERGE is idempotent, so the retry is safe.
        """
        for attempt in range(1, MERGE_RACE_ATTEMPTS + 1):
            try:
                with self._translated(), self.driver.session(database=self.database) as session:
                    return session.execute_write(work)
            except ConstraintViolation as error:
                if not merge_batch or attempt == MERGE_RACE_ATTEMPTS:
                    raise
                if getattr(error.__cause__, "code", None) != MERGE_RACE_CODE:
                    raise
                time.sleep(random.uniform(0.01, 0.05) * 2**attempt)  # noqa: S311 - jitter only
        raise AssertionError("unreachable")

    def _translated(self) -> _Translator:
        return _Translator(self.description)


class AsyncStore:
    """The same store's reads for one event loop (the API server's), on the driver's asyncio
    flavour: a resolver awaits its query instead of handing it to a thread. A thread per
    query cost the API a third of its CPU under load (the threads and the event loop
    contend for the interpreter lock); the async driver is bound to the loop it is used on,
    so each loop gets its own (``opsgraph serve`` makes one at startup)."""

    # Reads at most in one statement. The store runs a statement on one thread, so much
    # bigger groups serialise what its cores did in parallel (32 a statement: 184-245
    # requests/s at 16 clients where 2 gave 269-304); 3 against 2, three server processes
    # each fed alternately (one process alone differs from another by up to 15 %): deep
    # query at 16 clients 466 against 427 requests/s, p95 41 against 45 ms, one client alike.
    TOGETHER = 3

    def __init__(self, store: Store) -> None:
        if store.address is None:
            raise StoreError("this store was not opened with Store.open: no address to reuse")
        uri, auth = store.address
        self.driver = AsyncGraphDatabase.driver(uri, auth=auth)
        self.database = store.database
        self.description = store.description
        self._combine = True
        self._columns: dict[str, tuple[str, ...]] = {}  # per read query, learnt when run alone
        self._waiting: list[tuple[str, dict[str, Any], asyncio.Future]] = []
        self._sending: set[asyncio.Task] = set()
        self._idle: list[AsyncSession] = []  # sessions between statements, see round_trip

    async def read(self, query: str, **params: Any) -> list[dict[str, Any]]:
        """As ``Store.read``. Reads asked for within two turns of the event loop (the
        DataLoaders of one level of a GraphQL query, or of other requests in flight) go to
        the store ``TOGETHER`` in one statement (``queries.together``): a round trip costs
        the driver ~0.3 ms of CPU (~25 % of a deep query's, profiled). Two turns, not one:
        loaders fed by the same answer (a deviation's causes' suppliers and its decisions' outcomes)
        ask a turn apart, and waiting that turn sends them in one round trip, not two.
        A read in a statement of its own is sent in the same form, its rows collected into
        one record: the async driver spends ~25 µs of CPU on each record it receives, so a
        page of 50 rows took 2.0-2.6 ms of CPU as 50 records and 0.9-1.2 ms as one.
        A read goes as written the first time (its columns are learnt then) and whenever
        the store cannot take the combined statement (then it is not tried again)."""
        loop = asyncio.get_running_loop()
        answer = loop.create_future()
        self._waiting.append((query, params, answer))
        if len(self._waiting) == 1:
            loop.call_soon(loop.call_soon, self._send)
        return await answer

    def _send(self) -> None:
        waiting, self._waiting = self._waiting, []
        task = asyncio.ensure_future(self._answer(waiting))
        self._sending.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._sending.discard)

    async def _answer(self, waiting: list[tuple[str, dict[str, Any], asyncio.Future]]) -> None:
        known, jobs = [], []
        for read in waiting:
            if self._combine and read[0] in self._columns:
                known.append(read)
            else:
                jobs.append(self._alone(*read))
        for start in range(0, len(known), self.TOGETHER):
            jobs.append(self._together(known[start : start + self.TOGETHER]))
        await asyncio.gather(*jobs)

    async def _alone(self, query: str, params: dict[str, Any], answer: asyncio.Future) -> None:
        try:
            rows, columns = await self.round_trip(query, params)
        except Exception as error:
            if not answer.done():
                answer.set_exception(error)
            return
        # ArcadeDB names no columns for an empty answer: learnt from one, the read would be
        # combined as ``collect({})`` and its rows come back as empty maps
        if columns and all(_PLAIN.fullmatch(column) for column in columns):
            self._columns[query] = columns
        if not answer.done():
            answer.set_result(rows)

    async def _together(self, waiting: list[tuple[str, dict[str, Any], asyncio.Future]]) -> None:
        try:  # whatever fails, every read still gets an answer or its error
            statement = queries.together([(q, self._columns[q]) for q, _, _ in waiting])
            params = {
                f"r{i}_{name}": value
                for i, (_, given, _) in enumerate(waiting)
                for name, value in given.items()
            }
            rows, _ = await self.round_trip(statement, params)
        except Exception as error:  # each alone again, so each gets its own answer or error
            await asyncio.gather(*(self._alone(*w) for w in waiting))
            answered = [a for _, _, a in waiting if a.done() and not a.cancelled()]
            if isinstance(error.__cause__, ClientError) and not any(
                a.exception() for a in answered
            ):
                self._combine = False  # each is fine alone: this store refuses the statement
            return
        parts = {row["part"]: row["rows"] for row in rows}
        for i, (_, _, answer) in enumerate(waiting):
            if not answer.done():
                answer.set_result(parts.get(i, []))

    async def round_trip(
        self, query: str, params: dict[str, Any]
    ) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
        """One auto-commit statement and its columns, tried again once if the connection
        failed. Sessions are kept for the next statement: making one (its configuration,
        its workspace) was ~10 % of the driver's CPU per statement; the server's deep
        query went 6 % faster from one client and 16 clients (three server processes each
        way, fed alternately). A session whose statement failed is closed, not kept."""
        for attempt in (1, 2):
            session = self._idle.pop() if self._idle else self._session()
            try:
                with _Translator(self.description):
                    result = await session.run(query, params)
                    keys = tuple(result.keys())
                    rows = [dict(zip(keys, r, strict=True)) async for r in result]
            except Exception as error:
                await _discard(session)
                if isinstance(error, StoreUnavailable) and attempt == 1:
                    continue
                raise
            # a cancelled statement's session is not kept: the driver killed its connection
            self._idle.append(session)
            return rows, keys
        raise AssertionError("unreachable")

    def _session(self) -> AsyncSession:
        return self.driver.session(database=self.database, default_access_mode=READ_ACCESS)

    async def close(self) -> None:
        while self._idle:
            await self._idle.pop().close()
        await self.driver.close()


async def _discard(session: AsyncSession) -> None:
    """Close a session whose statement failed; the statement's error is the one to report,
    not a second one from closing its broken connection."""
    with contextlib.suppress(Exception):
        await session.close()


class _Translator:
    """Turns driver exceptions into StoreErrors that say what happened and where."""

    def __init__(self, description: str) -> None:
        self.description = description

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> bool:
        if exc is None or isinstance(exc, StoreError):
            return False
        if isinstance(exc, ConstraintError):
            raise ConstraintViolation(
                f"uniqueness constraint violated on {self.description}: {exc.message}"
            ) from exc
        if isinstance(exc, AuthError):
            raise StoreUnavailable(
                f"{self.description} refused the credentials; check OPSGRAPH_USER/OPSGRAPH_PASSWORD"
            ) from exc
        if isinstance(exc, ServiceUnavailable | OSError):
            raise StoreUnavailable(
                f"cannot reach {self.description}: {exc}. Is it running? (`opsgraph db status`)"
            ) from exc
        if isinstance(exc, Neo4jError):
            raise StoreError(
                f"{self.description} rejected a query: {exc.code}: {exc.message}"
            ) from exc
        return False
