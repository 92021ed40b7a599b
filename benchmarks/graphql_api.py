"""GraphQL API latency and throughput on the demo plant, next to the raw service functions.

    python benchmarks/graphql_api.py [--requests 200] [--workers 2]

(Not graphql.py: run from this folder, that name would shadow the graphql-core package.)

Loads the demo plant, stores root causes for its quality deviations, serves the API with
uvicorn on a free loopback port and sends a deep query (deviations -> stored causes with
their evidence paths -> the cause nodes, a lot's suppliers -> decisions -> outcomes: the
issue's "deviation -> causes -> evidence -> decisions"), the same deviations' cause nodes
through the relationship fields (no evidence) and a list query, from 1 and from 16
concurrent clients (in a second process, so they do not share the server's interpreter
lock). The same
data fetched by calling graph/read.py directly in this process gives the API's overhead
ratio. Then the same through `opsgraph serve --workers N` (separate processes).
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

import httpx
from _http import Connection
from _plants import DemoPlants

from opsgraph.api.app import ApiKeys, BackgroundServer, create_app
from opsgraph.graph import read
from opsgraph.graph.rca import RootCauseAnalyzer
from opsgraph.graph.settings import Settings
from opsgraph.schema import rel_spec

DEEP = """{ deviations(first: 10, filter: {deviationType: "scrap"}) { nodes {
  deviationId severity description
  causes { rank score causeType explanation evidence { label key type direction at }
           node { id ... on MaterialLot { lotId suppliersSupplied { supplierId } } } }
  decisionsAbout { decisionId summary outcome { result description } }
} } }"""
# The same deviations' cause nodes through the relationship fields (no scores, no evidence).
RELATED = """{ deviations(first: 10, filter: {deviationType: "scrap"}) { nodes {
  deviationId severity description
  causedByLot { lotId suppliersSupplied { supplierId } }
  causedByMachine { machineId } causedByPerson { personId name }
  causedByMaintenance { maintenanceId status } causedByChangeover { changeoverId }
  decisionsAbout { decisionId summary outcome { result description } }
} } }"""
LIST = "{ productionOrders(first: 50) { nodes { orderId status totalQuantity plannedStart } } }"


def raw_deep(store) -> int:  # noqa: ANN001 - the benchmark's own helper
    """The deep query's data through graph/read.py, as a resolver-free baseline."""
    keys = _scrap_deviations(store)
    causes = read.query_stored_causes(keys).run(store)
    by_label: dict[str, set[str]] = {}
    for found in causes.values():
        for cause in found:
            by_label.setdefault(cause["label"], set()).add(str(cause["target"]))
    for label, targets in by_label.items():
        read.nodes_by_key(store, label, sorted(targets))
    _suppliers_and_decisions(store, sorted(by_label.get("MaterialLot", ())), keys)
    return sum(map(len, causes.values()))


def raw_related(store) -> int:  # noqa: ANN001
    keys = _scrap_deviations(store)
    count, lots = 0, []
    for label in ("MaterialLot", "Machine", "Person", "MaintenanceEvent", "Changeover"):
        found = read.query_neighbours(rel_spec("Deviation", "CAUSED_BY", label), keys).run(store)
        count += sum(map(len, found.values()))
        if label == "MaterialLot":
            lots = [lot["lot_id"] for ls in found.values() for lot in ls]
    _suppliers_and_decisions(store, lots, keys)
    return count


def _scrap_deviations(store) -> list[str]:  # noqa: ANN001
    rows, _ = read.query_page("Deviation", 10, equals={"deviation_type": "scrap"}).run(store)
    return [r["deviation_id"] for r in rows]


