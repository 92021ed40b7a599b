"""Workflows: declarative rules that turn a deviation or an order at risk into an Action for the
right person on shift, with the evidence attached, exported to the worker platform.

A rules file (YAML)::

    workflows:
      - name: scrap-to-setter
        when:
          deviation: {type: [scrap, out_of_spec], severity: [high, critical], line: [L1]}
        then:
          title: "Investigate {type} on {machine}"
          assign: {skill: CNC-MILL, role: machine operator}
          due_hours: 4
          priority: high
          attach: {causes: 3, similar_decisions: 3}
          export: {safetyculture_dir: outbox, webhook: "https://…/actions", retries: 3}
      - name: risky-orders
        when:
          risk: {above: 0.5, horizon_days: 2}
        then: {title: "Check order {order} before it starts", assign: {role: quality engineer}}

Each rule fires once per triggering event: the action's ID is derived from the rule and the
deviation (or order), and an existing action is never made again or re-exported. The assignee
is whoever worked the shift on the deviation's line when it happened, has the skill (certified
and valid then) and the role, best skill level first; failing that, anyone with the skill and
role; failing that, the action stays unassigned and the report says so.

Closing the loop: when an action comes back complete (the worker platform's action feed) and
a decision was recorded for it (``recordDecision(actionId: …)``), the decision is linked to
the action's deviations, and once that decision has an outcome the deviation is closed.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from opsgraph.schema import rel_spec
from opsgraph.schema.base import as_utc

from . import identity, queries, read
from .identity import Aliases
from .memory import DecisionMemory, DecisionMemoryError
from .rca import RcaError, RootCauseAnalyzer
from .risk import RiskModel
from .store import Store
from .writer import BulkWriter

SOURCE_SYSTEM = "opsgraph workflows"
SAFETYCULTURE = "safetyculture"  # the system its aliases name (IDs of users and assets)
PRIORITIES = ("low", "medium", "high", "critical")
PLACEHOLDERS = ("type", "severity", "deviation", "description", "machine", "line", "order", "risk")


def file_name(action_id: str) -> str:
    """An action ID as a file name: IDs come from source data ('/' in SAP operation keys), so
    anything but letters, digits, '.', '-' and '_' becomes '_' (no path can escape)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", action_id).lstrip(".")


class WorkflowError(ValueError):
    """A rules file that cannot be used; the message names the rule and the field."""


@dataclass(frozen=True)
class Export:
    safetyculture_dir: Path | None = None
    webhook: str | None = None
    retries: int = 3
    priority_ids: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Workflow:
    name: str
    trigger: str  # "deviation" or "risk"
    types: tuple[str, ...] = ()
    severities: tuple[str, ...] = ()
    lines: tuple[str, ...] = ()
    risk_above: float = 0.5
    horizon_days: float = 2.0
    title: str = "{type} on {machine}"
    skill: str | None = None
    role: str | None = None
    person: str | None = None
    due_hours: float = 8.0
    priority: str = "medium"
    causes: int = 3
    similar_decisions: int = 0
    export: Export = Export()

    def action_id(self, subject: str) -> str:
        return f"WF-{self.name}-{subject}"


