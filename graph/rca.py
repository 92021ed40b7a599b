"""Root-cause analysis: for a deviation, rank the entities that most likely caused it, each
with the evidence paths that connect it, and persist the result as inferred edges.

How it works, and why:

1. **Neighbourhood pull (Cypher, bounded).** The deviation's operations and the comparable
   operations around them — same machine type, within ``window`` days, at most
   ``fanout_cap`` — with what each one touched: the lots it consumed and their suppliers,
   the people who performed it and their certifications, the machine, the upstream operation,
   and the machine's maintenance, changeovers and alarms in that time range.
2. **Time-directed factors.** An entity becomes a factor of an operation only if it came
   before the operation could be affected: a lot consumed by it, the last maintenance before
   it started (a *missed* one stays a factor until a later one is done), a changeover up to
   four hours before it, an alarm from two hours before to its end (weighted down when it
   only happened during the operation: then it may be a symptom). Nothing after the
   operation's end is ever a candidate.
3. **Relative personalized PageRank on the operation–factor graph.** Operations and factor
   classes form a bipartite graph (a changeover counts towards the class "changeovers on this
   machine", so one bad setup routine is recognised across its instances). A random walk with
   restart from the operations that showed the same kind of deviation (leaving the deviation
   under analysis out) is compared with one restarting from all comparable operations: the
   ratio is high for factors behind many similar deviations and absent from normal runs, and
   the diffusion over shared operations damps factors seen only once or twice (an alarm
   during one bad run) far better than a raw rate does.
4. **Result.** The target's own factors ranked by that ratio, with the share of operations
   behind it that deviated, the evidence path from the deviation to it, and a sentence.

``benchmarks/rca_accuracy.py`` compares this with the plain contrast statistic, recency,
frequency and random baselines on demo plants with injected causes.
"""

from __future__ import annotations

import json
import random
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import networkx as nx

from opsgraph.schema import node_spec, rel_spec
from opsgraph.schema.base import as_utc

from . import queries
from .store import Store

METHOD = "relative-ppr/v1"
QUALITY = {"scrap", "out_of_spec", "short_order"}
CHANGEOVER_REACH = timedelta(hours=4)
ALARM_REACH = timedelta(hours=2)


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
    machine_type: str | None
    order: str | None
    start: datetime | None
    end: datetime | None
    factors: list[Factor] = field(default_factory=list)
    deviation_types: set[str] = field(default_factory=set)  # deviations about the operation
    order_deviation_types: set[str] = field(default_factory=set)  # ... about its order


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

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "key": self.key,
            "cause_type": self.cause_type,
            "score": round(self.score, 4),
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
    causes: list[Cause]
    method: str = METHOD
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "deviation": self.deviation,
            "deviation_type": self.deviation_type,
            "description": self.description,
            "subjects": self.subjects,
            "method": self.method,
            "causes": [c.as_dict() for c in self.causes],
            "notes": self.notes,
        }


