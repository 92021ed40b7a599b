"""One graph store per test session: the embedded ArcadeDB on free loopback ports in a temp
directory, or the Neo4j that OPSGRAPH_URI points at (the same tests, the same Cypher)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from opsgraph.graph.constraints import apply_schema
from opsgraph.graph.embedded import EmbeddedServer
from opsgraph.graph.settings import Settings
from opsgraph.graph.store import Store
from opsgraph.graph.writer import BulkWriter


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    if os.environ.get("OPSGRAPH_URI"):
        if os.environ.get("OPSGRAPH_TEST_WIPE") != "yes":
            pytest.exit(
                "OPSGRAPH_URI is set: the tests delete every node in that database. "
                "Point it at a scratch database and set OPSGRAPH_TEST_WIPE=yes.",
                returncode=2,
            )
        yield Settings.from_env()
        return
    settings = Settings(home=tmp_path_factory.mktemp("opsgraph-home"))
    server = EmbeddedServer(settings)
    server.start()
    yield settings
    server.stop()


@pytest.fixture(scope="session")
def session_store(settings: Settings) -> Iterator[Store]:
    store = Store.open(settings)
    apply_schema(store)
    yield store
    store.close()


@pytest.fixture
def store(session_store: Store) -> Store:
    """The session's store, emptied before each test so tests do not see each other's data."""
    session_store.write("MATCH (n) DETACH DELETE n")
    return session_store


@pytest.fixture
def writer(store: Store) -> BulkWriter:
    return BulkWriter(store, batch_size=500)
