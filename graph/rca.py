"""Root-cause analysis: for a deviation, rank the entities that most likely caused it, each with
a confidence and the evidence that connects it, or say that nothing stands out.

The method is a contrast of exposure, judged with uncertainty, and it asks nothing of the
data that a plant's exports may lack (machine types, certifications, maintenance records):

1. **Candidates** are what the deviating operation was exposed to before it could be affected
   (nothing after its end): its machine, the lots it consumed and their suppliers, the people
   who performed it, the work's history (the machines of the order's earlier steps and the
   lots they put into the workpiece), a missed maintenance still pending on the machine, a
   changeover shortly before it and the setup it ran in. Alarms and failed checklists of a
   machine are *symptoms*: they support the machine (its operations with such a symptom form
   one more way of counting it) instead of competing with it. An expired certification or a
   first run of the work step are flags that the explanation reports; they never decide alone.
2. **Counting.** Every operation of the plant in ``window_days`` around the deviation is the
   reference; a candidate's exposed operations are counted four ways — over the window and
   within ``local_days`` (problems that start and stop), each plant-wide and on the same work
   step (the operation text or number: an operator may be bad at milling and fine at
   turning) — against the deviation rate of the same reference.
3. **Uncertainty.** For each count, the posterior of the candidate's deviation rate is a Beta
   distribution with a weak prior at the reference rate (``PRIOR`` pseudo-operations; the
   reference's rate step by step, so working at a step that deviates more is no cause); its
   ``QUANTILE`` lower bound minus the reference rate is the score, and a candidate takes its
   best count. One deviating operation of one cannot outrank 20 of 40, and a factor never
   seen elsewhere stays at its prior, below the reference.
4. **Explaining away, jointly.** One noisy-OR model is fitted over the window's work: an
   operation deviates when its work step's leak acts or when any way of counting a candidate
   it was exposed to does, each with its own probability (EM, the same Beta prior). A
   candidate whose deviations another explains keeps little: the lots that ran on a bad
   machine, a supplier through its one bad batch, the machine of a bad setup. The same work
   counted by two candidates is counted once, for the direct and more specific one (the lot
   before its supplier, the missed maintenance before its machine), and the work's history
   and setups are fitted on what the work's own candidates leave. Candidates are ranked by
   the lower credible bound (``QUANTILE``) of the rate at which they caused deviations; a
   listed cause stays elevated without the work of the causes above it.
5. **Confidence** is the posterior probability that the candidate acted in this deviation
   (Monte Carlo over the fitted probabilities; the step's leak takes the rest). Below
   ``CLEAR`` the answer is "no clear cause" with the nearest candidates. A candidate whose
   operations did not deviate more often than the reference is never listed as a cause.

Deviations about a machine alone (downtime, failed checklist items) are analysed through the
operation that ran on the machine then: an operation counts as showing that kind of deviation
when one was recorded on its machine from two hours before it to its end.

``benchmarks/rca_accuracy.py`` measures this on a family of demo plant variants against the
contrast statistic and a windowed contrast; the figures are in ``docs/benchmarks.md``.
"""

from __future__ import annotations

import json
import uuid
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix
from scipy.stats import beta, norm

from opsgraph.schema import node_spec, rel_spec
from opsgraph.schema.base import as_utc

from . import identity, queries
from .store import Rows, Store

METHOD = "joint-exposure/v4"
QUALITY = {"scrap", "out_of_spec", "short_order"}
MACHINE_LEVEL = {"downtime", "failed_checklist_item"}
TRACED = QUALITY | MACHINE_LEVEL | {"late_order"}  # what `rca --all` analyses
CHANGEOVER_REACH = timedelta(hours=4)
ALARM_REACH = timedelta(hours=2)
INSPECTION_REACH = timedelta(hours=12)  # a failed checklist speaks for the next half day
PRIOR = 2.0  # pseudo-operations at the reference rate in each candidate's posterior
QUANTILE = 0.1  # the lower credible bound a candidate is ranked by
LOCAL_DAYS = 3.0
CLEAR = 0.4  # confidence below which the answer is "no clear cause" (docs/benchmarks.md)
DRAWS = 4000
EM_STEPS = 300
INDIRECT = {"supplier", "upstream_operation"}  # linked to the work through something else
CREDIBLY = 0.95  # posterior probability for "deviates credibly more"
SYMPTOMS = {"alarm", "inspection"}  # factor classes that support their machine
CARRIED = "carried"  # a lot (or its supplier) in the workpiece from an earlier step
HISTORY = {"setup", "upstream", CARRIED}  # candidate classes beyond what the work touched


class RcaError(LookupError):
    """The deviation cannot be analysed (unknown, or nothing to trace from)."""


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def family(deviation_type: str | None) -> set[str]:
    """Deviation types that count as "the same kind of problem"."""
    return QUALITY if deviation_type in QUALITY else {deviation_type or ""}


@dataclass
class Factor:
    """One entity an operation was exposed to, and how it is connected to it."""

    cls: tuple[str, ...]
    label: str
    key: str
    cause_type: str
    at: datetime | None
    weight: float
    path: list[dict[str, Any]]
    detail: str = ""


@dataclass
class Op:
    operation: str
    machine: str | None
    order: str | None
    start: datetime | None
    end: datetime | None
    factors: list[Factor] = field(default_factory=list)
    deviation_types: set[str] = field(default_factory=set)  # deviations about the operation
    order_deviation_types: set[str] = field(default_factory=set)  # ... about its order
    step: str | None = None  # the work step: operation text or number


@dataclass
class Cause:
    label: str
    key: str
    cause_type: str
    score: float
    deviating: int
    exposed: int
    base_rate: float
    evidence: list[list[dict[str, Any]]]
    explanation: str
    confidence: float = 0.0
    pattern: str = ""  # what recurs: "Machine M-103", "changeovers on M-303"

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "pattern": self.pattern,
            "key": self.key,
            "cause_type": self.cause_type,
            "score": round(self.score, 4),
            "confidence": round(self.confidence, 3),
            "deviating": self.deviating,
            "exposed": self.exposed,
            "base_rate": round(self.base_rate, 4),
            "explanation": self.explanation,
            "evidence": self.evidence,
        }


@dataclass
class RcaResult:
    deviation: str
    deviation_type: str
    description: str
    subjects: dict[str, list[str]]
    causes: list[Cause]  # candidates that deviated more often than the reference, best first
    method: str = METHOD
    notes: list[str] = field(default_factory=list)
    clear: bool = False  # the first cause stands out (confidence >= CLEAR)
    candidates: list[Cause] = field(default_factory=list)  # the rest, nearest first

    @property
    def ranking(self) -> list[Cause]:
        return self.causes + self.candidates

    @property
    def presented(self) -> list[Cause]:
        """What to show a person: the causes, or with no clear cause the nearest three."""
        return self.causes if self.clear else self.ranking[:3]

    @property
    def verdict(self) -> str:
        return "cause" if self.clear else "no clear cause"

    def as_dict(self) -> dict[str, Any]:
        return {
            "deviation": self.deviation,
            "deviation_type": self.deviation_type,
            "description": self.description,
            "subjects": self.subjects,
            "method": self.method,
            "verdict": self.verdict,
            "causes": [c.as_dict() for c in self.causes],
            "nearest_candidates": [c.as_dict() for c in self.candidates[:3]],
            "notes": self.notes,
        }


