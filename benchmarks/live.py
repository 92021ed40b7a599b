"""Live ingest latency: from a webhook POST to the deviation arriving at a GraphQL subscriber.

    python benchmarks/live.py [--rate 200] [--seconds 10]

Loads the demo plant (seed 1, scale 1), serves the API with uvicorn on a free loopback port,
subscribes to ``newDeviations`` over a websocket and POSTs one-line quality-check events at a
steady ``--rate`` (open loop: each event is due at its scheduled time whatever the answers
do, and its latency counts from then, so queueing in the client counts too), a quarter of
them out of spec. The load generator and the subscriber run in a second process,
so they do not compete with the server for this one's interpreter lock. Prints the POST
latency and the POST-to-subscription latency (p50/p95), the rate achieved, and, as the
baseline measured in the same run, the per-event cost of loading each body as a run of its
own (what the webhook did before group commit).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import statistics
import time
from pathlib import Path

from _http import Connection
from _plants import DemoPlants
from websockets.asyncio.client import connect

from opsgraph.api.app import ApiKeys, BackgroundServer, create_app
from opsgraph.graph.settings import Settings
from opsgraph.ingest.runner import IngestRunner

HEADER = "check_id,characteristic,value,unit,lower_limit,upper_limit,checked_at\n"
CONNECTIONS = 64  # keep-alive connections of the load generator
SUBSCRIPTION = "subscription { newDeviations(pollSeconds: 5) { deviationId } }"


def event(number: int) -> tuple[str, bool]:
    """A quality check; every fourth one out of spec (a deviation)."""
    bad = number % 4 == 0
    value = 42.03 if bad else 42.0
    row = f"QC-LIVE-{number},bore_diameter,{value},mm,41.99,42.01,2026-11-02T09:30:00Z\n"
    return HEADER + row, bad


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def run_load(url: str, writer: str, reader: str, rate: float, seconds: float) -> dict:
    sent: dict[str, float] = {}
    arrived: dict[str, float] = {}
    post_latency: list[float] = []
    failures: list[str] = []
    ws_url = url.replace("http", "ws") + f"/graphql?api_key={reader}"
    async with connect(ws_url, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        await ws.recv()
        await ws.send(
            json.dumps({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIPTION}})
        )
        await asyncio.sleep(0.5)

        async def listen() -> None:
            async for raw in ws:
                message = json.loads(raw)
                if message.get("type") == "next":
                    key = message["payload"]["data"]["newDeviations"]["deviationId"]
                    arrived.setdefault(key, time.perf_counter())

        listener = asyncio.create_task(listen())
        pending: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()

        async def connection() -> None:
            """One keep-alive connection posting events as they are due."""
            http = await Connection.open(url)
            headers = {"Authorization": f"Bearer {writer}", "Content-Type": "text/csv"}
            while (job := await pending.get()) is not None:
                number, due = job
                body, bad = event(number)
                if bad:
                    sent[f"DEV-QC-LIVE-{number}"] = due
                status, answer = await http.post(
                    "/ingest?filename=quality_checks.csv", body.encode(), headers
                )
                post_latency.append(time.perf_counter() - due)
                if status != 200:
                    failures.append(f"{status} {answer[:200]!r}")
            await http.close()

        connections = [asyncio.create_task(connection()) for _ in range(CONNECTIONS)]
        total = int(rate * seconds)
        begin = time.perf_counter()
        for number in range(total):
            due = begin + number / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.put_nowait((number, due))
        for _ in connections:
            pending.put_nowait(None)
        await asyncio.gather(*connections)
        elapsed = time.perf_counter() - begin
        deadline = time.perf_counter() + 10
        while len(arrived) < len(sent) and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        listener.cancel()
    delays = [arrived[key] - sent[key] for key in sent if key in arrived]
    return {
        "events": total,
        "achieved_rate": total / elapsed,
        "post": post_latency,
        "delivery": delays,
        "missing": len(sent) - len(delays),
        "failures": failures,
    }


def load(url: str, writer: str, reader: str, rate: float, seconds: float) -> dict:
    """The load generator's entry point in its own process."""
    return asyncio.run(run_load(url, writer, reader, rate, seconds))


def baseline(store, home: Path, events: int) -> float:  # noqa: ANN001
    """Seconds per event when each body is loaded as its own run (whole-graph rules)."""
    runner = IngestRunner(store, home / "baseline-state")
    inbox = home / "baseline-inbox"
    inbox.mkdir(exist_ok=True)
    started = time.perf_counter()
    for number in range(events):
        path = inbox / f"qc-{number}.csv"
        path.write_text(event(100_000 + number)[0])
        runner.run([path])
    return (time.perf_counter() - started) / events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to send")
    args = parser.parse_args()
    plants = DemoPlants()
    try:
        store, _ = plants.load(seed=1, scale=1.0)
        keys = ApiKeys(plants.home)
        writer, reader = keys.create("writer", "bench"), keys.create("reader", "bench")
        per_event = baseline(store, plants.home, 20)
        app = create_app(store, Settings(home=plants.home))
        with BackgroundServer(app) as server:
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                result = pool.apply(load, (server.url, writer, reader, args.rate, args.seconds))
        post_ms = [s * 1000 for s in result["post"]]
        delivery_ms = [s * 1000 for s in result["delivery"]]
        print(f"{result['events']} events at {result['achieved_rate']:.0f}/s "
              f"(asked {args.rate:g}/s), {len(delivery_ms)} deviations delivered, "
              f"{result['missing']} missing, {len(result['failures'])} failed POSTs")  # fmt: skip
        for failure in result["failures"][:3]:
            print("  failed:", failure)
        print(f"{'':24} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
        for name, values in (("POST answered", post_ms), ("deviation at subscriber", delivery_ms)):
            if values:
                print(f"{name:24} {statistics.median(values):8.0f} "
                      f"{percentile(values, 0.95):8.0f} {max(values):8.0f}")  # fmt: skip
        capacity = 1 / per_event
        print(f"baseline, one run per body: {per_event * 1000:.0f} ms per event, at most "
              f"{capacity:.0f} events/s; group commit sustained {result['achieved_rate']:.0f}/s "
              f"({result['achieved_rate'] / capacity:.1f}x)")  # fmt: skip
        print("target: deviation at subscriber p95 < 1000 ms at 200 events/s")
        store.close()
    finally:
        plants.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