def _suppliers_and_decisions(store, lots: list[str], deviations: list[str]) -> None:  # noqa: ANN001
    """The part both deep queries share: the lots' suppliers, decisions and outcomes."""
    if lots:
        supplied = rel_spec("Supplier", "SUPPLIED", "MaterialLot")
        read.query_neighbours(supplied, lots, False).run(store)
    rel = rel_spec("Decision", "ABOUT", "Deviation")
    decisions = read.query_neighbours(rel, deviations, False).run(store)
    ids = [d["decision_id"] for ds in decisions.values() for d in ds]
    read.query_neighbours(rel_spec("Decision", "HAS_OUTCOME", "Outcome"), ids).run(store)


def raw_list(store) -> int:  # noqa: ANN001
    rows, _ = read.query_page("ProductionOrder", 50).run(store)
    return len(rows)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def load(
    url: str, key: str, query: str, clients: int, requests: int
) -> tuple[list[float], float]:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    body = json.dumps({"query": query}).encode()
    latencies: list[float] = []
    per_client = max(1, requests // clients)

    async def client() -> None:
        connection = await Connection.open(url)
        for _ in range(per_client):
            started = time.perf_counter()
            status, answer = await connection.post("/graphql", body, headers)
            latencies.append((time.perf_counter() - started) * 1000)
            assert status == 200 and b'"errors"' not in answer, answer[:300]
        await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return latencies, len(latencies) / (time.perf_counter() - started)


def load_elsewhere(
    url: str, key: str, query: str, clients: int, requests: int
) -> tuple[list[float], float]:
    """The clients in a process of their own, as real clients are: in this one they would
    compete with the server for the interpreter lock. They use the lean keep-alive client
    of _http.py: httpx needed more CPU per request than the server it measured."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_load_sync, (url, key, query, clients, requests))


def _load_sync(
    url: str, key: str, query: str, clients: int, requests: int
) -> tuple[list[float], float]:
    return asyncio.run(load(url, key, query, clients, requests))


QUERIES = (("deep", DEEP, raw_deep), ("related", RELATED, raw_related), ("list", LIST, raw_list))


def raw_median(raw, store, runs: int = 60) -> float:  # noqa: ANN001
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        raw(store)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(server: str, base: str, key: str, requests: int, store) -> None:  # noqa: ANN001
    """Each query from 1 and 16 clients; the raw services' median is taken again just
    before, so the ratio compares figures from the same minute (this machine's speed drifts
    by 15-20 % between runs)."""
    for name, query, raw in QUERIES:
        raw_p50 = raw_median(raw, store)
        for clients in (1, 16):
            latencies, rate = load_elsewhere(base, key, query, clients, requests)
            p50 = statistics.median(latencies)
            print(
                f"{server:<10} {name:<7} {clients:>7} {p50:8.1f} "
                f"{percentile(latencies, 0.95):8.1f} {rate:8.1f}   {raw_p50:9.1f}  "
                f"{p50 / raw_p50:5.2f}x"
            )


class Workers:
    """`opsgraph serve --workers N` on a free loopback port, as a user runs it."""

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
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2, help="also measure serve --workers N")
    args = parser.parse_args()
    plants = DemoPlants()
    try:
        store, _ = plants.load(seed=3, scale=1.0)
        analyzer = RootCauseAnalyzer(store)
        for deviation in analyzer.deviations():
            analyzer.persist(analyzer.analyze(deviation))
        settings = Settings(home=plants.home, database="seed3_scale1_0")
        key = ApiKeys(plants.home).create("reader", "benchmark")
        header = f"{'query':<7} {'clients':>7} {'p50 ms':>8} {'p95 ms':>8} {'req/s':>8}"
        print(f"{'server':<10} {header}   raw p50 ms  ratio")
        with BackgroundServer(create_app(store, settings)) as server:
            measure("1 worker", server.url, key, args.requests, store)
        if args.workers > 1:
            with Workers(settings, args.workers) as url:
                measure(f"{args.workers} workers", url, key, args.requests, store)
        print("targets: deep query p95 < 100 ms at 16 clients, overhead ratio < 2x (1 client)")
        store.close()
    finally:
        plants.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