def _strings(rule: str, name: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise WorkflowError(f"workflow {rule!r}: {name} must be a name or a list of names")
    return tuple(values)


def _number(rule: str, name: str, value: Any, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise WorkflowError(f"workflow {rule!r}: {name} must be a number >= 0, got {value!r}")
    return float(value)


def _keys(rule: str, where: str, given: dict, allowed: set[str]) -> None:
    unknown = set(given) - allowed
    if unknown:
        raise WorkflowError(
            f"workflow {rule!r}: unknown {where} field(s) {', '.join(sorted(unknown))}; "
            f"known: {', '.join(sorted(allowed))}"
        )


def parse_workflows(text: str, base: Path = Path(".")) -> list[Workflow]:
    """Rules from YAML text; relative export folders are taken from ``base``."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise WorkflowError(f"not valid YAML: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("workflows"), list):
        raise WorkflowError("the file needs a top-level 'workflows:' list")
    workflows: list[Workflow] = []
    for index, entry in enumerate(document["workflows"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise WorkflowError(f"workflows[{index}]: each rule needs a name")
        name = entry["name"]
        if not name.replace("-", "").replace("_", "").isalnum():
            raise WorkflowError(f"workflow {name!r}: names are letters, digits, - and _")
        if name in {w.name for w in workflows}:
            raise WorkflowError(f"workflow {name!r} is declared twice")
        _keys(name, "rule", entry, {"name", "when", "then"})
        when, then = entry.get("when"), entry.get("then") or {}
        if (
            not isinstance(when, dict)
            or len(when) != 1
            or next(iter(when))
            not in (
                "deviation",
                "risk",
            )
        ):
            raise WorkflowError(f"workflow {name!r}: 'when' needs exactly one of deviation, risk")
        trigger, condition = next(iter(when.items()))
        condition = condition or {}
        if not isinstance(condition, dict) or not isinstance(then, dict):
            raise WorkflowError(f"workflow {name!r}: 'when' and 'then' hold fields")
        _keys(name, trigger, condition, {"type", "severity", "line", "above", "horizon_days"})
        _keys(
            name,
            "then",
            then,
            {"title", "assign", "due_hours", "priority", "attach", "export"},
        )
        assign, attach, export = (
            then.get("assign") or {},
            then.get("attach") or {},
            then.get("export") or {},
        )
        _keys(name, "assign", assign, {"skill", "role", "person"})
        _keys(name, "attach", attach, {"causes", "similar_decisions"})
        _keys(name, "export", export, {"safetyculture_dir", "webhook", "retries", "priority_ids"})
        priority = then.get("priority", "medium")
        if priority not in PRIORITIES:
            raise WorkflowError(f"workflow {name!r}: priority is one of {', '.join(PRIORITIES)}")
        title = then.get("title", Workflow.title)
        try:
            title.format(**dict.fromkeys(PLACEHOLDERS, ""))
        except (KeyError, IndexError, AttributeError, ValueError) as error:
            raise WorkflowError(
                f"workflow {name!r}: title placeholder {error} unknown; "
                f"use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}"
            ) from None
        webhook = export.get("webhook")
        if webhook is not None and not str(webhook).startswith(("http://", "https://")):
            raise WorkflowError(f"workflow {name!r}: export.webhook must be an http(s) URL")
        folder = export.get("safetyculture_dir")
        types = _strings(name, "type", condition.get("type"))
        if trigger == "deviation" and not types:
            raise WorkflowError(f"workflow {name!r}: name the deviation type(s) it reacts to")
        workflows.append(
            Workflow(
                name=name,
                trigger=trigger,
                types=types,
                severities=_strings(name, "severity", condition.get("severity")),
                lines=_strings(name, "line", condition.get("line")),
                risk_above=_number(name, "above", condition.get("above"), 0.5),
                horizon_days=_number(name, "horizon_days", condition.get("horizon_days"), 2.0),
                title=title,
                skill=assign.get("skill"),
                role=assign.get("role"),
                person=assign.get("person"),
                due_hours=_number(name, "due_hours", then.get("due_hours"), 8.0),
                priority=priority,
                causes=int(_number(name, "causes", attach.get("causes"), 3)),
                similar_decisions=int(
                    _number(name, "similar_decisions", attach.get("similar_decisions"), 0)
                ),
                export=Export(
                    safetyculture_dir=(base / folder) if folder else None,
                    webhook=webhook,
                    retries=int(_number(name, "retries", export.get("retries"), 3)),
                    priority_ids=dict(export.get("priority_ids") or {}),
                ),
            )
        )
    return workflows


def load_workflows(path: Path) -> list[Workflow]:
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise WorkflowError(f"cannot read {path}: {error}") from None
    try:
        return parse_workflows(text, Path(path).parent)
    except WorkflowError as error:
        raise WorkflowError(f"{path}: {error}") from None


@dataclass
class Fired:
    workflow: str
    action_id: str
    subject: str
    assignee: str | None
    assigned_because: str
    exported: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class WorkflowReport:
    fired: list[Fired] = field(default_factory=list)
    already: int = 0
    export_failures: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "fired": [f.as_dict() for f in self.fired],
            "already_fired": self.already,
            "export_failures": self.export_failures,
            "problems": self.problems,
            "closed_deviations": self.closed,
        }


Post = Callable[[str, bytes], None]


def _post(url: str, body: bytes) -> None:
    request = urllib.request.Request(
        url, data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - configured URL
        answer.read()


class WorkflowEngine:
    """Runs the rules over the graph: ``run`` after ingest, or on new deviations only."""

    def __init__(
        self,
        store: Store,
        workflows: Sequence[Workflow],
        state_dir: Path,
        memory: DecisionMemory | None = None,
        post: Post = _post,
        retry_delay: float = 0.5,
    ) -> None:
        self.store = store
        self.workflows = list(workflows)
        self.state_dir = state_dir
        self.memory = memory
        self.post = post
        self.retry_delay = retry_delay
        self.writer = BulkWriter(store)
        self.aliases = Aliases()

    def run(
        self, deviation_ids: Sequence[str] | None = None, as_of: datetime | None = None
    ) -> WorkflowReport:
        """Fire every rule whose trigger is met and has not fired yet; then close the loop.

        ``deviation_ids`` limits deviation rules to those deviations (a live batch's new
        ones); risk rules score the orders starting within their horizon from ``as_of``
        (default now) and are skipped when only new deviations are given.
        """
        report = WorkflowReport()
        self.aliases = identity.load(self.store)  # exports name people and assets their way
        for workflow in self.workflows:
            if workflow.trigger == "deviation":
                self._deviation_rule(workflow, deviation_ids, report)
            elif deviation_ids is None:
                self._risk_rule(workflow, as_of or datetime.now(UTC), report)
        report.closed = self.close_loop()
        return report

    # -- triggers ------------------------------------------------------------------------------

    def _deviation_rule(
        self, workflow: Workflow, ids: Sequence[str] | None, report: WorkflowReport
    ) -> None:
        if ids is None:
            rows = self.store.read(queries.WORKFLOW_DEVIATIONS, types=list(workflow.types))
        elif not ids:
            return
        else:
            rows = self.store.read(queries.WORKFLOW_DEVIATIONS_BY_ID, ids=list(ids))
            rows = [r for r in rows if r["type"] in workflow.types]
        rows = [r for r in rows if not workflow.severities or r["severity"] in workflow.severities]
        if not rows:
            return
        fresh = self._unfired(workflow, [r["id"] for r in rows], report)
        places = self._places([r["id"] for r in rows if r["id"] in fresh])
        # one analyzer for the pass: it reuses the comparison operations it pulled for one
        # deviation for the next of the same machine type and time
        analyzer = RootCauseAnalyzer(self.store)
        for row in rows:
            if row["id"] not in fresh:
                continue
            machines = places[row["id"]]
            if workflow.lines and not set(workflow.lines) & set(machines["lines"]):
                continue
            at = as_utc(row["start"]) or datetime.now(UTC)
            values = {
                "type": row["type"],
                "severity": row["severity"] or "",
                "deviation": row["id"],
                "description": row["description"] or "",
                "machine": ", ".join(machines["machines"]) or "—",
                "line": ", ".join(machines["lines"]) or "—",
                "order": ", ".join(machines["orders"]) or "—",
                "risk": "",
            }
            lines = [f"Deviation {row['id']}: {row['description'] or row['type']}"]
            lines += self._causes(workflow, analyzer, row["id"])
            cited, similar = self._similar(workflow, row["id"])
            lines += similar
            self._fire(
                workflow,
                subject=row["id"],
                values=values,
                description="\n".join(lines),
                about=[("Deviation", row["id"])]
                + [("Machine", m) for m in machines["machines"][:1]],
                lines=machines["lines"],
                at=at,
                cited=cited,
                report=report,
            )

    def _risk_rule(self, workflow: Workflow, as_of: datetime, report: WorkflowReport) -> None:
        model = RiskModel(self.store).fit(as_of)
        scored = [
            r for r in model.score(as_of, workflow.horizon_days) if r.risk >= workflow.risk_above
        ]
        if not scored:
            return
        fresh = self._unfired(workflow, [r.order for r in scored], report)
        # work without a production order is scored by its operation: nothing to link then
        orders = read.nodes_by_key(self.store, "ProductionOrder", sorted(fresh))
        lines_of: dict[str, list[str]] = {}
        machines_of: dict[str, list[str]] = {}
        for row in self.store.read(queries.ORDER_LINES, orders=sorted(fresh)):
            if row["line"]:
                lines_of.setdefault(row["order"], []).append(row["line"])
            if row["machine"]:
                machines_of.setdefault(row["order"], []).append(row["machine"])
        for risk in scored:
            if risk.order not in fresh:
                continue
            lines = sorted(set(lines_of.get(risk.order, [])))
            if workflow.lines and not set(workflow.lines) & set(lines):
                continue
            machines = sorted(set(machines_of.get(risk.order, [])))
            values = dict.fromkeys(PLACEHOLDERS, "")
            values.update(
                order=risk.order,
                risk=f"{risk.risk:.2f}",
                machine=", ".join(machines) or "—",
                line=", ".join(lines) or "—",
                type="risk",
            )
            reasons = [
                f"- {r.label} {r.key} ({r.cause_type}): {r.deviating} of {r.exposed} operations "
                f"exposed to it deviated"
                for r in risk.reasons
            ]
            self._fire(
                workflow,
                subject=risk.order,
                values=values,
                description="\n".join(
                    [f"Order {risk.order} at risk {risk.risk:.2f}; because of:", *reasons]
                ),
                about=[("ProductionOrder", risk.order)] * (risk.order in orders)
                + [("Machine", m) for m in machines[:1]],
                lines=lines,
                at=as_of,
                cited=[],
                report=report,
            )

    def _unfired(self, workflow: Workflow, subjects: list[str], report: WorkflowReport) -> set[str]:
        ids = {workflow.action_id(s): s for s in subjects}
        existing = read.nodes_by_key(self.store, "Action", list(ids))
        report.already += len(existing)
        return {subject for action, subject in ids.items() if action not in existing}

    def _places(self, ids: list[str]) -> dict[str, dict[str, list[str]]]:
        """Machines, lines and orders of each deviation: the machines it is about (or its
        operations ran on) first; an order's machines only when nothing nearer is known."""
        places = {i: {"machines": [], "lines": [], "orders": []} for i in ids}
        if not ids:
            return places
        direct = self.store.read(queries.DEVIATION_MACHINES, ids=ids)
        direct += self.store.read(queries.DEVIATION_OPERATION_MACHINES, ids=ids)
        by_order = self.store.read(queries.DEVIATION_ORDER_MACHINES, ids=ids)
        near = {row["id"] for row in direct}
        for row in direct + [r for r in by_order if r["id"] not in near]:
            place = places[row["id"]]
            for kind, value in (("machines", row["machine"]), ("lines", row["line"])):
                if value and value not in place[kind]:
                    place[kind].append(value)
        for row in by_order:
            if row["order"] not in places[row["id"]]["orders"]:
                places[row["id"]]["orders"].append(row["order"])
        return places

    # -- attachments ---------------------------------------------------------------------------

    def _causes(
        self, workflow: Workflow, analyzer: RootCauseAnalyzer, deviation_id: str
    ) -> list[str]:
        if not workflow.causes:
            return []
        try:
            result = analyzer.analyze(deviation_id)
        except RcaError:
            return []  # not production work (downtime, a checklist item): no causes to rank
        causes = result.causes[: workflow.causes]
        return ["Likely causes:"] + [f"- {c.explanation}" for c in causes] if causes else []

    def _similar(self, workflow: Workflow, deviation_id: str) -> tuple[list[str], list[str]]:
        if not workflow.similar_decisions or self.memory is None:
            return [], []
        try:
            hits = self.memory.similar_decisions(deviation_id, k=workflow.similar_decisions)
        except DecisionMemoryError:
            return [], []
        cited: list[str] = []
        lines: list[str] = []
        for hit in hits:
            for decision in hit.decisions:
                if decision["decision"] not in cited:
                    cited.append(decision["decision"])
                    outcome = decision.get("outcome") or "no outcome recorded"
                    lines.append(f"- {decision['summary']} (outcome: {outcome})")
        return cited, (["What was decided last time:", *lines] if lines else [])

    # -- firing ----------------------------------------------------------------------------------

    def assignee(
        self, workflow: Workflow, lines: list[str], at: datetime
    ) -> tuple[str | None, str]:
        """Who gets the action, and why them (for the report and the action's description)."""
        if workflow.person:
            return workflow.person, "named in the rule"
        crew = self.store.read(queries.SHIFT_CREW, lines=lines, at=at.isoformat()) if lines else []
        chosen = self._pick(workflow, crew, at)
        if chosen:
            return chosen, f"on shift on {', '.join(lines)} at {at:%Y-%m-%d %H:%M} UTC"
        if workflow.skill:
            everyone = self.store.read(queries.SKILLED_PEOPLE, skill=workflow.skill)
        elif workflow.role:
            everyone = self.store.read(queries.PEOPLE_WITH_ROLE, role=workflow.role)
        else:
            everyone = []
        chosen = self._pick(workflow, everyone, at)
        if chosen:
            return chosen, "nobody suitable on shift: the best qualified person"
        return None, "nobody with the required skill and role"

    def _pick(self, workflow: Workflow, people: list[dict[str, Any]], at: datetime) -> str | None:
        candidates = []
        skills = {}
        if workflow.skill and people:
            rows = self.store.read(
                queries.PEOPLE_SKILL,
                people=sorted({p["person"] for p in people}),
                skill=workflow.skill,
            )
            skills = {r["person"]: r for r in rows}
        for person in people:
            if workflow.role and (person["role"] or "").lower() != workflow.role.lower():
                continue
            level = 0
            if workflow.skill:
                skill = skills.get(person["person"])
                if skill is None or skill["certified"] in ("no", "expired"):
                    continue
                valid = as_utc(skill["valid_until"])
                if valid is not None and valid < at:
                    continue
                level = skill["level"] or 0
            candidates.append((-level, person["person"]))
        return min(candidates)[1] if candidates else None

    def _fire(
        self,
        workflow: Workflow,
        subject: str,
        values: dict[str, str],
        description: str,
        about: list[tuple[str, str]],
        lines: list[str],
        at: datetime,
        cited: list[str],
        report: WorkflowReport,
    ) -> None:
        action_id = workflow.action_id(subject)
        person, because = self.assignee(workflow, lines, at)
        now = datetime.now(UTC)
        props = {
            "action_id": action_id,
            "title": workflow.title.format(**values)[:255],
            "description": f"{description}\nAssigned: {because}.",
            "status": "to_do",
            "priority": workflow.priority,
            "created_at": now,
            "due_at": now + timedelta(hours=workflow.due_hours),
            "workflow": workflow.name,
            "source_system": SOURCE_SYSTEM,
            "source_record": f"{workflow.name}:{subject}",
        }
        origin = {"source_system": SOURCE_SYSTEM, "source_record": props["source_record"]}
        written = self.writer.upsert_nodes("Action", [props])
        if written.rejected:
            report.problems += [f"{action_id}: {r.reason}" for r in written.rejected]
            return
        links = [(label, "ABOUT", key) for label, key in about]
        links += [("Decision", "CITES", key) for key in cited]
        if person:
            links.append(("Person", "ASSIGNED_TO", person))
        for label, rel_type, key in links:
            linked = self.writer.upsert_relationships(
                rel_spec("Action", rel_type, label), [{"start": action_id, "end": key, **origin}]
            )
            report.problems += [f"{action_id}: {r.reason}" for r in linked.rejected]
        fired = Fired(workflow.name, action_id, subject, person, because)
        fired.exported = self._export(workflow, props, person, about, report)
        report.fired.append(fired)

    # -- export ------------------------------------------------------------------------------------

    def _export(
        self,
        workflow: Workflow,
        props: dict[str, Any],
        person: str | None,
        about: list[tuple[str, str]],
        report: WorkflowReport,
    ) -> list[str]:
        """The action in SafetyCulture's CreateAction shape: to a folder and/or a webhook,
        naming the assignee and the asset by the IDs SafetyCulture knows (its aliases)."""
        export = workflow.export
        if not export.safetyculture_dir and not export.webhook:
            return []
        payload: dict[str, Any] = {
            "task_id": props["action_id"],
            "title": props["title"],
            "description": props["description"],
            "created_at": props["created_at"].isoformat(),
            "due_at": props["due_at"].isoformat(),
            "collaborators": (
                [
                    {
                        "collaborator_id": self.aliases.theirs("Person", person, SAFETYCULTURE),
                        "collaborator_type": "USER",
                        "assigned_role": "ASSIGNEE",
                    }
                ]
                if person
                else []
            ),
        }
        machines = [key for label, key in about if label == "Machine"]
        if machines:
            payload["asset_id"] = self.aliases.theirs("Machine", machines[0], SAFETYCULTURE)
        if props["priority"] in export.priority_ids:
            payload["priority_id"] = export.priority_ids[props["priority"]]
        body = json.dumps(payload, indent=1).encode()
        done = []
        if export.safetyculture_dir:
            export.safetyculture_dir.mkdir(parents=True, exist_ok=True)
            (export.safetyculture_dir / f"{file_name(props['action_id'])}.json").write_bytes(body)
            done.append(str(export.safetyculture_dir))
        if export.webhook:
            error = None
            for attempt in range(export.retries + 1):
                try:
                    self.post(export.webhook, body)
                    error = None
                    break
                except (OSError, urllib.error.URLError, ValueError) as failure:
                    error = failure
                    if attempt < export.retries:
                        time.sleep(self.retry_delay * 2**attempt)
            if error is None:
                done.append(export.webhook)
            else:
                self._dead_letter(props["action_id"], export.webhook, str(error), payload)
                report.export_failures.append(f"{props['action_id']}: {error}")
        return done

    def _dead_letter(self, action_id: str, url: str, reason: str, payload: dict) -> None:
        path = self.state_dir / "workflows" / "dead-letters.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"action": action_id, "url": url, "reason": reason, "payload": payload}
        with open(path, "a") as handle:
            handle.write(json.dumps(entry) + "\n")

    # -- closing the loop -------------------------------------------------------------------------

    def close_loop(self) -> list[str]:
        """Completed workflow actions with a decision: link the decision to the deviations
        and close those whose decision has an outcome. Returns the deviations closed."""
        closed = []
        for row in self.store.read(queries.COMPLETED_WORKFLOW_ACTIONS):
            origin = {"source_system": SOURCE_SYSTEM, "source_record": f"loop:{row['action']}"}
            self.writer.upsert_relationships(
                rel_spec("Decision", "ABOUT", "Deviation"),
                [{"start": row["decision"], "end": row["deviation"], **origin}],
            )
            if row["outcome"] is not None and row["status"] != "closed":
                self.writer.upsert_nodes(
                    "Deviation", [{"deviation_id": row["deviation"], "status": "closed", **origin}]
                )
                closed.append(row["deviation"])
        return closed
