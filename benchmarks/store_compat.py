"""What opsgraph relies on in the embedded store, checked on whichever ArcadeDB package runs it.

    python benchmarks/store_compat.py [--wal-nodes 50000]

Starts a throw-away embedded server (fresh temp home), prints the package, Bolt agent and
protocol, one line per Cypher feature that graph/queries.py uses, the error two transactions
get when they MERGE the same new key under a unique constraint, and whether committed nodes
survive a SIGKILL. Run it in each virtualenv (.venv: arcadedb-jvm, .venv-released:
arcadedb-embedded) and compare; docs/embedded-store.md records the results.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

from neo4j import GraphDatabase
from neo4j.exceptions import Neo4jError

from opsgraph.graph.embedded import ROOT_USER, EmbeddedServer, find_runtime
from opsgraph.graph.settings import Settings

# One probe per feature, each answering with a value that says it worked as on Neo4j.
FEATURES: list[tuple[str, str, dict, object]] = [
    (
        "UNWIND + MERGE + SET +=",
        "UNWIND $rows AS r MERGE (n:P {k: r.k}) SET n += r.p RETURN count(n) AS v",
        {"rows": [{"k": 1, "p": {"x": 1}}, {"k": 2, "p": {"x": 2}}]},
        2,
    ),
    ("OPTIONAL MATCH + coalesce", "OPTIONAL MATCH (n:Nope) RETURN coalesce(n.x, 7) AS v", {}, 7),
    (
        "variable-length path",
        "CREATE (a:P {k: 10})-[:R]->(:P {k: 11})-[:R]->(c:P {k: 12}) "
        "WITH a MATCH p = (a)-[:R*1..3]->(x) RETURN max(length(p)) AS v",
        {},
        2,
    ),
    (
        "shortestPath",
        "MATCH (a:P {k: 10}), (c:P {k: 12}) "
        "MATCH p = shortestPath((a)-[:R*..5]->(c)) RETURN length(p) AS v",
        {},
        2,
    ),
    (
        "nodes()/relationships()/type()",
        "MATCH p = (:P {k: 10})-[:R*2]->() "
        "RETURN [size(nodes(p)), size(relationships(p)), type(relationships(p)[0])] AS v",
        {},
        [3, 2, "R"],
    ),
    ("EXISTS { } subquery", "MATCH (a:P {k: 10}) RETURN EXISTS { (a)-[:R]->(:P) } AS v", {}, True),
    (
        "CALL { } subquery",
        "MATCH (a:P {k: 10}) CALL { WITH a MATCH (a)-[:R]->(b) "
        "RETURN count(b) AS c } RETURN c AS v",
        {},
        1,
    ),
    ("COUNT { } subquery", "MATCH (a:P {k: 10}) RETURN COUNT { (a)-[:R]->() } AS v", {}, 1),
    (
        "datetime arithmetic",
        "RETURN datetime('2026-12-02T10:00:00Z') + duration('PT90M') "
        "> datetime('2026-12-02T11:00:00Z') AS v",
        {},
        True,
    ),
    (
        "duration.between in seconds",
        "RETURN duration.between(datetime('2026-12-02T10:00:00Z'), "
        "datetime('2026-12-02T11:30:00Z')).seconds AS v",
        {},
        5400,
    ),
    ("datetime parameter round trip", "RETURN $t AS v", {"t": "placeholder"}, None),
    ("list/map properties", "CREATE (n:P {k: 20, xs: [1, 2, 3]}) RETURN n.xs AS v", {}, [1, 2, 3]),
    (
        "properties()/keys()/labels()",
        "MATCH (n:P {k: 1}) RETURN [labels(n)[0], properties(n).x, size(keys(n))] AS v",
        {},
        ["P", 1, 2],
    ),
    (
        "CASE + collect + ORDER BY/LIMIT",
        "MATCH (n:P) WITH n ORDER BY n.k LIMIT 2 "
        "RETURN collect(CASE WHEN n.k = 1 THEN 'one' ELSE 'other' END) AS v",
        {},
        ["one", "other"],
    ),
    ("SHOW INDEXES", "SHOW INDEXES YIELD name RETURN count(*) >= 0 AS v", {}, True),
]


def check_features(driver, database: str) -> None:
    from datetime import UTC, datetime

    stamp = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
    for name, query, params, expected in FEATURES:
        if name == "datetime parameter round trip":
            params, expected = {"t": stamp}, stamp
        try:
            records, _, _ = driver.execute_query(query, params, database_=database)
            value = records[0]["v"]
            if hasattr(value, "to_native"):
                value = value.to_native()
            verdict = "ok" if value == expected else f"DIFFERS: {value!r} (Neo4j: {expected!r})"
        except Neo4jError as error:
            verdict = f"ERROR {error.code}: {str(error.message)[:100]}"
        print(f"  {name:<32}{verdict}")


def merge_race(driver, database: str, rounds: int = 20) -> None:
    """Two transactions MERGE the same new key at once, ``rounds`` times; tally outcomes."""
    driver.execute_query(
        "CREATE CONSTRAINT race_k IF NOT EXISTS FOR (n:Race) REQUIRE n.k IS UNIQUE",
        database_=database,
    )
    outcomes: dict[str, int] = {}
    lock = threading.Lock()
    for round_ in range(rounds):
        barrier = threading.Barrier(2)

        def one(key: str = f"K-{round_}", barrier: threading.Barrier = barrier) -> None:
            with driver.session(database=database) as session:
                tx = session.begin_transaction()
                try:
                    barrier.wait()
                    tx.run("MERGE (n:Race {k: $k}) SET n.at = timestamp()", k=key).consume()
                    time.sleep(0.05)  # both have merged before either commits
                    tx.commit()
                    outcome = "committed"
                except Neo4jError as error:
                    outcome = error.code or type(error).__name__
                finally:
                    tx.close()
            with lock:
                outcomes[outcome] = outcomes.get(outcome, 0) + 1

        threads = [threading.Thread(target=one) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    records, _, _ = driver.execute_query(
        "MATCH (n:Race) RETURN count(n) AS n, count(DISTINCT n.k) AS d", database_=database
    )
    print(f"  {rounds} races, outcomes per transaction: {outcomes}")
    print(f"  nodes {records[0]['n']}, distinct keys {records[0]['d']} (no duplicates if equal)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wal-nodes", type=int, default=50_000)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="opsgraph-compat-"))
    settings = Settings(home=home)
    server = EmbeddedServer(settings)
    try:
        runtime = find_runtime()
        started = time.perf_counter()
        state = server.start()
        print(f"package: {runtime.label}; Studio: {'yes' if runtime.has_studio else 'no'}")
        print(f"start to Bolt answering: {time.perf_counter() - started:.1f} s")
        database = server.database
        with GraphDatabase.driver(state.bolt_uri, auth=(ROOT_USER, server.password)) as driver:
            info = driver.get_server_info()
            print(
                f"Bolt: agent {info.agent!r}, protocol {'.'.join(map(str, info.protocol_version))}"
            )
            print("Cypher features used by graph/queries.py:")
            check_features(driver, database)
            print("MERGE race under a unique constraint:")
            merge_race(driver, database)
            rows = [{"k": i} for i in range(args.wal_nodes)]
            for start in range(0, len(rows), 5000):
                driver.execute_query(
                    "UNWIND $rows AS r CREATE (:Wal {k: r.k})",
                    rows=rows[start : start + 5000],
                    database_=database,
                )
        os.kill(state.pid, signal.SIGKILL)
        while server._alive(state.pid):
            time.sleep(0.05)
        started = time.perf_counter()
        state = server.start()
        restart = time.perf_counter() - started
        with GraphDatabase.driver(state.bolt_uri, auth=(ROOT_USER, server.password)) as driver:
            records, _, _ = driver.execute_query(
                "MATCH (n:Wal) RETURN count(n) AS n", database_=database
            )
        print(
            f"WAL: {records[0]['n']} of {args.wal_nodes} committed nodes after SIGKILL "
            f"and restart ({restart:.1f} s)"
        )
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
