"""Proactive risk: which open orders look like the work that went wrong before?

The factors are root-cause analysis's (the machine, the lots and their supplier, the crew and
its certifications, a missed maintenance still pending, a recent changeover, alarms before
the start — never anything that happens during the work). From the history before ``as_of``
each factor class gets the deviation rate of the operations exposed to it, smoothed towards
the base rate; an order's risk is the noisy-OR of its factors' excess over the base rate, and
its reasons are those factors with their graph paths and the history behind them.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from . import queries
from .rca import QUALITY, Factor, Op, RootCauseAnalyzer
from .store import Store

PRIOR = 5.0  # pseudo-operations at the base rate added to each factor's history


@dataclass
class Reason:
    label: str
    key: str
    cause_type: str
    excess: float
    deviating: int
    exposed: int
    path: list[dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {**vars(self), "excess": round(self.excess, 4)}


@dataclass
class OrderRisk:
    order: str
    risk: float
    operations: list[str]
    reasons: list[Reason] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "order": self.order,
            "risk": round(self.risk, 4),
            "operations": self.operations,
            "reasons": [r.as_dict() for r in self.reasons],
        }


class RiskModel:
    """Learns factor risk from the operations before ``as_of`` and scores later orders."""

    def __init__(self, store: Store, history_days: float = 42.0, cap: int = 20_000) -> None:
        self.store = store
        self.history = timedelta(days=history_days)
        self.cap = cap
        self.analyzer = RootCauseAnalyzer(store)
        self.base = 0.0
        self.counts: dict[tuple, tuple[int, int]] = {}

    def operations(self, since: datetime, until: datetime) -> dict[str, Op]:
        """Operations starting in [since, until) with their factors and deviations."""
        rows = self.store.read(
            queries.RISK_OPERATIONS, since=since.isoformat(), until=until.isoformat(), cap=self.cap
        )
        ops = self.analyzer.operations(rows)
        self.analyzer.attach_factors(ops)
        return ops

    def fit(self, as_of: datetime) -> RiskModel:
        """Count, per factor class, the operations exposed to it and how many deviated."""
        history = self.operations(as_of - self.history, as_of)
        counts: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
        bad_total = 0
        for op in history.values():
            bad = bool(op.deviation_types & QUALITY)
            bad_total += bad
            for cls in {f.cls for f in _known_before(op)}:
                counts[cls][0] += 1
                counts[cls][1] += bad
        self.base = (bad_total + 0.5) / (len(history) + 1)
        self.counts = {cls: (n, k) for cls, (n, k) in counts.items()}
        return self

    def rate(self, cls: tuple) -> float:
        n, k = self.counts.get(cls, (0, 0))
        return (k + PRIOR * self.base) / (n + PRIOR)

    def score(self, as_of: datetime, horizon_days: float = 14.0, top: int = 3) -> list[OrderRisk]:
        """Orders starting in [as_of, as_of + horizon), most at risk first."""
        upcoming = self.operations(as_of, as_of + timedelta(days=horizon_days))
        by_order: dict[str, list[Op]] = defaultdict(list)
        for op in upcoming.values():
            by_order[op.order or op.operation].append(op)
        results = []
        for order, ops in by_order.items():
            reasons: dict[tuple, Reason] = {}
            for op in ops:
                for factor in _known_before(op):
                    excess = self.rate(factor.cls) - self.base
                    if excess <= 0 or factor.cls not in self.counts:
                        continue
                    n, k = self.counts[factor.cls]
                    if factor.cls not in reasons or excess > reasons[factor.cls].excess:
                        reasons[factor.cls] = Reason(
                            factor.label, factor.key, factor.cause_type, excess, k, n, factor.path
                        )
            survive = 1.0
            for reason in reasons.values():
                survive *= 1 - min(reason.excess, 0.99)
            ranked = sorted(reasons.values(), key=lambda r: -r.excess)[:top]
            results.append(OrderRisk(order, 1 - survive, sorted(o.operation for o in ops), ranked))
        results.sort(key=lambda r: (-r.risk, r.order))
        return results

    def machine_baseline(self, as_of: datetime, horizon_days: float = 14.0) -> dict[str, float]:
        """The simple baseline: each order scored by its machines' historical deviation rate."""
        upcoming = self.operations(as_of, as_of + timedelta(days=horizon_days))
        scores: dict[str, float] = defaultdict(float)
        for op in upcoming.values():
            if op.machine:
                rate = self.rate(("Machine", op.machine))
                scores[op.order or op.operation] = max(scores[op.order or op.operation], rate)
        return dict(scores)


def _known_before(op: Op) -> list[Factor]:
    """Factors fixed before the work starts (alarms during it are not known in advance)."""
    return [
        f for f in op.factors if f.weight >= 1.0 and not (op.start and f.at and f.at > op.start)
    ]
