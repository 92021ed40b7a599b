"""Time per deviation for root-cause analysis on the demo plant at two sizes.

    python benchmarks/rca_latency.py [--scales 1 10] [--sample 60] [--cache DIR]

"single" is what `opsgraph rca DEV-ID` costs: a fresh analyzer that pulls the deviation's
neighbourhood from the store. "batch" is `opsgraph rca --all`: one analyzer whose pulled
comparison operations are reused across deviations of the same context.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

from _plants import DemoPlants

from opsgraph.graph.rca import RcaError, RootCauseAnalyzer


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 10.0])
    parser.add_argument("--sample", type=int, default=60)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--cache", type=Path, help="keep the loaded plants here between runs")
    args = parser.parse_args()
    plants = DemoPlants(args.cache)
    rows = []
    try:
        for scale in args.scales:
            store, _ = plants.load(args.seed, scale)
            ids = RootCauseAnalyzer(store).deviations()
            traceable = []  # a checklist failed on an idle machine has no work to trace
            for deviation in random.Random(args.seed).sample(ids, len(ids)):
                try:
                    RootCauseAnalyzer(store).analyze(deviation)
                except RcaError:
                    continue
                traceable.append(deviation)
                if len(traceable) == args.sample:
                    break
            sample = traceable
            single = []
            for deviation in sample:
                started = time.perf_counter()
                RootCauseAnalyzer(store).analyze(deviation)
                single.append((time.perf_counter() - started) * 1000)
            batch_analyzer = RootCauseAnalyzer(store)
            batch = []
            for deviation in sample:
                started = time.perf_counter()
                batch_analyzer.analyze(deviation)
                batch.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            everything = RootCauseAnalyzer(store)  # `opsgraph rca --all`, without saving
            for deviation in ids:
                try:
                    everything.analyze(deviation)
                except RcaError:
                    pass
            whole = time.perf_counter() - started
            rows.append((scale, len(ids), single, batch, whole))
            store.close()
    finally:
        plants.close()
    print(f"{'scale':>5} {'deviations':>10} {'single p50':>11} {'single p95':>11} "
          f"{'batch p50':>10} {'batch p95':>10}  (ms)  all deviations (s)")  # fmt: skip
    for scale, count, single, batch, whole in rows:
        print(f"{scale:5g} {count:10d} {statistics.median(single):11.1f} "
              f"{percentile(single, 0.95):11.1f} {statistics.median(batch):10.1f} "
              f"{percentile(batch, 0.95):10.1f}  {whole:8.1f}")  # fmt: skip
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        growth = percentile(last[2], 0.95) / percentile(first[2], 0.95)
        print(f"single p95 grows {growth:.1f}x from scale {first[0]:g} to {last[0]:g}")
    print("targets: single p95 < 300 ms at scale 10, all deviations at scale 10 within 60 s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