@dataclass
class _Count:
    """One way of counting a candidate: its exposed operations within a reference."""

    view: str
    exposed: frozenset[str]
    reference: frozenset[str]
    bad: frozenset[str]
    via: Factor | None = None  # the symptom this count goes through, if any
    # the candidate's own work, where the count reaches beyond it (a symptom's kind over the
    # plant): such a count ranks the candidate alone, it is no feature of the joint model
    own: frozenset[str] | None = None
    strata: _Strata | None = None  # the reference's work steps, for plant-wide counts
    bound: tuple[float, int, int] | None = None  # score(), once computed

    @cached_property
    def base(self) -> float:
        """The deviation rate of the reference's work the candidate did not touch (a machine
        that goes bad must not raise the rate it is compared with), step by step when the
        reference spans steps (indirect standardisation), so that working at a step that
        deviates more is not taken for a cause."""
        if self.strata is None or not self.exposed:
            unexposed = self.reference - self.exposed
            return (len(unexposed & self.bad) + 0.5) / (len(unexposed) + 1)
        return self.strata.expected(self.exposed, self.bad)

    def score(self, exclude: frozenset[str] = frozenset()) -> tuple[float, int, int]:
        """Lower credible bound of the excess rate, with the deviating and exposed counts."""
        if not exclude and self.bound is not None:
            return self.bound  # asked for again and again while ranking (see _bounds)
        ids = self.exposed - exclude
        k, n = len(ids & self.bad), len(ids)
        a, b = _posterior(k, n, self.base)
        return float(beta.ppf(QUANTILE, a, b)) - self.base, k, n


@dataclass(frozen=True)
class _Strata:
    """A reference's work by step, for indirect standardisation of a candidate's rate."""

    step_of: dict[str, str | None]
    totals: dict[str | None, tuple[int, int]]  # per step: operations, deviating

    @classmethod
    def of(cls, reference: frozenset[str], ops: dict[str, Op], bad: frozenset[str]) -> _Strata:
        step_of = {k: ops[k].step for k in reference}
        n: Counter[str | None] = Counter(step_of.values())
        k: Counter[str | None] = Counter(step_of[x] for x in reference & bad)
        return cls(step_of, {s: (n[s], k[s]) for s in n})

    def expected(self, exposed: frozenset[str], bad: frozenset[str]) -> float:
        """The mean over the exposed work of its step's rate without the exposed work."""
        n_exposed: Counter[str | None] = Counter(self.step_of.get(x) for x in exposed)
        k_exposed: Counter[str | None] = Counter(self.step_of.get(x) for x in exposed & bad)
        total = 0.0
        for step, n in n_exposed.items():
            ops, deviating = self.totals[step]  # the exposed work is the reference's
            rest_n, rest_k = ops - n, deviating - k_exposed[step]
            total += n * (rest_k + 0.5) / (rest_n + 1)
        return total / len(exposed)


def _bounds(counts: list[_Count]) -> None:
    """Every count's score at once (one vectorised quantile instead of one call each)."""
    if not counts:
        return
    k = np.array([len(c.exposed & c.bad) for c in counts])
    n = np.array([len(c.exposed) for c in counts])
    base = np.array([c.base for c in counts])
    bounds = beta.ppf(QUANTILE, *_posterior(k, n, base)) - base
    for count, bound, deviating, exposed in zip(counts, bounds, k, n, strict=True):
        count.bound = (float(bound), int(deviating), int(exposed))


def _posterior(k: Any, n: Any, base: Any) -> tuple[Any, Any]:
    """Beta posterior parameters (numbers or arrays of them)."""
    return k + PRIOR * base, n - k + PRIOR * (1 - base)


def _higher(
    first: frozenset[str], second: frozenset[str], bad: frozenset[str], base: float
) -> float:
    """Posterior probability that ``first``'s work deviates more often than ``second``'s
    (normal approximation of the two Beta posteriors' difference)."""
    a1, b1 = _posterior(len(first & bad), len(first), base)
    a2, b2 = _posterior(len(second & bad), len(second), base)
    mean1, mean2 = a1 / (a1 + b1), a2 / (a2 + b2)
    var1 = a1 * b1 / ((a1 + b1) ** 2 * (a1 + b1 + 1))
    var2 = a2 * b2 / ((a2 + b2) ** 2 * (a2 + b2 + 1))
    return float(norm.cdf((mean1 - mean2) / np.sqrt(var1 + var2)))


@dataclass
class _Candidate:
    cls: tuple[str, ...]
    factor: Factor
    op: Op
    counts: list[_Count] = field(default_factory=list)
    symptoms: list[Factor] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)
    batches: dict[str, set[str]] = field(default_factory=dict)  # a supplier's lots' operations
    touched: frozenset[str] = frozenset()  # every operation it touched, however counted
    best: _Count | None = None
    score: float = -1.0
    explained_by: _Candidate | None = None

    @property
    def indirect(self) -> bool:
        """Linked to the work through something else: a supplier (through its lot), the
        work's history (an earlier step's machine, a lot carried in the workpiece)."""
        return self.factor.cause_type in INDIRECT or self.cls[0] == CARRIED

    def rank(self) -> None:
        scored = [(c.score()[0], c) for c in self.counts if c.exposed]
        if scored:
            self.score, self.best = max(scored, key=lambda s: s[0])


@dataclass
class _Case:
    deviation: dict[str, Any]
    targets: dict[str, Op]
    around: datetime
    comparison: dict[str, Op]  # the window's work, the deviation's own included
    bad: frozenset[str]  # of it, what showed the same kind of deviation
    candidates: list[_Candidate]
    exposed: dict[tuple, set[str]]


