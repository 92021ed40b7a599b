"""GraphQL API latency and throughput on the demo plant, next to the raw service functions.

    python benchmarks/graphql_api.py [--per-client 150] [--workers 2]

(Not graphql.py: run from this folder, that name would shadow the graphql-core package.)

Loads the demo plant, stores root causes for its quality deviations, serves the API with
`opsgraph serve` on a free loopback port, as a user runs it, and sends the issue's deep
query, "deviation -> causes -> evidence -> decisions", for one deviation refetched by id as
a detail page does (its stored causes with their evidence paths, the cause nodes and a
lot's suppliers, decisions, outcomes), the same for a page of ten deviations, and a list
query, from 16 concurrent clients (in a process of their own) and from one client whose
every request is followed by the same data fetched by calling graph/read.py directly in
this process: the API's overhead ratio. Then the same through `opsgraph serve --workers N`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
from _http import Connection
from _plants import DemoPlants

from opsgraph.api.app import ApiKeys
from opsgraph.graph import read
from opsgraph.graph.rca import QUALITY, RootCauseAnalyzer
from opsgraph.graph.settings import Settings
from opsgraph.schema import rel_spec

Query = tuple[str, dict[str, Any]]  # text and variables

# The deep query for one deviation, refetched by id as a detail page does: its stored
# causes with their evidence paths, the cause nodes (a lot's suppliers), decisions, outcomes.
DEEP = """query ($id: ID!) { node(id: $id) { ... on Deviation {
  deviationId severity description
  causes { rank score causeType explanation evidence { label key type direction at }
           node { id ... on MaterialLot { lotId suppliersSupplied { supplierId } } } }
  decisionsAbout { decisionId summary rationale decidedAt outcome { result description } }
} } }"""
# The same for a page of ten deviations at once (~1,300 fields a response).
DEEP10 = """{ deviations(first: 10, filter: {deviationType: "scrap"}) { nodes {
  deviationId severity description
  causes { rank score causeType explanation evidence { label key type direction at }
           node { id ... on MaterialLot { lotId suppliersSupplied { supplierId } } } }
  decisionsAbout { decisionId summary rationale decidedAt outcome { result description } }
} } }"""
LIST = "{ productionOrders(first: 50) { nodes { orderId status totalQuantity plannedStart } } }"


def detail_deviation(store) -> str:  # noqa: ANN001 - the benchmark's own helper
    """The deep query's deviation: the scrap deviation with the most decisions about it (a
    detail page worth opening), found through the read services."""
    keys = _scrap_deviations(store, 100)
    assert keys, "the demo plant has no scrap deviations"
    about = read.query_neighbours(rel_spec("Decision", "ABOUT", "Deviation"), keys, False)
    decided = about.run(store)
    return max(keys, key=lambda k: (len(decided.get(k, [])), k))


def raw_deep(store, keys: list[str]) -> int:  # noqa: ANN001
    """The deep query's data through graph/read.py, as a resolver-free baseline (the
    stored causes come with their nodes' properties, as the API reads them)."""
    causes = read.query_stored_causes(keys).run(store)
    lots = sorted(
        {
            str(c["target"])
            for found in causes.values()
            for c in found
            if c["label"] == "MaterialLot"
        }
    )
    if lots:
        supplied = rel_spec("Supplier", "SUPPLIED", "MaterialLot")
        read.query_neighbours(supplied, lots, False).run(store)
    rel = rel_spec("Decision", "ABOUT", "Deviation")
    decisions = read.query_neighbours(rel, keys, False).run(store)
    ids = [d["decision_id"] for ds in decisions.values() for d in ds]
    read.query_neighbours(rel_spec("Decision", "HAS_OUTCOME", "Outcome"), ids).run(store)
    return sum(map(len, causes.values()))


def _scrap_deviations(store, first: int = 10) -> list[str]:  # noqa: ANN001
    rows, _ = read.query_page("Deviation", first, equals={"deviation_type": "scrap"}).run(store)
    return [r["deviation_id"] for r in rows]


def raw_list(store) -> int:  # noqa: ANN001
    rows, _ = read.query_page("ProductionOrder", 50).run(store)
    return len(rows)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _request(key: str, query: Query) -> tuple[bytes, dict[str, str]]:
    """The body and headers of the query's POST."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    return json.dumps({"query": query[0], "variables": query[1]}).encode(), headers


async def _timed_post(connection: Connection, body: bytes, headers: dict[str, str]) -> float:
    """One request's latency in ms; an answer with errors stops the benchmark."""
    started = time.perf_counter()
    status, answer = await connection.post("/graphql", body, headers)
    elapsed = (time.perf_counter() - started) * 1000
    assert status == 200 and b'"errors"' not in answer, answer[:300]
    return elapsed


