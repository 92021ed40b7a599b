"""Proactive risk on demo plants: learn from the first three weeks, score the orders of the
next three, and compare with what happened.

    python benchmarks/risk.py [--seeds 1 2 3]

An order counts as having gone wrong when one of its operations showed a quality deviation
(scrap or out of spec). Prints ROC-AUC and precision/recall at the top 10 % for opsgraph's
risk score and for the baseline "the machine's historical deviation rate".
"""

from __future__ import annotations

import argparse
import statistics
from datetime import timedelta

from _plants import DemoPlants

from opsgraph.graph.rca import QUALITY
from opsgraph.graph.risk import RiskModel
from opsgraph.ingest.demo import START

SPLIT = START + timedelta(days=21)
HORIZON = 21.0


def auc(scores: dict[str, float], labels: dict[str, bool]) -> float:
    positive = [scores.get(o, 0.0) for o, bad in labels.items() if bad]
    negative = [scores.get(o, 0.0) for o, bad in labels.items() if not bad]
    wins = sum((p > n) + 0.5 * (p == n) for p in positive for n in negative)
    return wins / (len(positive) * len(negative))


def at_k(scores: dict[str, float], labels: dict[str, bool], k: int) -> tuple[float, float]:
    top = sorted(labels, key=lambda o: (-scores.get(o, 0.0), o))[:k]
    hits = sum(labels[o] for o in top)
    return hits / k, hits / max(1, sum(labels.values()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    plants = DemoPlants()
    rows: dict[str, list[tuple[float, float, float]]] = {"opsgraph": [], "machine rate": []}
    try:
        for seed in args.seeds:
            store, _ = plants.load(seed, 1.0)
            model = RiskModel(store).fit(SPLIT)
            ours = {r.order: r.risk for r in model.score(SPLIT, horizon_days=HORIZON)}
            baseline = model.machine_baseline(SPLIT, horizon_days=HORIZON)
            upcoming = model.operations(SPLIT, SPLIT + timedelta(days=HORIZON))
            labels: dict[str, bool] = {}
            for op in upcoming.values():
                key = op.order or op.operation
                labels[key] = labels.get(key, False) or bool(op.deviation_types & QUALITY)
            k = max(1, len(labels) // 10)
            line = [f"seed {seed}: {len(labels)} orders, {sum(labels.values())} went wrong, k={k}"]
            for name, scores in (("opsgraph", ours), ("machine rate", baseline)):
                precision, recall = at_k(scores, labels, k)
                rows[name].append((auc(scores, labels), precision, recall))
                line.append(
                    f"{name} AUC {rows[name][-1][0]:.3f} P@k {precision:.2f} R@k {recall:.2f}"
                )
            print("  ".join(line))
            store.close()
    finally:
        plants.close()
    print(f"\n{'method':<13} {'ROC-AUC':>8} {'P@10%':>6} {'R@10%':>6}")
    for name, results in rows.items():
        area, precision, recall = (statistics.mean(r[i] for r in results) for i in range(3))
        print(f"{name:<13} {area:8.3f} {precision:6.2f} {recall:6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