class RootCauseAnalyzer:
    """Analyses deviations against one store; caches comparable operations per context so
    analysing every deviation of a plant does not pull the same neighbourhood again."""

    def __init__(
        self,
        store: Store,
        window_days: float = 30.0,
        fanout_cap: int = 5000,
        top: int = 5,
    ) -> None:
        self.store = store
        self.window = timedelta(days=window_days)
        self.fanout_cap = fanout_cap
        self.top = top
        self._strata: dict[tuple, tuple[dict[str, Op], list[str]]] = {}

    # -- pulling the neighbourhood ----------------------------------------------------------

    def _deviation(self, deviation_id: str) -> dict[str, Any]:
        rows = self.store.read(queries.RCA_DEVIATION, id=deviation_id)
        if not rows or rows[0]["id"] is None:
            raise RcaError(f"no deviation {deviation_id!r} in the graph")
        row = rows[0]
        operations = list(row["operations"])
        row["order_level"] = not operations
        if not operations and row["orders"]:
            found = self.store.read(queries.RCA_ORDER_OPERATIONS, orders=row["orders"])
            operations = [r["operation"] for r in found]
        row["operations"] = operations
        return row

    def operations(self, rows: Iterable[dict[str, Any]]) -> dict[str, Op]:
        """Operations from rows with operation, machine, machine_type, order, start, end."""
        return {
            r["operation"]: Op(
                r["operation"],
                r["machine"],
                r["machine_type"],
                r["order"],
                as_utc(r["start"]),
                as_utc(r["end"]),
            )
            for r in rows
        }

    def _stratum(self, targets: dict[str, Op], around: datetime) -> tuple[dict[str, Op], list[str]]:
        machine_type = next((op.machine_type for op in targets.values() if op.machine_type), None)
        machines = sorted({op.machine for op in targets.values() if op.machine})
        # Cache per context and per window-sized time bucket.
        bucket = int(around.timestamp() // (self.window.total_seconds() / 2 or 1))
        key = (machine_type, tuple(machines) if machine_type is None else (), bucket)
        if key in self._strata:
            return self._strata[key]
        rows = self.store.read(
            queries.RCA_STRATUM,
            machine_type=machine_type,
            machines=machines,
            since=(around - self.window).isoformat(),
            until=(around + self.window).isoformat(),
            cap=self.fanout_cap,
        )
        notes = []
        if len(rows) >= self.fanout_cap:
            notes.append(
                f"comparison limited to {self.fanout_cap} operations of the {self.window.days}-day "
                "window (fan-out cap); raise fanout_cap or narrow the window for more"
            )
        ops = self.operations(rows)
        self.attach_factors(ops)
        self._strata[key] = (ops, notes)
        return ops, notes

    def attach_factors(self, ops: dict[str, Op]) -> None:
        """Read every factor of the operations and the deviations they showed (also used by
        risk scoring, which learns from the same factors)."""
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
            op.factors.append(
                Factor(
                    ("MaterialLot", r["lot"]),
                    "MaterialLot",
                    r["lot"],
                    "material_lot",
                    at,
                    1.0,
                    path,
                )
            )
            if r["supplier"]:
                via = path + [_rel("SUPPLIED", "in", None), _node("Supplier", r["supplier"])]
                op.factors.append(
                    Factor(
                        ("Supplier", r["supplier"]),
                        "Supplier",
                        r["supplier"],
                        "supplier",
                        at,
                        1.0,
                        via,
                    )
                )
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
            op.factors.append(
                Factor(
                    ("Person", r["person"]),
                    "Person",
                    r["person"],
                    cause,
                    op.start,
                    1.0,
                    path,
                    detail,
                )
            )
        for r in self.store.read(queries.RCA_UPSTREAM, ops=names):
            op = ops[r["operation"]]
            path = [
                _node("Operation", op.operation),
                _rel("NEXT", "in", as_utc(r["end"])),
                _node("Operation", r["upstream"]),
            ]
            op.factors.append(
                Factor(
                    ("upstream", r["machine"] or r["upstream"]),
                    "Operation",
                    r["upstream"],
                    "upstream_operation",
                    as_utc(r["end"]),
                    1.0,
                    path,
                )
            )
        machines = sorted({op.machine for op in ops.values() if op.machine})
        starts = [op.start for op in ops.values() if op.start]
        if not machines or not starts:
            return
        span = {
            "machines": machines,
            "since": (min(starts) - self.window).isoformat(),
            "until": max(op.end or op.start for op in ops.values() if op.start).isoformat(),
        }
        by_machine: dict[str, list[Op]] = defaultdict(list)
        for op in ops.values():
            if op.machine:
                op.factors.append(
                    Factor(
                        ("Machine", op.machine),
                        "Machine",
                        op.machine,
                        "machine",
                        op.start,
                        1.0,
                        _machine_path(op),
                    )
                )
                by_machine[op.machine].append(op)
        self._maintenance(by_machine, self.store.read(queries.RCA_MAINTENANCE, **span))
        self._changeovers(by_machine, self.store.read(queries.RCA_CHANGEOVERS, **span))
        self._alarms(by_machine, self.store.read(queries.RCA_ALARMS, **span))

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
        for machine, ops in by_machine.items():
            for op in ops:
                if not op.start:
                    continue
                recent = [
                    e
                    for e in events.get(machine, [])
                    if op.start - CHANGEOVER_REACH <= e["at"] <= op.start
                ]
                for event in recent[-1:]:
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
                            ("alarm", machine, event["code"]),
                            "Alarm",
                            event["id"],
                            "alarm",
                            event["at"],
                            weight,
                            path,
                            f"{event['level']} {event['code']}",
                        )
                    )

    # -- scoring ------------------------------------------------------------------------------

    def analyze(self, deviation_id: str) -> RcaResult:
        """Rank the likely causes of one deviation."""
        deviation = self._deviation(deviation_id)
        if not deviation["operations"]:
            raise RcaError(
                f"{deviation_id} is about no operation or order; root-cause analysis traces "
                "deviations of production work (scrap, out of spec, late or short orders)"
            )
        targets = self.operations(
            self.store.read(queries.RCA_OPERATIONS, ops=deviation["operations"])
        )
        around = as_utc(deviation["start"]) or next(
            (op.start for op in targets.values() if op.start), datetime.now(UTC)
        )
        stratum, notes = self._stratum(targets, around)
        self.attach_factors({k: v for k, v in targets.items() if k not in stratum})
        for name in list(targets):
            if name in stratum:
                targets[name] = stratum[name]
        # An operation-level deviation is compared with operations that deviated themselves;
        # an order-level one (late, short) also with operations of orders that did.
        causes = self._rank(targets, stratum, family(deviation["type"]), deviation["order_level"])
        subjects = {
            "operations": sorted(targets),
            "orders": sorted({op.order for op in targets.values() if op.order}),
            "machines": sorted({op.machine for op in targets.values() if op.machine}),
            "lots": sorted(
                {f.key for op in targets.values() for f in op.factors if f.label == "MaterialLot"}
            ),
        }
        return RcaResult(
            deviation_id,
            deviation["type"],
            deviation["description"] or "",
            subjects,
            causes[: self.top],
            notes=notes,
        )

    def _rank(
        self, targets: dict[str, Op], stratum: dict[str, Op], kinds: set[str], order_level: bool
    ) -> list[Cause]:
        comparison = {k: v for k, v in stratum.items() if k not in targets}
        deviating = [
            k for k, op in comparison.items()
            if (op.deviation_types | (op.order_deviation_types if order_level else set())) & kinds
        ]  # fmt: skip
        base = (len(deviating) + 0.5) / (len(comparison) + 1)
        graph = nx.Graph()
        exposure: dict[tuple, list[str]] = defaultdict(list)
        for name, op in comparison.items():
            graph.add_node(("op", name))
            for factor in op.factors:
                graph.add_edge(("op", name), ("factor", factor.cls), weight=factor.weight)
                exposure[factor.cls].append(name)
        candidates: dict[tuple, tuple[Factor, Op]] = {}
        for op in targets.values():
            for factor in op.factors:
                if op.end and factor.at and factor.at > op.end:
                    continue  # after the effect: never a cause
                best = candidates.get(factor.cls)
                if best is None or factor.weight > best[0].weight:
                    candidates[factor.cls] = (factor, op)
        for cls in candidates:
            graph.add_node(("factor", cls))
        relative = _relative_ppr(graph, deviating, list(comparison))
        bad_ops = set(deviating)
        causes = []
        for cls, (factor, op) in candidates.items():
            exposed = set(exposure.get(cls, []))
            score = relative.get(("factor", cls), 0.0) * factor.weight
            causes.append(_cause(factor, op, score, len(exposed & bad_ops), len(exposed), base))
        causes.sort(key=lambda c: (-c.score, -c.deviating, c.label, c.key))
        return causes

    # -- running over many, persisting ----------------------------------------------------------

    def persist(self, result: RcaResult, run_id: str | None = None) -> str:
        """Replace the deviation's inferred edges: CAUSED_BY to the top cause, CONTRIBUTED_TO
        to the rest. Re-running replaces, never duplicates."""
        run_id = run_id or f"rca-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}"
        now = datetime.now(UTC).isoformat()

        def work(tx: Any) -> None:
            tx.run(queries.RCA_FORGET, id=result.deviation).consume()
            for rank, cause in enumerate(result.causes, start=1):
                rel_type = "CAUSED_BY" if rank == 1 else "CONTRIBUTED_TO"
                rel_spec("Deviation", rel_type, cause.label)  # only declared relationships
                props = {
                    "score": cause.score,
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

    def deviations(
        self, since: datetime | None = None, kinds: Iterable[str] = QUALITY
    ) -> list[str]:
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
        of supplier S-104"), from each deviation's own ranked causes."""
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
        counts: Counter[tuple[str, str, str]] = Counter()
        examples: dict[tuple[str, str, str], list[str]] = defaultdict(list)
        analysed = 0
        for deviation_id in ids:
            try:
                result = self.analyze(deviation_id)
            except RcaError:
                continue
            analysed += 1
            for cause in result.causes[:3]:
                key = (cause.label, cause.key, cause.cause_type)
                counts[key] += 1
                examples[key].append(deviation_id)
        shared = [
            {
                "label": label,
                "key": key,
                "cause_type": kind,
                "deviations": n,
                "of": analysed,
                "examples": examples[(label, key, kind)][:5],
                "explanation": f"{n} of {analysed} selected deviations have {label} {key} "
                "among their three most likely causes",
            }
            for (label, key, kind), n in counts.most_common(limit)
        ]
        return {"selected": len(ids), "analysed": analysed, "shared_causes": shared}


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


def _relative_ppr(graph: nx.Graph, deviating: list[str], comparison: list[str]) -> dict:
    """PageRank restarting at deviating operations over PageRank restarting anywhere."""
    if not deviating or graph.number_of_edges() == 0:
        return {}

    def ppr(seeds: list[str]) -> dict:
        weight = 1.0 / len(seeds)
        return nx.pagerank(
            graph, alpha=0.85, weight="weight", personalization={("op", s): weight for s in seeds}
        )

    bad, everywhere = ppr(deviating), ppr(comparison)
    floor = 1.0 / max(graph.number_of_nodes(), 1) * 1e-3
    return {
        node: (bad[node] + floor) / (everywhere[node] + floor)
        for node in graph
        if node[0] == "factor"
    }


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


def _cause(factor: Factor, op: Op, score: float, bad: int, exposed: int, base: float) -> Cause:
    deviation_path = [{"label": "Deviation", "key": "(this)"}, _rel("ABOUT", "out", op.start)]
    share = (
        f"{bad} of {exposed} comparable operations exposed to it deviated"
        if exposed
        else ("no other comparable operation was exposed to it")
    )
    status = (factor.detail.split() or ["missed"])[-1]
    what = {
        "material_lot": f"Lot {factor.key} was consumed by {op.operation}",
        "supplier": f"Supplier {factor.key} delivered the lot consumed by {op.operation}",
        "person": f"{factor.key} performed {op.operation}",
        "uncertified_operator": f"{factor.key} performed {op.operation} ({factor.detail})",
        "machine": f"{op.operation} ran on {factor.key}",
        "missed_maintenance": f"{factor.key} on {op.machine} was {status} before {op.operation}",
        "changeover": f"Changeover {factor.key} on {op.machine} ({factor.detail}) just before "
        f"{op.operation}",
        "alarm": f"{factor.detail} on {op.machine} around {op.operation}",
        "upstream_operation": f"Upstream operation {factor.key} fed {op.operation}",
    }.get(factor.cause_type, f"{factor.label} {factor.key}")
    return Cause(
        factor.label,
        factor.key,
        factor.cause_type,
        score,
        bad,
        exposed,
        base,
        [deviation_path + factor.path],
        f"{what}; {share} (base rate {base:.0%}).",
    )


# -- baselines (benchmarks/rca_accuracy.py) -------------------------------------------------------


def baseline_rankings(
    analyzer: RootCauseAnalyzer, deviation_id: str, rng: random.Random
) -> dict[str, list[tuple[str, str]]]:
    """Rankings by the simple methods RCA must beat, on the same candidates."""
    deviation = analyzer._deviation(deviation_id)
    targets = analyzer.operations(
        analyzer.store.read(queries.RCA_OPERATIONS, ops=deviation["operations"])
    )
    around = as_utc(deviation["start"]) or datetime.now(UTC)
    stratum, _ = analyzer._stratum(targets, around)
    for name in list(targets):
        if name in stratum:
            targets[name] = stratum[name]
    kinds = family(deviation["type"])
    comparison = {k: v for k, v in stratum.items() if k not in targets}
    factors = {}
    for op in targets.values():
        for factor in op.factors:
            if not (op.end and factor.at and factor.at > op.end):
                factors.setdefault((factor.label, factor.key), (factor, op))
    exposure: dict[tuple, list[Op]] = defaultdict(list)
    for op in comparison.values():
        for factor in op.factors:
            exposure[(factor.label, factor.key)].append(op)

    def rate(key: tuple[str, str]) -> float:
        ops = exposure.get(key, [])
        return sum(1 for o in ops if o.deviation_types & kinds) / len(ops) if ops else 0.0

    def frequency(key: tuple[str, str]) -> int:
        return sum(1 for o in exposure.get(key, []) if o.deviation_types & kinds)

    events = [
        k
        for k, (f, _) in factors.items()
        if f.cause_type in ("missed_maintenance", "changeover", "alarm")
    ]
    keys = list(factors)
    shuffled = keys[:]
    rng.shuffle(shuffled)
    return {
        "contrast": sorted(keys, key=lambda k: -rate(k)),
        "frequency": sorted(keys, key=lambda k: -frequency(k)),
        "recency": sorted(
            events, key=lambda k: factors[k][0].at or datetime.min.replace(tzinfo=UTC), reverse=True
        ),
        "random": shuffled,
    }