async def load(
    url: str, key: str, query: Query, clients: int, requests: int
) -> tuple[list[float], float]:
    body, headers = _request(key, query)
    latencies: list[float] = []
    per_client = max(1, requests // clients)

    async def client() -> None:
        connection = await Connection.open(url)
        for _ in range(per_client):
            latencies.append(await _timed_post(connection, body, headers))
        await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, len(latencies) / (time.perf_counter() - started)


def load_elsewhere(
    url: str, key: str, query: Query, clients: int, requests: int
) -> tuple[list[float], float]:
    """The clients in a process of their own, as real clients are: in this one they would
    compete with the server for the interpreter lock. They use the lean keep-alive client
    of _http.py: httpx needed more CPU per request than the server it measured."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_load_sync, (url, key, query, clients, requests))


def _load_sync(
    url: str, key: str, query: Query, clients: int, requests: int
) -> tuple[list[float], float]:
    return asyncio.run(load(url, key, query, clients, requests))


async def alternate(
    url: str,
    key: str,
    query: Query,
    raw: Callable[[Any], int],
    store,  # noqa: ANN001
    pairs: int,
) -> tuple[list[float], list[float]]:
    """One client on one keep-alive connection, each API request followed by the same
    data through the raw services: both sides of every pair are measured in the same
    milliseconds (this machine's speed drifts by 15-50 % between minutes)."""
    body, headers = _request(key, query)
    connection = await Connection.open(url)
    api, direct = [], []
    for _ in range(pairs):
        api.append(await _timed_post(connection, body, headers))
        started = time.perf_counter()
        raw(store)
        direct.append((time.perf_counter() - started) * 1000)
    await connection.close()
    return api, direct


def measure(server: str, base: str, key: str, per_client: int, store) -> None:  # noqa: ANN001
    """Each query from 1 and 16 clients. From one client, API requests and raw service calls
    alternate request by request (``alternate``), so the ratio compares figures from the
    same milliseconds. (Before: rounds of 75 requests, from a client process spawned for
    each round, alternated with rounds of raw calls; a round's first ten requests, paying
    for the new process and connection, had a p50 1-3 ms above the round's.) Every query is
    first sent as often as it is measured, uncounted: the store's JVM compiles the API's
    statements over its first few thousand requests (one-client p50 of the deep query on a
    just-started store, blocks of 300: 12.2, 9.0, 9.2, 8.1, 7.0 … 6.1 ms). From 16 clients,
    ``per_client`` requests each: p95 from a few hundred requests in under a second said
    more about one collector pause than about the server."""
    deviation = detail_deviation(store)

    def raw_one(store) -> int:  # noqa: ANN001 - the detail page reads its deviation first
        read.nodes_by_key(store, "Deviation", [deviation])
        return raw_deep(store, [deviation])

    def raw_ten(store) -> int:  # noqa: ANN001 - the page of ten reads the page first
        return raw_deep(store, _scrap_deviations(store))

    queries: list[tuple[str, Query, Callable[[Any], int]]] = [
        ("deep", (DEEP, {"id": f"Deviation:{deviation}"}), raw_one),
        ("deep10", (DEEP10, {}), raw_ten),
        ("list", (LIST, {}), raw_list),
    ]
    for _, query, raw in queries:  # warm-up, see above
        load_elsewhere(base, key, query, 16, 16 * per_client)
        for _ in range(per_client):
            raw(store)
    for name, query, raw in queries:
        latencies, direct = asyncio.run(alternate(base, key, query, raw, store, 2 * per_client))
        raw_p50 = statistics.median(direct)
        _row(server, name, 1, latencies, 1000 / statistics.mean(latencies), raw_p50)
        latencies, rate = load_elsewhere(base, key, query, 16, 16 * per_client)
        _row(server, name, 16, latencies, rate, None)


def _row(
    server: str,
    name: str,
    clients: int,
    latencies: list[float],
    rate: float,
    raw_p50: float | None,
) -> None:
    """One line of the table; the ratio only from one client, where the raw services were
    measured alongside (16 clients' latency is mostly waiting for each other)."""
    p50 = statistics.median(latencies)
    compared = f"{raw_p50:9.1f}  {p50 / raw_p50:5.2f}x" if raw_p50 is not None else ""
    print(
        f"{server:<10} {name:<7} {clients:>7} {p50:8.1f} {percentile(latencies, 0.95):8.1f} "
        f"{rate:8.1f}   {compared}",
        flush=True,
    )


class Workers:
    """`opsgraph serve [--workers N]` on a free loopback port, as a user runs it (in a
    thread of this process the server measured ~10 % slower: it shared the interpreter with
    the benchmark's own threads)."""

    def __init__(self, settings: Settings, workers: int) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.command = [
            sys.executable, "-c", "from opsgraph.api.cli import main; main()",
            "--home", str(settings.home), "--database", settings.database or "",
            "serve", "--port", str(self.port), "--workers", str(workers),
        ]  # fmt: skip

    def __enter__(self) -> str:
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    return url
            except httpx.TransportError:
                time.sleep(0.3)
        raise RuntimeError("the workers did not start")

    def __exit__(self, *exc: object) -> None:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=60)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--per-client", type=int, default=150, help="requests each of the 16 clients sends"
    )
    parser.add_argument("--workers", type=int, default=2, help="also measure serve --workers N")
    args = parser.parse_args()
    plants = DemoPlants()
    try:
        store, _ = plants.load(seed=3, scale=1.0)
        analyzer = RootCauseAnalyzer(store)
        for deviation in analyzer.deviations(kinds=QUALITY):
            analyzer.persist(analyzer.analyze(deviation))
        settings = Settings(home=plants.home, database=DemoPlants.database(3, 1.0))
        key = ApiKeys(plants.home).create("reader", "benchmark")
        header = f"{'query':<7} {'clients':>7} {'p50 ms':>8} {'p95 ms':>8} {'req/s':>8}"
        print(f"{'server':<10} {header}   raw p50 ms  ratio")
        with Workers(settings, 1) as url:
            measure("1 worker", url, key, args.per_client, store)
        if args.workers > 1:
            with Workers(settings, args.workers) as url:
                measure(f"{args.workers} workers", url, key, args.per_client, store)
        print("targets: deep query p95 < 100 ms at 16 clients, overhead ratio < 2x (1 client)")
        store.close()
    finally:
        plants.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
