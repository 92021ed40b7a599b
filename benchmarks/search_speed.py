"""Decision-memory speed: embedding throughput on CPU, and query latency as notes grow.

    python benchmarks/search_speed.py [--texts 2000] [--sizes 10000 100000]

Embedding: real shop-floor sentences through the offline all-MiniLM-L6-v2 model, notes/s.
Query: the exact NumPy cosine search (the fallback path) over 10k and 100k stored
embeddings, p50/p95 per query including encoding the query text, next to the search alone.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np

from opsgraph.graph.memory import DIMENSIONS, Embedder, top_k

WORDS = (
    "spindle bearing vibration chatter bore oversize coolant leak temperature drift changeover "
    "offset setup operator certification batch supplier bar hard scrap rework tool wear guard "
    "interlock alarm fault pressure feed rate surface finish"
).split()


def percentile(values: list[float], q: float = 0.95) -> float:
    return sorted(values)[int(q * len(values))]


def sentences(n: int, rng: random.Random) -> list[str]:
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20))) for _ in range(n)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    rng = random.Random(1)
    embedder = Embedder()
    embedder.encode(["warm up"])
    texts = sentences(args.texts, rng)
    started = time.perf_counter()
    vectors = embedder.encode(texts)
    seconds = time.perf_counter() - started
    rate = len(texts) / seconds
    print(f"embedding: {len(texts)} texts in {seconds:.1f} s = {rate:,.0f} notes/s (CPU)")
    queries = sentences(args.queries, rng)
    for size in args.sizes:
        # Stored embeddings: the real ones, tiled and jittered to the size wanted.
        stored = np.resize(vectors, (size, DIMENSIONS))
        stored += np.random.default_rng(size).normal(0, 0.01, stored.shape).astype(np.float32)
        stored /= np.linalg.norm(stored, axis=1, keepdims=True)
        full, search_only = [], []
        for query in queries:
            started = time.perf_counter()
            vector = embedder.encode([query])[0]
            middle = time.perf_counter()
            top_k(stored, vector, 10)
            done = time.perf_counter()
            full.append((done - started) * 1000)
            search_only.append((done - middle) * 1000)
        p95, alone = percentile(full), percentile(search_only)
        print(f"{size:>7} notes: query p50 {statistics.median(full):6.1f} ms, "
              f"p95 {p95:6.1f} ms (search alone p95 {alone:5.1f} ms)")  # fmt: skip
    print("target: query p95 < 50 ms at 100k notes on the fallback path")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