class RootCauseAnalyzer:
    """Analyses deviations against one store; keeps the window's operations and what they
    were exposed to, so analysing every deviation of a plant does not pull them again."""

    def __init__(
        self,
        store: Store,
        window_days: float = 30.0,
        local_days: float = LOCAL_DAYS,
        top: int = 5,
    ) -> None:
        self.store = store
        self.window = timedelta(days=window_days)
        self.local = timedelta(days=local_days)
        self.top = top
        self._windows: dict[int, dict[str, Op]] = {}
        self._with_events: dict[int, set[str]] = defaultdict(set)
        self._with_orders: set[int] = set()
        self._exposures: dict[tuple, set[str]] = {}
        self._batches: dict[tuple, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
        self._machine_deviations: dict[tuple, list[tuple[str, datetime]]] = {}

    # -- pulling the neighbourhood ----------------------------------------------------------

    def _deviation(self, deviation_id: str) -> dict[str, Any]:
        rows = self.store.read(queries.RCA_DEVIATION, id=deviation_id)
        if not rows or rows[0]["id"] is None:  # perhaps an ID it had before (an alias)
            known = identity.load(self.store)("Deviation", deviation_id)
            rows = self.store.read(queries.RCA_DEVIATION, id=known) if known != deviation_id else []
        if not rows or rows[0]["id"] is None:
            raise RcaError(f"no deviation {deviation_id!r} in the graph")
        row = rows[0]
        operations = list(row["operations"])
        row["order_level"] = not operations and bool(row["orders"])
        row["machine_level"] = not operations and not row["orders"] and bool(row["machines"])
        if row["order_level"]:
            found = self.store.read(queries.RCA_ORDER_OPERATIONS, orders=row["orders"])
            operations = [r["operation"] for r in found]
        elif row["machine_level"]:
            operations = self._operation_at(row["machines"][0], as_utc(row["start"]))
        row["operations"] = operations
        return row

    def _operation_at(self, machine: str, at: datetime | None) -> list[str]:
        """The operation running on a machine when a machine-level deviation began (or the
        one about to start), which is what the deviation's causes were exposed through."""
        if at is None:
            return []
        rows = self.store.read(queries.RCA_OPERATION_AT, machine=machine, at=at.isoformat())

        def distance(row: dict[str, Any]) -> float:
            start, end = as_utc(row["start"]), as_utc(row["end"]) or as_utc(row["start"])
            if start <= at <= end:
                return 0.0
            return min(abs((at - start).total_seconds()), abs((at - end).total_seconds()))

        rows = [r for r in rows if as_utc(r["start"])]
        return [min(rows, key=distance)["operation"]] if rows else []

    def operations(self, rows: Iterable[dict[str, Any]]) -> dict[str, Op]:
        """Operations from rows with operation, machine, order, start, end."""
        return {
            r["operation"]: Op(
                r["operation"],
                r["machine"],
                r["order"],
                as_utc(r["start"]),
                as_utc(r["end"]),
                step=r.get("step"),
            )
            for r in rows
        }

    def _window(self, around: datetime, orders: bool = False) -> tuple[dict[str, Op], int]:
        """Every operation within ``window`` of ``around`` with the deviations about it (and,
        with ``orders``, about its order), read per quarter-window bucket and kept, so a batch
        of deviations reads each stretch of the plant once."""
        quarter = self.window.total_seconds() / 4 or 1
        bucket = int(around.timestamp() // quarter)
        since = datetime.fromtimestamp(bucket * quarter, UTC) - self.window
        until = datetime.fromtimestamp((bucket + 1) * quarter, UTC) + self.window
        if bucket not in self._windows:
            span = {"since": since.isoformat(), "until": until.isoformat()}
            rows = self.store.read(queries.RCA_WINDOW, **span)[0]["rows"]
            self._windows[bucket] = {
                name: Op(name, machine, None, _epoch(start), _epoch(end), step=step)
                for name, start, end, step, machine in rows
            }
            self._deviations_read(bucket, queries.RCA_WINDOW_DEVIATIONS, since, until, False)
        if orders and bucket not in self._with_orders:
            self._with_orders.add(bucket)
            query = queries.RCA_WINDOW_ORDER_DEVIATIONS
            self._deviations_read(bucket, query, since, until, True)
        ops = self._windows[bucket]
        near = {
            k: op
            for k, op in ops.items()
            if op.start and around - self.window <= op.start <= around + self.window
        }
        return near, bucket

    def _deviations_read(
        self, bucket: int, query: str, since: datetime, until: datetime, orders: bool
    ) -> None:
        """Mark the bucket's operations with the deviations about them (or their orders)."""
        ops = self._windows[bucket]
        # a deviation starts with or after its work: look a day further for it
        span = {
            "since": (since - timedelta(days=1)).isoformat(),
            "until": (until + timedelta(days=1)).isoformat(),
        }
        for name, kind in self.store.read(query, **span)[0]["rows"]:
            op = ops.get(name)
            if op is not None:
                (op.order_deviation_types if orders else op.deviation_types).add(kind)

    def attach_factors(self, ops: dict[str, Op]) -> None:
        """Read every factor of the operations and the deviations they showed (also used by
        risk scoring, which learns from the same factors)."""
        self._attach_links(ops)
        self._attach_machine_events(ops)

    def _attach_links(self, ops: dict[str, Op]) -> None:
        names = list(ops)
        for r in self.store.read(queries.RCA_OPERATION_DEVIATIONS, ops=names):
            ops[r["operation"]].deviation_types = set(r["own"])
            ops[r["operation"]].order_deviation_types = set(r["orders"])
        for r in self.store.read(queries.RCA_LOTS, ops=names):
            op = ops[r["operation"]]
            at = as_utc(r["at"]) or op.start
            path = [
                _node("Operation", op.operation),
                _rel("CONSUMED_BY", "in", at),
                _node("MaterialLot", r["lot"]),
            ]
            lot = ("MaterialLot", r["lot"])
            op.factors.append(Factor(lot, *lot, "material_lot", at, 1.0, path))
            if r["supplier"]:
                via = path + [_rel("SUPPLIED", "in", None), _node("Supplier", r["supplier"])]
                supplier = ("Supplier", r["supplier"])
                op.factors.append(Factor(supplier, *supplier, "supplier", at, 1.0, via))
        for r in self.store.read(queries.RCA_PEOPLE, ops=names):
            op = ops[r["operation"]]
            lapsed = [s for s in r["skills"] if s.get("skill") and not _valid(s, op.start)]
            detail = ", ".join(
                f"{s['skill']} certification {s['certified'] or 'missing'}" for s in lapsed
            )
            path = [
                _node("Operation", op.operation),
                _rel("PERFORMED", "in", op.start),
                _node("Person", r["person"]),
            ]
            cause = "uncertified_operator" if lapsed else "person"
            person = ("Person", r["person"])
            op.factors.append(Factor(person, *person, cause, op.start, 1.0, path, detail))
        for r in self.store.read(queries.RCA_UPSTREAM, ops=names):
            op, machine, end = ops[r["operation"]], r["machine"], as_utc(r["end"])
            path = [
                _node("Operation", op.operation),
                _rel("HAS_OPERATION", "in", None),
                _node("ProductionOrder", r["order"]),
                _rel("HAS_OPERATION", "out", end),
                _node("Operation", r["upstream"]),
            ]
            if machine and machine != op.machine:  # its own machine is a candidate already
                via = path + [
                    _rel("ON_MACHINE", "out", end),
                    _node("Machine", machine),
                ]
                upstream = ("upstream", machine)
                op.factors.append(
                    Factor(upstream, "Machine", machine, "upstream_operation", end,
                           1.0, via, r["upstream"])
                )  # fmt: skip
            if r["lot"]:
                at = as_utc(r["consumed"]) or end
                via = path + [_rel("CONSUMED_BY", "in", at), _node("MaterialLot", r["lot"])]
                lot = ("MaterialLot", r["lot"])
                op.factors.append(
                    Factor((CARRIED, *lot), *lot, "material_lot", at, 1.0, via, r["upstream"])
                )
                if r["supplier"]:
                    via = via + [_rel("SUPPLIED", "in", None), _node("Supplier", r["supplier"])]
                    supplier = ("Supplier", r["supplier"])
                    op.factors.append(
                        Factor((CARRIED, *supplier), *supplier, "supplier", at, 1.0, via)
                    )

    def _attach_machine_events(self, ops: dict[str, Op]) -> None:
        """The machine, and what happened on it before each operation: a pending missed
        maintenance, a recent changeover, alarms, failed checklists."""
        machines = sorted({op.machine for op in ops.values() if op.machine})
        starts = [op.start for op in ops.values() if op.start]
        if not machines or not starts:
            return
        span = {
            "machines": Rows(machines),
            "since": (min(starts) - self.window).isoformat(),
            "until": max(op.end or op.start for op in ops.values() if op.start).isoformat(),
        }
        by_machine: dict[str, list[Op]] = defaultdict(list)
        for op in ops.values():
            if op.machine:
                machine = ("Machine", op.machine)
                op.factors.append(
                    Factor(machine, *machine, "machine", op.start, 1.0, _machine_path(op))
                )
                by_machine[op.machine].append(op)
        self._maintenance(by_machine, self.store.read(queries.RCA_MAINTENANCE, **span))
        self._changeovers(by_machine, self.store.read(queries.RCA_CHANGEOVERS, **span))
        self._alarms(by_machine, self.store.read(queries.RCA_ALARMS, **span))
        self._inspections(by_machine, self.store.read(queries.RCA_INSPECTIONS, **span))

    def _maintenance(self, by_machine: dict[str, list[Op]], rows: list[dict]) -> None:
        events = _by_machine(rows)
        for machine, ops in by_machine.items():
            history = events.get(machine, [])
            for op in ops:
                if not op.start:
                    continue
                before = [e for e in history if e["at"] <= op.start]
                # A missed maintenance stays a factor until maintenance is done after it.
                pending = None
                for event in before:
                    if event["status"] in ("missed", "overdue"):
                        pending = pending or event
                    elif event["status"] == "done":
                        pending = None
                if pending:
                    path = _machine_path(op) + [
                        _rel("HAD_MAINTENANCE", "out", pending["at"]),
                        _node("MaintenanceEvent", pending["id"]),
                    ]
                    op.factors.append(
                        Factor(
                            ("MaintenanceEvent", pending["id"]),
                            "MaintenanceEvent",
                            pending["id"],
                            "missed_maintenance",
                            pending["at"],
                            1.0,
                            path,
                            f"{pending['type'] or 'maintenance'} {pending['status']}",
                        )
                    )

    def _changeovers(self, by_machine: dict[str, list[Op]], rows: list[dict]) -> None:
        events = _by_machine(rows)
        for machine, op, event in _latest(by_machine, events, CHANGEOVER_REACH, to_end=False):
            path = _machine_path(op) + [
                _rel("HAD_CHANGEOVER", "out", event["at"]),
                _node("Changeover", event["id"]),
            ]
            op.factors.append(
                Factor(
                    ("changeover", machine),
                    "Changeover",
                    event["id"],
                    "changeover",
                    event["at"],
                    1.0,
                    path,
                    f"to {event['product']}" if event["product"] else "",
                )
            )
        # The setup an operation ran in (its machine's last changeover, however long ago):
        # a fixture built badly for one product stays bad until it is rebuilt, and it is
        # remounted whenever the product comes back to the machine.
        for machine, op, event in _latest(by_machine, events, self.window, to_end=False):
            if not event["product"]:
                continue
            path = _machine_path(op) + [
                _rel("HAD_CHANGEOVER", "out", event["at"]),
                _node("Changeover", event["id"]),
            ]
            op.factors.append(
                Factor(
                    ("setup", machine, event["product"]),
                    "Changeover",
                    event["id"],
                    "setup",
                    event["at"],
                    1.0,
                    path,
                    f"to {event['product']}",
                )
            )

    def _alarms(self, by_machine: dict[str, list[Op]], rows: list[dict]) -> None:
        events = _by_machine(rows, lambda r: r["level"] in ("Warning", "Fault"))
        for machine, ops in by_machine.items():
            for op in ops:
                if not op.start:
                    continue
                end = op.end or op.start
                for event in events.get(machine, []):
                    if not op.start - ALARM_REACH <= event["at"] <= end:
                        continue
                    weight = 1.0 if event["at"] <= op.start else 0.5  # during: maybe a symptom
                    path = _machine_path(op) + [
                        _rel("RAISED", "out", event["at"]),
                        _node("Alarm", event["id"]),
                    ]
                    op.factors.append(
                        Factor(
                            ("alarm", machine, event["code"], event["level"]),
                            "Alarm",
                            event["id"],
                            "alarm",
                            event["at"],
                            weight,
                            path,
                            f"{event['level']} {event['code']}",
                        )
                    )

    def _inspections(self, by_machine: dict[str, list[Op]], rows: list[dict]) -> None:
        events = _by_machine(rows, lambda r: r["failed"] > 0)
        for machine, op, event in _latest(by_machine, events, INSPECTION_REACH, to_end=True):
            path = _machine_path(op) + [
                _rel("INSPECTED", "in", event["at"]),
                _node("Inspection", event["id"]),
            ]
            op.factors.append(
                Factor(
                    ("inspection", machine, event["template"] or ""),
                    "Inspection",
                    event["id"],
                    "failed_checklist",
                    event["at"],
                    1.0,
                    path,
                    f"{event['failed']} failed in {event['title'] or 'a checklist'}",
                )
            )

    def _exposure(
        self, bucket: int, classes: Iterable[tuple[str, ...]], window: dict[str, Op]
    ) -> dict[tuple[str, ...], set[str]]:
        """The operations each candidate class touched (kept per window bucket)."""
        reads = {
            "MaterialLot": queries.RCA_EXPOSURE_LOTS,
            "Supplier": queries.RCA_EXPOSURE_SUPPLIERS,
            "Person": queries.RCA_EXPOSURE_PEOPLE,
            "upstream": queries.RCA_EXPOSURE_UPSTREAM,
        }
        wanted: dict[str, list[str]] = defaultdict(list)
        for cls in classes:
            kind, key = cls[-2:] if cls[0] == CARRIED else cls[:2]
            if kind in reads and (bucket, cls) not in self._exposures:
                wanted[kind].append(key)
        if wanted:
            starts = [op.start for op in window.values() if op.start]
            span = {
                "since": min(starts).isoformat(),
                "until": max(starts).isoformat(),
                "history": (min(starts) - self.window).isoformat(),  # earlier steps' start
            }
            for kind, keys in wanted.items():
                found: dict[tuple, set[str]] = {}
                for key in keys:  # what consumed it, and what it was carried into
                    found[(kind, key)], found[(CARRIED, kind, key)] = set(), set()
                for r in self.store.read(reads[kind], keys=Rows(sorted(set(keys))), **span):
                    cls = (CARRIED, kind, r["key"]) if r.get("carried") else (kind, r["key"])
                    found[cls].add(r["operation"])
                    if r.get("lot"):
                        self._batches[(bucket, cls)][r["lot"]].add(r["operation"])
                for cls, ids in found.items():
                    self._exposures[(bucket, cls)] = ids
        return {cls: self._exposures.get((bucket, cls), set()) for cls in classes}

    def _bad(
        self, window: dict[str, Op], kinds: set[str], level: str, around: datetime
    ) -> frozenset[str]:
        """The window's operations that showed the same kind of deviation."""
        if level == "machine":
            key = (tuple(sorted(kinds)), int(around.timestamp() // 86400))
            if key not in self._machine_deviations:
                rows = self.store.read(
                    queries.RCA_MACHINE_DEVIATIONS,
                    types=sorted(kinds),
                    since=(around - 2 * self.window).isoformat(),
                    until=(around + 2 * self.window).isoformat(),
                )
                self._machine_deviations[key] = [
                    (r["machine"], as_utc(r["at"])) for r in rows if as_utc(r["at"])
                ]
            events: dict[str, list[datetime]] = defaultdict(list)
            for machine, at in self._machine_deviations[key]:
                events[machine].append(at)
            return frozenset(
                k
                for k, op in window.items()
                if op.start
                and any(
                    op.start - ALARM_REACH <= at <= (op.end or op.start)
                    for at in events.get(op.machine or "", ())
                )
            )
        return frozenset(
            k
            for k, op in window.items()
            if (op.deviation_types | (op.order_deviation_types if level == "order" else set()))
            & kinds
        )

    # -- scoring ------------------------------------------------------------------------------

    def _case(self, deviation_id: str) -> _Case:
        """The deviation, its work with its candidates, and the window they are judged in."""
        deviation = self._deviation(deviation_id)
        if not deviation["operations"]:
            if deviation["machine_level"]:
                raise RcaError(
                    f"{deviation_id} is about machine {deviation['machines'][0]}, but no "
                    "operation ran on it then; root causes are traced through the work"
                )
            raise RcaError(
                f"{deviation_id} is about no operation, order or machine; root-cause "
                "analysis traces deviations of production work and machines"
            )
        targets = self.operations(
            self.store.read(queries.RCA_OPERATIONS, ops=deviation["operations"])
        )
        around = as_utc(deviation["start"]) or next(
            (op.start for op in targets.values() if op.start), datetime.now(UTC)
        )
        level = _level(deviation)
        window, bucket = self._window(around, orders=level == "order")
        for name, op in targets.items():
            if name in window:
                op.step = window[name].step
        self._attach_links(targets)
        self._attach_machine_events(targets)
        candidates, exposed = self._candidates(targets, window, bucket)
        # The deviating work is data too: counted with everything else, it adds one deviating
        # operation to each of its candidates, which the prior keeps from deciding alone.
        comparison = {**window, **{k: window.get(k, op) for k, op in targets.items()}}
        bad = self._bad(comparison, family(deviation["type"]), level, around) | set(targets)
        return _Case(deviation, targets, around, comparison, frozenset(bad), candidates, exposed)

    def analyze(self, deviation_id: str) -> RcaResult:
        """Rank the likely causes of one deviation."""
        case = self._case(deviation_id)
        deviation, targets, candidates = case.deviation, case.targets, case.candidates
        deviation_id = deviation["id"]  # its business key, if it was asked by an alias
        self._count(candidates, case.exposed, case.comparison, case.bad, case.around)
        causes, rest = self._rank(candidates, case.comparison, case.bad, frozenset(targets))
        notes: list[str] = []
        subjects = {
            "operations": sorted(targets),
            "orders": sorted({op.order for op in targets.values() if op.order}),
            "machines": sorted({op.machine for op in targets.values() if op.machine}),
            "lots": sorted(
                {f.key for op in targets.values() for f in op.factors if f.label == "MaterialLot"}
            ),
        }
        clear = bool(causes) and causes[0].confidence >= CLEAR
        if not clear:
            nearest = ", ".join(f"{c.label} {c.key}" for c in (causes + rest)[:3])
            notes.append(
                "no clear cause: nothing the work was exposed to deviated clearly more often "
                "than the rest of the plant"
                + (f"; nearest candidates: {nearest}" if nearest else "")
            )
        return RcaResult(
            deviation_id,
            deviation["type"],
            deviation["description"] or "",
            subjects,
            causes[: self.top],
            notes=notes,
            clear=clear,
            candidates=rest,
        )

    def _candidates(
        self, targets: dict[str, Op], window: dict[str, Op], bucket: int
    ) -> tuple[list[_Candidate], dict[tuple, set[str]]]:
        """The target's factors as candidates, and the operations each class (candidates and
        symptoms) touched."""
        found: dict[tuple, _Candidate] = {}
        symptoms: list[tuple[Factor, Op]] = []
        for op in targets.values():
            for factor in op.factors:
                if op.end and factor.at and factor.at > op.end:
                    continue  # after the effect: never a cause
                if factor.cls[0] in SYMPTOMS:
                    symptoms.append((factor, op))
                elif factor.cls not in found:
                    found[factor.cls] = _Candidate(factor.cls, factor, op)
        machines = {op.machine for op in targets.values() if op.machine}
        on_machines = {k: op for k, op in window.items() if op.machine in machines}
        fresh = {
            k: op for k, op in on_machines.items() if op.machine not in self._with_events[bucket]
        }
        if fresh:
            self._attach_machine_events(fresh)
            self._with_events[bucket] |= {op.machine for op in fresh.values()}
        by_class: dict[tuple, set[str]] = defaultdict(set)
        for name, op in on_machines.items():
            by_class[("Machine", op.machine)].add(name)
            for factor in op.factors:
                by_class[factor.cls].add(name)
        exposure = self._exposure(bucket, list(found), window)
        exposed = {**by_class, **{k: v for k, v in exposure.items() if v}}
        exposed.update(self._pooled({_pool(f.cls) for f, _ in symptoms}, window))
        for candidate in found.values():
            candidate.flags = self._flags(candidate, window, exposed)
            if candidate.factor.label == "Supplier":
                candidate.batches = self._batches.get((bucket, candidate.cls), {})
            # A machine's symptoms support what is about the machine: the machine itself, a
            # maintenance missed on it, its changeovers (not one product's setup on it).
            if candidate.factor.cause_type in ("machine", "missed_maintenance", "changeover"):
                for factor, op in symptoms:
                    known = {s.cls for s in candidate.symptoms}
                    if op.machine == candidate.op.machine and factor.cls not in known:
                        candidate.symptoms.append(factor)
        return list(found.values()), exposed

    def _pooled(self, pools: set[tuple[str, ...]], window: dict[str, Op]) -> dict[tuple, set[str]]:
        """For each kind of symptom (an alarm code and level, a checklist template failed),
        the window's operations whose machine showed it, on any machine of the plant."""
        codes = sorted({p[1] for p in pools if p[0] == "alarm"})
        templates = sorted({p[1] for p in pools if p[0] == "inspection"})
        starts = [op.start for op in window.values() if op.start]
        if not pools or not starts:
            return {}
        span = {"since": (min(starts) - INSPECTION_REACH).isoformat()}
        span["until"] = max(op.end or op.start for op in window.values() if op.start).isoformat()
        events: list[tuple[tuple, str, datetime, timedelta]] = []
        if codes:
            for r in self.store.read(queries.RCA_ALARMS_LIKE, codes=Rows(codes), **span):
                if as_utc(r["at"]):
                    pool = ("alarm", r["code"], r["level"])
                    events.append((pool, r["machine"], as_utc(r["at"]), ALARM_REACH))
        if templates:
            rows = self.store.read(
                queries.RCA_FAILED_INSPECTIONS_LIKE, templates=Rows(templates), **span
            )
            for r in rows:
                if as_utc(r["at"]):
                    pool = ("inspection", r["template"])
                    events.append((pool, r["machine"], as_utc(r["at"]), INSPECTION_REACH))
        by_machine: dict[str, list[Op]] = defaultdict(list)
        for op in window.values():
            if op.machine and op.start:
                by_machine[op.machine].append(op)
        for ops in by_machine.values():
            ops.sort(key=lambda o: o.start)
        found: dict[tuple, set[str]] = {pool: set() for pool in pools}
        for pool, machine, at, reach in events:
            if pool not in found:
                continue
            ops = by_machine.get(machine, [])
            # operations that started up to a day before the event and at most `reach` after
            first = bisect_left([o.start for o in ops], at - timedelta(days=1))
            for op in ops[first:]:
                if op.start > at + reach:
                    break
                if op.start - reach <= at <= (op.end or op.start):
                    found[pool].add(op.operation)
        return found

    def _flags(
        self, candidate: _Candidate, window: dict[str, Op], exposed: dict[tuple, set[str]]
    ) -> list[str]:
        """What the records say beside the counts: extra evidence, never the only one."""
        factor, op = candidate.factor, candidate.op
        # the certification of a person; an event's detail is already in its sentence
        flags = [factor.detail] if factor.detail and factor.label == "Person" else []
        if factor.label == "Person" and op.start and op.step:
            earlier = [
                o
                for o in exposed.get(candidate.cls, ())
                if o in window
                and window[o].step == op.step
                and window[o].start
                and window[o].start < op.start
            ]
            if len(earlier) < 3:
                flags.append(f"new to {op.step}: {len(earlier)} earlier run(s) in the window")
        return flags

    def _count(
        self,
        candidates: list[_Candidate],
        exposed: dict[tuple, set[str]],
        comparison: dict[str, Op],
        bad: frozenset[str],
        around: datetime,
    ) -> None:
        everything = frozenset(comparison)
        local = frozenset(
            k for k, op in comparison.items() if op.start and abs(op.start - around) <= self.local
        )
        steps: dict[str | None, set[str]] = defaultdict(set)
        for k, op in comparison.items():
            steps[op.step].add(k)
        by_step = {
            "window": _Strata.of(everything, comparison, bad),
            "local": _Strata.of(local, comparison, bad),
        }

        for candidate in candidates:
            step = frozenset(steps.get(candidate.op.step, ())) if candidate.op.step else None
            own = candidate.touched = frozenset(exposed.get(candidate.cls, ())) & everything
            if candidate.batches:
                # A bad batch is the lot's problem, not its supplier's: the supplier's worst
                # batch that this work did not use is left out when it deviated credibly more
                # often than the supplier's other work (a supplier whose batches are all
                # worse keeps them all).
                used = {f.key for f in candidate.op.factors if f.label == "MaterialLot"}
                others = [ids for lot, ids in candidate.batches.items() if lot not in used]
                if others:
                    worst = frozenset(max(others, key=lambda ids: (len(ids & bad), len(ids))))
                    base = (len(bad) + 0.5) / (len(everything) + 1)
                    if _higher(worst, own - worst, bad, base) >= CREDIBLY:
                        own -= worst
            ways: list[tuple[frozenset[str], Factor | None, frozenset[str] | None]] = [
                (own, None, None)
            ]
            for symptom in candidate.symptoms:
                ids = frozenset(exposed.get(symptom.cls, ()))
                if candidate.factor.label == "Machine":  # the machine's, and the plant's
                    ways.append((ids & everything, symptom, None))
                    plant = frozenset(exposed.get(_pool(symptom.cls), ())) & everything
                    ways.append((plant, symptom, own))
                else:  # what is about the machine: its own work that showed the symptom
                    ways.append((ids & own, symptom, None))
            for ids, via, scope in ways:
                for view, reference in (("window", everything), ("local", local)):
                    candidate.counts.append(
                        _Count(view, ids & reference, reference, bad, via, scope, by_step[view])
                    )
                    if step is not None:
                        ref = reference & step
                        candidate.counts.append(
                            _Count(f"{view}, same step", ids & ref, ref, bad, via, scope)
                        )
        _bounds([c for candidate in candidates for c in candidate.counts])
        for candidate in candidates:
            candidate.rank()

    def _rank(
        self,
        candidates: list[_Candidate],
        comparison: dict[str, Op],
        bad: frozenset[str],
        targets: frozenset[str],
    ) -> tuple[list[Cause], list[Cause]]:
        """Rank by the joint model (``_Joint``): fitted over all the window's work at once, a
        candidate whose deviations another explains is left with little, without rules for
        which kind of candidate explains which."""
        joint = _Joint.fit(candidates, comparison, bad, targets)
        fitted = sorted(
            ((joint.of(i), c) for i, c in enumerate(candidates)),
            # equal fits: the direct link first, then the more specific candidate (the
            # missed maintenance or the setup rather than the machine they are about)
            key=lambda j: (-j[0][0], -j[0][1], j[1].indirect, len(j[1].touched)),
        )
        causes, rest = [], []
        chosen: list[_Candidate] = []
        for (score, confidence, credited, alike), candidate in fitted:
            # the same work counted through something else: the nearer link is the cause
            nearer = candidate.indirect and any(not candidates[c].indirect for c in alike)
            # a cause stays elevated without the work of the causes ranked above it
            covering = [c for c in chosen if candidate.touched & c.touched]
            if covering and candidate.best is not None:
                union = frozenset().union(*(c.touched for c in covering))
                if candidate.best.score(exclude=union)[0] <= 0:
                    candidate.explained_by = max(
                        covering, key=lambda c: len(candidate.touched & c.touched)
                    )
            exclude = candidate.explained_by.touched if candidate.explained_by else frozenset()
            cause = _cause(candidate, score, confidence, exclude)
            others = candidate.best.exposed - targets if candidate.best else set()
            bad = len(others & candidate.best.bad) if candidate.best else 0
            beyond = bool(others) and bad / len(others) > cause.base_rate
            # listed as a cause: its work deviated more often than the reference (never one
            # at or below it), beyond this deviation, and the model credits it with some
            if (
                candidate.score > 0
                and beyond
                and credited >= 0.5
                and not nearer
                and candidate.explained_by is None
            ):
                causes.append(cause)
                chosen.append(candidate)
            else:
                rest.append(cause)
        seen: set[tuple[str, str]] = set()
        ranked = []
        for group in (causes, rest):  # in the fitted order
            ranked.append([])
            for cause in group:
                if (cause.label, cause.key) not in seen:
                    seen.add((cause.label, cause.key))
                    ranked[-1].append(cause)
        return ranked[0], ranked[1]

    # -- running over many, persisting ----------------------------------------------------------

    def persist(self, result: RcaResult, run_id: str | None = None) -> str:
        """Replace the deviation's inferred edges: CAUSED_BY to the top cause when it stands
        out, CONTRIBUTED_TO to the other causes. Re-running replaces, never duplicates."""
        run_id = run_id or f"rca-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
        now = datetime.now(UTC).isoformat()

        def work(tx: Any) -> None:
            tx.run(queries.RCA_FORGET, id=result.deviation).consume()
            for rank, cause in enumerate(result.causes, start=1):
                rel_type = "CAUSED_BY" if rank == 1 and result.clear else "CONTRIBUTED_TO"
                rel_spec("Deviation", rel_type, cause.label)  # only declared relationships
                props = {
                    "score": cause.score,
                    "confidence": cause.confidence,
                    "rank": rank,
                    "method": result.method,
                    "run_id": run_id,
                    "cause_type": cause.cause_type,
                    "explanation": cause.explanation,
                    "evidence": json.dumps(cause.evidence, default=str),
                }
                query = queries.rca_remember(rel_type, cause.label, node_spec(cause.label).key)
                tx.run(query, id=result.deviation, key=cause.key, props=props, now=now).consume()

        self.store.transaction(work)
        return run_id

    def deviations(self, since: datetime | None = None, kinds: Iterable[str] = TRACED) -> list[str]:
        rows = self.store.read(
            queries.RCA_DEVIATIONS_SINCE,
            since=(since or datetime(1970, 1, 1, tzinfo=UTC)).isoformat(),
            types=sorted(kinds),
        )
        return [r["id"] for r in rows]

    def common_causes(
        self,
        deviation_type: str | None = None,
        line: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 10,
    ) -> dict[str, Any]:
        """Causes shared by a set of deviations ("9 of 11 scrap deviations on line 2 used lots
        of supplier S-104"), from each deviation's own ranked causes. The type and line are
        matched whatever their case, and refused with the graph's own when unknown."""
        if line is not None:
            lines = [r["id"] for r in self.store.read(queries.RCA_LINES)]
            line = _known(line, lines, "line", "no lines")
        if deviation_type is not None:
            known = sorted(r["type"] for r in self.store.read(queries.RCA_DEVIATION_TYPES))
            deviation_type = _known(deviation_type, known, "deviations of type", "no deviations")
        ids = [
            r["id"]
            for r in self.store.read(
                queries.RCA_COMMON_SELECTION,
                type=deviation_type,
                line=line,
                since=_iso(since),
                until=_iso(until),
            )
        ]
        counts: Counter[str] = Counter()
        first: dict[str, Cause] = {}
        examples: dict[str, list[str]] = defaultdict(list)
        keys: dict[str, set[str]] = defaultdict(set)
        analysed = 0
        for deviation_id in ids:
            try:
                result = self.analyze(deviation_id)
            except RcaError:
                continue
            analysed += 1
            for cause in result.causes[:3]:
                counts[cause.pattern] += 1
                first.setdefault(cause.pattern, cause)
                examples[cause.pattern].append(deviation_id)
                keys[cause.pattern].add(cause.key)
        shared = [
            {
                "pattern": pattern,
                "label": first[pattern].label,
                "keys": sorted(keys[pattern])[:10],
                "cause_type": first[pattern].cause_type,
                "deviations": n,
                "of": analysed,
                "examples": examples[pattern][:5],
                "explanation": f"{n} of {analysed} selected deviations have {pattern} among "
                "their three most likely causes",
            }
            for pattern, n in counts.most_common(limit)
        ]
        return {"selected": len(ids), "analysed": analysed, "shared_causes": shared}


def _known(value: str, known: list[str], what: str, none: str) -> str:
    """``value`` as the graph spells it, or an RcaError listing what the graph has."""
    found = {k.lower(): k for k in known}.get(value.lower())
    if found is None:
        raise RcaError(f"no {what} {value!r}; the graph has: " + (", ".join(known) or none))
    return found


@dataclass
class _Joint:
    """A noisy-OR model of the window's work: an operation deviates unless its step's leak
    and every feature it is exposed to all fail to act, each feature with probability p.
    A feature is one way of counting a candidate (its work over the window, near the
    deviation, at the same step, with a symptom). Fitted by EM with a Beta prior (``PRIOR``
    pseudo-operations at the plant's rate), so a feature seen once stays near the prior."""

    owner: list[list[int]]  # the candidates each feature counts (the same work, alike)
    exposed: np.ndarray  # operations each feature touched
    p: np.ndarray  # each feature's fitted probability
    credit: dict[int, list[tuple[int, float, float]]]  # per candidate, per feature: (feature,
    # deviations the candidate caused on that feature's work, ... outside the deviating work)
    on_target: list[np.ndarray]  # per target operation, its features
    leak: np.ndarray  # per target operation: (caused, exposed) of its step's leak
    prior: tuple[float, float]

    @classmethod
    def fit(
        cls,
        candidates: list[_Candidate],
        comparison: dict[str, Op],
        bad: frozenset[str],
        targets: frozenset[str],
    ) -> _Joint:
        features: dict[frozenset[str], list[int]] = {}  # op set -> the candidates it counts

        # The same work counted by two candidates is one feature of the first of them in
        # precedence: direct links before the work's history, the more specific first (the
        # lot before its supplier, the missed maintenance or the changeover before the
        # machine), so the other is judged on the rest of its ways of counting.
        def precedence(i: int) -> tuple[bool, int]:
            c = candidates[i]
            return c.indirect or c.cls[0] in HISTORY, len(c.touched)

        for ci in sorted(range(len(candidates)), key=precedence):
            counts = candidates[ci].counts
            usable = [c for c in counts if c.exposed & targets and c.own is None]
            usable.sort(key=lambda c: -c.score()[0])
            free = [c for c in usable if c.exposed not in features and c.score()[0] > 0]
            for count in free or usable[:1]:
                if ci not in features.setdefault(count.exposed, []):
                    features[count.exposed].append(ci)
        owner = list(features.values())
        # Only work some feature touched is modelled one by one; the rest of a step's work
        # speaks only for its leak, as counts.
        names = sorted(frozenset().union(*features) | (targets & comparison.keys()))
        index = {k: i for i, k in enumerate(names)}
        steps: dict[str | None, int] = {}
        for op in comparison.values():
            steps.setdefault(op.step, len(steps))
        n_s = np.bincount([steps[op.step] for op in comparison.values()], minlength=len(steps))
        k_s = np.bincount([steps[comparison[k].step] for k in bad & comparison.keys()],
                          minlength=len(steps))  # fmt: skip
        step_of = np.array([steps[comparison[k].step] for k in names], dtype=int)
        y = np.array([k in bad for k in names], dtype=bool)
        rest_k = k_s - np.bincount(step_of, weights=y, minlength=len(steps))
        rows = [index[k] for ids in features for k in ids]
        cols = [f for f, ids in enumerate(features) for _ in ids]
        n_ops, n_features = len(names), len(owner)
        x = csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_ops, n_features))
        xt = x.T.tocsr()
        base = (len(bad & comparison.keys()) + 0.5) / (len(comparison) + 1)
        a0, b0 = PRIOR * base, PRIOR * (1 - base)
        n_f = np.asarray(x.sum(axis=0)).ravel()
        leak = (k_s + a0) / (n_s + a0 + b0)
        target_rows = np.array([index[k] for k in targets if k in index], dtype=int)
        # What the work touched is fitted first; the work's history and the setup it ran in
        # are then credited only with what that leaves (where both fit the same deviations
        # equally, the data cannot tell them apart and the direct link is the simpler).
        later = np.array([all(candidates[c].cls[0] in HISTORY for c in o) for o in owner])

        def weights(p: np.ndarray, leak: np.ndarray) -> np.ndarray:
            """1 / P(deviates) for each deviating operation, 0 for the rest (EM's E step:
            a feature's share of a deviation is its probability times this)."""
            log_none = np.log1p(-leak[step_of]) + x @ np.log1p(-p)
            return np.where(y, 1.0 / np.maximum(-np.expm1(log_none), 1e-12), 0.0)

        p = np.zeros(n_features)
        r_s = k_s.astype(float)
        for second, stage in enumerate((~later, later)):
            p = np.where(stage, base, p)
            for _ in range(EM_STEPS):
                w = weights(p, leak)
                r_s = leak * np.bincount(step_of, weights=w, minlength=len(steps)) + rest_k
                new = np.where(stage, (p * (xt @ w) + a0) / (n_f + a0 + b0), p)
                if not second:  # the leak is the work's own candidates' stage
                    leak = (r_s + a0) / (n_s + a0 + b0)
                done = np.max(np.abs(new - p), initial=0.0) < 1e-5
                p = new
                if done:
                    break
        w = weights(p, leak)
        in_target = np.zeros(n_ops, dtype=bool)
        in_target[target_rows] = True
        credit: dict[int, list[tuple[int, float, float]]] = defaultdict(list)
        for ci in {c for o in owner for c in o}:
            mine = np.array([ci in o for o in owner])
            # the candidate's share of each deviating operation, all its ways together
            acts = w * -np.expm1(x @ np.where(mine, np.log1p(-p), 0.0))
            on = xt @ acts, xt @ (acts * ~in_target)
            for f in np.flatnonzero(mine):
                credit[ci].append((int(f), float(on[0][f]), float(on[1][f])))
        on_target = [x[t].indices for t in target_rows]
        leaks = np.array([(r_s[step_of[t]], n_s[step_of[t]]) for t in target_rows])
        return cls(owner, n_f, p, credit, on_target, leaks, (a0, b0))

    def of(self, candidate: int) -> tuple[float, float, float, list[int]]:
        """The candidate's score (the lower credible bound of the rate at which it caused
        deviations, on its best way of counting), its posterior responsibility for the
        deviating work, the deviations credited to it there outside that work, and the
        candidates counted by the same work."""
        if not self.credit.get(candidate):
            return -1.0, 0.0, 0.0, []
        a0, b0 = self.prior
        rows = self.credit[candidate]
        features, caused = np.array([r[0] for r in rows]), np.array([r[1] for r in rows])
        rest = np.maximum(self.exposed[features] - caused, 0)
        bounds = beta.ppf(QUANTILE, caused + a0, rest + b0)
        best = int(np.argmax(bounds))
        feature, _, credited = rows[best]
        return (
            float(bounds[best]),
            self.responsibility.get(candidate, 0.0),
            credited,
            [c for c in self.owner[feature] if c != candidate],
        )

    @cached_property
    def responsibility(self) -> dict[int, float]:
        """Posterior probability that each candidate acted in the deviating work (Monte Carlo
        over the features' Beta posteriors), averaged over its operations."""
        rng = np.random.default_rng(0)
        a0, b0 = self.prior
        caused = self.p * (self.exposed + a0 + b0) - a0  # the fitted features' counts
        draws = rng.beta(
            np.maximum(caused, 0) + a0, np.maximum(self.exposed - caused, 0) + b0,
            (DRAWS, len(self.owner)),
        )  # fmt: skip
        total: dict[int, float] = defaultdict(float)
        for features, (r_s, n_s) in zip(self.on_target, self.leak, strict=True):
            leak = rng.beta(r_s + a0, max(n_s - r_s, 0) + b0, DRAWS)
            log_quiet = np.log1p(-draws[:, features])
            anything = -np.expm1(np.log1p(-leak) + log_quiet.sum(axis=1))
            for c in {c for f in features for c in self.owner[f]}:
                own = [j for j, f in enumerate(features) if c in self.owner[f]]
                acts = -np.expm1(log_quiet[:, own].sum(axis=1))
                total[c] += float(np.mean(acts / anything)) / len(self.on_target)
        return total


def _level(deviation: dict[str, Any]) -> str:
    """What the deviation is about: an order's work, a machine's, or an operation."""
    if deviation["order_level"]:
        return "order"
    return "machine" if deviation["machine_level"] else "operation"


def _epoch(millis: int | None) -> datetime | None:
    return None if millis is None else datetime.fromtimestamp(millis / 1000, UTC)


def _pool(cls: tuple[str, ...]) -> tuple[str, ...]:
    """A symptom's kind without its machine (``("alarm", code, level)``)."""
    return (cls[0], *cls[2:])


def _latest(
    by_machine: dict[str, list[Op]],
    events: dict[str, list[dict[str, Any]]],
    reach: timedelta,
    to_end: bool,
) -> Iterator[tuple[str, Op, dict[str, Any]]]:
    """For each operation, the machine's last event from ``reach`` before its start to its
    start (or, ``to_end``, to its end)."""
    for machine, ops in by_machine.items():
        for op in ops:
            if not op.start:
                continue
            until = (op.end or op.start) if to_end else op.start
            recent = [e for e in events.get(machine, []) if op.start - reach <= e["at"] <= until]
            if recent:
                yield machine, op, recent[-1]


def _by_machine(
    rows: list[dict[str, Any]], keep: Callable[[dict[str, Any]], bool] = lambda _: True
) -> dict[str, list[dict[str, Any]]]:
    """Machine events with a time, grouped by machine and sorted by time."""
    events: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        row["at"] = as_utc(row["at"])
        if row["at"] and keep(row):
            events[row["machine"]].append(row)
    for history in events.values():
        history.sort(key=lambda e: e["at"])
    return events


def _valid(skill: dict[str, Any], at: datetime | None) -> bool:
    if (skill.get("certified") or "yes").lower() not in ("yes", "true", "valid"):
        return False
    until = as_utc(skill.get("valid_until"))
    return not (until and at and until < at)


def _node(label: str, key: str) -> dict[str, Any]:
    return {"label": label, "key": key}


def _rel(rel_type: str, direction: str, at: datetime | None) -> dict[str, Any]:
    return {"type": rel_type, "direction": direction, "at": _iso(at)}


def _machine_path(op: Op) -> list[dict[str, Any]]:
    return [
        _node("Operation", op.operation),
        _rel("ON_MACHINE", "out", op.start),
        _node("Machine", op.machine or "?"),
    ]


def _cause(candidate: _Candidate, score: float, confidence: float, exclude: frozenset) -> Cause:
    factor, op, count = candidate.factor, candidate.op, candidate.best
    pattern = {
        "changeover": f"changeovers on {op.machine}",
        "setup": f"setups {factor.detail} on {op.machine}",
        "upstream_operation": f"work fed from {candidate.cls[1]}",
    }.get(factor.cause_type, f"{factor.label} {factor.key}")
    deviation_path = [{"label": "Deviation", "key": "(this)"}, _rel("ABOUT", "out", op.start)]
    status = (factor.detail.split() or ["missed"])[-1]
    what = {
        "material_lot": f"Lot {factor.key} was consumed by {op.operation}"
        if not factor.detail
        else f"Lot {factor.key} was consumed by {factor.detail}, earlier in the order of "
        f"{op.operation}",
        "supplier": f"Supplier {factor.key} delivered the lot consumed by {op.operation}",
        "person": f"{factor.key} performed {op.operation}",
        "uncertified_operator": f"{factor.key} performed {op.operation}",
        "machine": f"{op.operation} ran on {factor.key}",
        "missed_maintenance": f"{factor.key} on {op.machine} was {status} before {op.operation}",
        "changeover": f"Changeover {factor.key} on {op.machine} ({factor.detail}) just before "
        f"{op.operation}",
        "setup": f"{op.operation} ran in the setup of {op.machine} {factor.detail} (changeover "
        f"{factor.key})",
        "upstream_operation": f"{factor.detail} ran on {factor.key} earlier in the order of "
        f"{op.operation}",
    }.get(factor.cause_type, f"{factor.label} {factor.key}")
    evidence = [deviation_path + factor.path]
    evidence += [deviation_path + s.path for s in candidate.symptoms[:3]]
    if count is None:
        return Cause(
            factor.label, factor.key, factor.cause_type, score, 0, 0, 0.0, evidence,
            f"{what}; no other operation in the window was exposed to it.", confidence, pattern,
        )  # fmt: skip
    ids = count.exposed - exclude
    bad, exposed = len(ids & count.bad), len(ids)
    where = "" if count.view == "window" else f" ({count.view})"
    via = f" with {count.via.detail}" if count.via is not None else ""
    share = (
        f"{bad} of {exposed} operations{via}{where} deviated, this one included "
        f"(reference {count.base:.0%})"
    )
    if candidate.explained_by is not None:
        other = candidate.explained_by.factor
        share += f"; without those of {other.label} {other.key}"
    flags = "".join(f"; {flag}" for flag in candidate.flags)
    symptoms = sorted({s.detail for s in candidate.symptoms if s.detail})
    seen = f"; symptoms: {', '.join(symptoms[:3])}" if symptoms else ""
    return Cause(
        factor.label, factor.key, factor.cause_type, score, bad, exposed, count.base, evidence,
        f"{what}; {share}{flags}{seen}.", confidence, pattern,
    )  # fmt: skip


# -- baselines (benchmarks/rca_accuracy.py) -------------------------------------------------------


def baseline_rankings(
    analyzer: RootCauseAnalyzer, deviation_id: str, days: float = 7.0
) -> dict[str, list[tuple[str, str]]]:
    """The candidates ranked by the contrast statistic RCA must beat: for each entity the
    deviation's work touched, the Laplace-smoothed deviation rate of all operations that
    touched it (itself included), over the analyzer's window and within ``days``."""
    case = analyzer._case(deviation_id)
    window, bad, around, targets = case.comparison, case.bad, case.around, case.targets
    candidates, exposed = case.candidates, case.exposed
    # what the work touched itself: not its order's history, nor the setup it ran in
    touched = [c for c in candidates if c.cls[0] not in (CARRIED, "setup", "upstream")]
    per_key: dict[tuple[str, str], set[str]] = defaultdict(set)
    for name, op in window.items():
        for factor in op.factors:
            per_key[(factor.label, factor.key)].add(name)
    rankings = {}
    for name, reach in (("contrast", analyzer.window), (f"contrast ±{days:g}d", timedelta(days))):
        near = {k for k, op in window.items() if op.start and abs(op.start - around) <= reach}

        def rate(c: _Candidate, near: set[str] = near) -> float:
            key = (c.factor.label, c.factor.key)
            if c.factor.label in ("MaintenanceEvent", "Changeover"):
                ids = per_key.get(key, set())
            else:
                ids = exposed.get(c.cls, set())
            ids = (ids & near) | set(targets)
            return (len(ids & bad) + 1) / (len(ids) + 2)

        ranked = sorted(touched, key=lambda c: (-rate(c), c.factor.label, c.factor.key))
        rankings[name] = [(c.factor.label, c.factor.key) for c in ranked]
    return rankings
